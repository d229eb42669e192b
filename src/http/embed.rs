//! `POST /v1/embed {texts, model?}` -> `{model, dimension, vectors}`.

use actix_web::web;
use serde::Deserialize;

use super::{ApiContext, ApiError};
use crate::actors::embed::{EmbedMessage, Embeddings, NAME};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/embed", web::post().to(embed));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
    pub model: Option<String>,
}

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
