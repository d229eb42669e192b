//! The small use cases: embed texts, validate a draft or a fill proposal,
//! and draw the supervision tree.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::embed::{self, EmbedMessage, Embeddings};
use crate::actors::validate::{self, ValidateMessage};
use crate::domain::validate::{ValidateRequest, Verdict};
use crate::supervision::{ChildStatus, NodeView};

use super::{ApiError, Context};

/// `POST /v1/embed` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
    pub model: Option<String>,
}

/// Texts turned into unit vectors by the service's embedder.
pub async fn embed(context: &Context, request: EmbedRequest) -> Result<Embeddings, ApiError> {
    let EmbedRequest { texts, model } = request;
    Ok(context
        .call(embed::NAME, |reply| EmbedMessage::Embed {
            texts,
            model,
            analysis: None,
            reply,
        })
        .await??)
}

/// The validator's verdict on a draft or a fill proposal. A verdict that
/// finds problems is an answer, not a failure.
pub async fn validate(context: &Context, request: ValidateRequest) -> Result<Verdict, ApiError> {
    Ok(context
        .call(validate::NAME, |reply| ValidateMessage::Validate {
            request,
            reply,
        })
        .await??)
}

/// The live supervision tree.
pub fn supervision_tree(context: &Context) -> NodeView {
    context.board.view("root", ChildStatus::Running)
}
