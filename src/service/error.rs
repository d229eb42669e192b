//! The one error of both doors: every failure a use case, an actor or a
//! door reports, each with its stable code (see [`crate::codes`]). Each
//! actor error says its own code next to its definition ([`HasCode`]);
//! the doors map a code to their wire shape (`http::error` to a status
//! and the JSON body, `mcp` to a tool error).

use crate::actors::chat::ChatError;
use crate::actors::embed::EmbedError;
use crate::actors::ingest::IngestError;
use crate::actors::matrix::MatrixError;
use crate::actors::query::QueryError;
use crate::actors::storage::StorageError;
use crate::actors::validate::ValidateError;
use crate::actors::vectors::IndexError;
use crate::codes::{ErrorCode, HasCode, Status};
use crate::domain::auth::Role;
use crate::supervision::CallError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    #[error("no dataset '{0}'")]
    DatasetNotFound(String),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("this needs the '{needed}' role; token '{token}' has '{role}'")]
    Forbidden {
        needed: Role,
        token: String,
        role: Role,
    },
    #[error("a filter may have at most {max} fields, got {got}")]
    TooManyFilterFields { max: usize, got: usize },
    #[error("{field} may hold at most {max} ids, got {got}")]
    TooManyIds {
        field: &'static str,
        max: usize,
        got: usize,
    },
    #[error("dataset '{0}' is written by the service itself (the replay log); ingest under another name")]
    ReservedDataset(String),
    #[error("service not ready: {0}")]
    NotReady(String),
    #[error("index '{0}' is the matrix's own: creating it, adding to it or deleting from it needs the admin role")]
    ReservedIndex(String),
    #[error("the console has no file '{0}'")]
    AssetNotFound(String),
    #[error("{0}; close one or retry later")]
    TooManyStreams(String),
    #[error("{0}; close an MCP session (DELETE /mcp) or retry later")]
    TooManySessions(String),
    #[error("this service does not answer to the host {}; add it to server.allowed_hosts", .0.as_deref().map(|h| format!("{h:?}")).unwrap_or_else(|| "(none given)".into()))]
    HostNotAllowed(Option<String>),
    #[error("this service has no tokens (open mode, trusted because it listens on loopback), but the request came through a proxy (`{0}` header): configure auth.tokens, or set auth.allow_open = true if the proxy is yours")]
    OpenBehindProxy(String),
    #[error("this service has no tokens (open mode), and the request came from another site's page ({0}): a browser page may not change it; configure auth.tokens to call it from other sites")]
    CrossSite(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("a snapshot is being taken; wait for it, then ask again")]
    SnapshotInProgress,
    #[error("snapshot: {0}")]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
}

impl ApiError {
    /// No route for `method path` (the path as the client sent it).
    pub fn route_not_found(method: impl std::fmt::Display, path: &str) -> Self {
        ApiError::RouteNotFound {
            method: method.to_string(),
            path: path.chars().take(200).collect(),
        }
    }

    /// The status and the stable, documented `code` of each failure.
    pub fn status_and_code(&self) -> (Status, &'static str) {
        let code = self.code();
        (code.status(), code.as_str())
    }

    /// The code of each failure: one exhaustive match per error type.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::MalformedJson(_) => ErrorCode::MalformedJson,
            ApiError::MalformedBody(_) => ErrorCode::MalformedBody,
            ApiError::DatasetNotFound(_) => ErrorCode::DatasetNotFound,
            ApiError::InvalidBody(_) => ErrorCode::InvalidBody,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::InvalidPath(_) => ErrorCode::InvalidPath,
            ApiError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ApiError::RouteNotFound { .. } => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden { .. } => ErrorCode::Forbidden,
            ApiError::TooManyFilterFields { .. } => ErrorCode::TooManyFilterFields,
            ApiError::TooManyIds { .. } => ErrorCode::TooManyIds,
            ApiError::ReservedDataset(_) => ErrorCode::ReservedDataset,
            ApiError::ReservedIndex(_) => ErrorCode::ReservedIndex,
            ApiError::NotReady(_) => ErrorCode::NotReady,
            ApiError::AssetNotFound(_) => ErrorCode::AssetNotFound,
            ApiError::TooManyStreams(_) => ErrorCode::TooManyStreams,
            ApiError::TooManySessions(_) => ErrorCode::TooManySessions,
            ApiError::HostNotAllowed(_) => ErrorCode::HostNotAllowed,
            ApiError::OpenBehindProxy(_) => ErrorCode::OpenBehindProxy,
            ApiError::CrossSite(_) => ErrorCode::CrossSite,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::SnapshotInProgress => ErrorCode::SnapshotInProgress,
            ApiError::Backup(_) => ErrorCode::StorageError,
            ApiError::Call(err) => err.code(),
            ApiError::Index(err) => err.code(),
            ApiError::Embed(err) => err.code(),
            ApiError::Matrix(err) => err.code(),
            ApiError::Storage(err) => err.code(),
            ApiError::Ingest(err) => err.code(),
            ApiError::Query(err) => err.code(),
            ApiError::Chat(err) => err.code(),
            ApiError::Validate(err) => err.code(),
        }
    }

    /// Whether the client should retry after a pause (503s).
    pub fn retry_after(&self) -> bool {
        self.status_and_code().0 == Status::SERVICE_UNAVAILABLE
    }
}
