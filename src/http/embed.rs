//! `POST /v1/embed {texts, model?}` -> `{model, dimension, vectors}`.

use crate::domain::de::Object;
use actix_web::{post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::actors::embed::Embeddings;
use crate::service::{self, ops::EmbedRequest};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(embed);
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
    request: web::Json<Object<EmbedRequest>>,
) -> Result<web::Json<Embeddings>, ApiError> {
    Ok(web::Json(
        service::ops::embed(&context, request.into_inner().0).await?,
    ))
}
