//! `POST /v1/embed {texts, model?}` -> `{model, dimension, vectors}`.

use actix_web::{post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::actors::embed::{EmbedMessage, Embeddings, NAME};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(embed);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// 1 to `embed.max_texts` texts, each at most `embed.max_text_chars`.
    pub texts: Vec<String>,
    /// Must be the configured model if given.
    pub model: Option<String>,
}

/// Embed texts as L2-normalised vectors.
#[utoipa::path(
    tag = "embed",
    request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per text", body = Embeddings),
        (status = 422, description = "`empty_batch`, `empty_text`, `too_many_texts`, `text_too_long`, `unknown_model`", body = super::error::ErrorBody),
        (status = 500, description = "`embed_failed`", body = super::error::ErrorBody),
        (status = 502, description = "`embedder_bad_response`", body = super::error::ErrorBody),
        (status = 503, description = "`embedder_unavailable` (Ollama down; names the URL)", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/embed")]
#[tracing::instrument(skip_all, fields(texts = request.texts.len()))]
async fn embed(
    context: web::Data<ApiContext>,
    request: web::Json<EmbedRequest>,
) -> Result<web::Json<Embeddings>, ApiError> {
    let EmbedRequest { texts, model } = request.into_inner();
    let embeddings = context
        .call(NAME, |reply| EmbedMessage::Embed {
            texts,
            model,
            reply,
        })
        .await??;
    Ok(web::Json(embeddings))
}
