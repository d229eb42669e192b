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

/// Takes a snapshot of the data dir into `snapshots.dir` (one at a time:
/// `409 snapshot_in_progress`), then applies `snapshots.keep`.
pub async fn take_snapshot(context: &Context) -> Result<crate::backup::SnapshotManifest, ApiError> {
    // One per service, not per process: two services in one process (the
    // API tests) take theirs independently.
    let held = context
        .snapshot_turn
        .clone()
        .try_lock_owned()
        .map_err(|_| ApiError::SnapshotInProgress)?;
    let settings = context.settings.clone();
    // A task of its own, holding the turn: a client that gives up does not
    // stop a snapshot halfway, nor let another start beside it.
    let manifest = tokio::spawn(async move {
        let _held = held;
        crate::backup::take(
            &settings.data.dir,
            &settings.snapshot_dir(),
            settings.snapshots.keep,
        )
        .await
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    context
        .metrics
        .snapshot_last_success
        .set(manifest.created_at.timestamp());
    tracing::info!(id = %manifest.id, files = manifest.files.len(), bytes = manifest.bytes,
                   copied_bytes = manifest.copied_bytes, elapsed_ms = manifest.elapsed_ms, "snapshot taken");
    Ok(manifest)
}

/// The snapshots in `snapshots.dir`, newest first.
pub async fn list_snapshots(
    context: &Context,
) -> Result<Vec<crate::backup::SnapshotSummary>, ApiError> {
    let target = context.settings.snapshot_dir();
    let found = tokio::task::spawn_blocking(move || crate::backup::list(&target))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(found
        .iter()
        .map(crate::backup::SnapshotSummary::from)
        .collect())
}
