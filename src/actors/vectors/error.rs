//! The failures of an index and of the index catalog, with their codes.

use crate::actors::embed::EmbedError;
use crate::codes::{ErrorCode, HasCode};
use crate::domain::vectors::ValidationError;
use crate::supervision::CallError;

use std::sync::Arc;

use super::{hnsw, store};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("index '{0}' does not exist")]
    NotFound(String),
    #[error("index '{0}' already exists")]
    AlreadyExists(String),
    #[error("item '{id}' is not in index '{index}'")]
    ItemNotFound { index: String, id: String },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("embedder: {0}")]
    EmbedCall(CallError),
    /// Lance or the data dir failed; the source chain says how. Shared:
    /// one failed group commit fails every batch in it.
    #[error("storage: {0}")]
    Storage(#[source] Arc<store::StoreError>),
    #[error("faiss: {0}")]
    Faiss(String),
    #[error("the index is restarting; retry shortly")]
    Unavailable,
    /// The index is loading (first start, or a restart): ask again shortly.
    #[error("index '{0}' is loading; retry shortly")]
    Loading(String),
    /// The index used up its own restart intensity and stays down until an
    /// admin restart.
    #[error("index '{index}' has failed: {reason}")]
    Failed { index: String, reason: String },
    /// A pinned search asked for a version that retention removed.
    #[error("index '{index}' no longer keeps version {version} (removed after vectors.version_retention_secs)")]
    VersionGone { index: String, version: u64 },
    /// A bulk change failed after some of its groups were durable: the
    /// code is the failure's, the message says how many were changed.
    #[error("{source} ({changed} items were changed, durable, before the failure)")]
    PartlyChanged {
        changed: usize,
        source: Box<IndexError>,
    },
    /// A bulk change refused, or one that kept meeting other writes.
    #[error(transparent)]
    Change(#[from] crate::domain::items::ChangeError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HasCode for IndexError {
    fn code(&self) -> ErrorCode {
        match self {
            IndexError::Invalid(invalid) => invalid.code(),
            IndexError::NotFound(_) => ErrorCode::IndexNotFound,
            IndexError::AlreadyExists(_) => ErrorCode::IndexExists,
            IndexError::ItemNotFound { .. } => ErrorCode::ItemNotFound,
            IndexError::Embed(err) => err.code(),
            IndexError::EmbedCall(CallError::Timeout { .. }) => ErrorCode::EmbedderTimeout,
            IndexError::EmbedCall(_) => ErrorCode::EmbedderUnavailable,
            IndexError::Storage(_) => ErrorCode::StorageError,
            IndexError::Faiss(_) => ErrorCode::IndexError,
            IndexError::Unavailable => ErrorCode::IndexUnavailable,
            IndexError::Loading(_) => ErrorCode::IndexLoading,
            IndexError::Failed { .. } => ErrorCode::IndexFailed,
            IndexError::VersionGone { .. } => ErrorCode::VersionGone,
            IndexError::Change(err) => err.code(),
            IndexError::PartlyChanged { source, .. } => source.code(),
            IndexError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<store::StoreError> for IndexError {
    fn from(err: store::StoreError) -> Self {
        Self::Storage(Arc::new(err))
    }
}

impl From<hnsw::HnswError> for IndexError {
    fn from(err: hnsw::HnswError) -> Self {
        Self::Faiss(err.0)
    }
}
