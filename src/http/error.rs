//! One error shape for every failure: `{"error": {"code", "message"}}`.
//!
//! Each actor error converts into [`ApiError`], and one exhaustive `match`
//! (no wildcard arm) decides its status and stable `code`, so a new variant
//! anywhere forces a decision here. actix-web's own failures (bad JSON,
//! wrong content type, oversized body, unknown route, 405) are mapped to the
//! same shape by the extractor configs and the [`uniform_errors`] safety net.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::embed::EmbedError;
use crate::actors::ingest::{IngestError, IngestFormat};
use crate::actors::matrix::MatrixError;
use crate::actors::query::QueryError;
use crate::actors::storage::StorageError;
use crate::actors::vectors::IndexError;
use crate::domain::auth::Role;
use crate::domain::matrix::MatrixInvalid;
use crate::domain::vectors::ValidationError;
use crate::supervision::CallError;

pub use crate::codes::ErrorCode;

/// Seconds a client should wait before retrying a restarting actor.
const RETRY_AFTER_SECS: &str = "1";

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
    #[error("internal error: {0}")]
    Internal(String),
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
    Chat(#[from] crate::actors::chat::ChatError),
    #[error(transparent)]
    Validate(#[from] crate::actors::validate::ValidateError),
}

/// The one error shape: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, documented code (see the README's error table).
    pub code: String,
    /// What went wrong, for a person; 5xx messages carry no file paths.
    pub message: String,
}

impl ApiError {
    /// No route for `method path` (the path as the client sent it).
    pub fn route_not_found(method: &actix_web::http::Method, path: &str) -> Self {
        ApiError::RouteNotFound {
            method: method.to_string(),
            path: path.chars().take(200).collect(),
        }
    }

    /// The status and the stable, documented `code` of each failure.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let code = self.code();
        (status_of(code), code.as_str())
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
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::Call(err) => call_code(err),
            ApiError::Index(err) => index_code(err),
            ApiError::Embed(err) => embed_code(err),
            ApiError::Matrix(err) => matrix_code(err),
            ApiError::Storage(err) => storage_code(err),
            ApiError::Ingest(err) => ingest_code(err),
            ApiError::Query(err) => query_code(err),
            ApiError::Chat(err) => chat_code(err),
            ApiError::Validate(err) => validate_code(err),
        }
    }

    /// Whether the client should retry after a pause (503s).
    fn retry_after(&self) -> bool {
        self.status_and_code().0 == StatusCode::SERVICE_UNAVAILABLE
    }
}

fn call_code(err: &CallError) -> ErrorCode {
    match err {
        CallError::Unavailable { .. } => ErrorCode::ActorUnavailable,
        CallError::Timeout { .. } => ErrorCode::ActorTimeout,
        CallError::Unknown { .. } => ErrorCode::UnknownActor,
        CallError::FaultsUnsupported { .. } => ErrorCode::FaultNotSupported,
        CallError::Failed { .. } => ErrorCode::ActorFailed,
    }
}

fn validate_code(err: &crate::actors::validate::ValidateError) -> ErrorCode {
    use crate::actors::validate::ValidateError;
    match err {
        ValidateError::TooManyWorkers { .. } => ErrorCode::TooManyIds,
        ValidateError::Internal(_) => ErrorCode::Internal,
        ValidateError::Call(err) => call_code(err),
    }
}

fn embed_code(err: &EmbedError) -> ErrorCode {
    match err {
        EmbedError::EmptyBatch => ErrorCode::EmptyBatch,
        EmbedError::TooManyTexts { .. } => ErrorCode::TooManyTexts,
        EmbedError::EmptyText { .. } => ErrorCode::EmptyText,
        EmbedError::TextTooLong { .. } => ErrorCode::TextTooLong,
        EmbedError::UnknownModel { .. } => ErrorCode::UnknownModel,
        EmbedError::Unavailable { .. } => ErrorCode::EmbedderUnavailable,
        EmbedError::BadResponse(_) => ErrorCode::EmbedderBadResponse,
        EmbedError::Internal(_) => ErrorCode::EmbedFailed,
    }
}

/// The code of a chat failure (also the `outcome` label of its metric).
pub fn chat_code(err: &crate::actors::chat::ChatError) -> ErrorCode {
    use crate::actors::chat::ChatError;
    use crate::domain::chat::ChatInvalid;
    match err {
        ChatError::Invalid(invalid) => match invalid {
            ChatInvalid::Messages(_) | ChatInvalid::Model => ErrorCode::InvalidMessages,
            ChatInvalid::Source(_) | ChatInvalid::PlaybookWithoutRole => ErrorCode::InvalidContext,
            ChatInvalid::K(_) => ErrorCode::InvalidK,
            ChatInvalid::Query(MatrixInvalid::EmptyQuery) => ErrorCode::EmptyQuery,
            ChatInvalid::Query(_) => ErrorCode::QueryTooLong,
        },
        ChatError::NoWorkers => ErrorCode::NoWorkers,
        ChatError::ModelNotFound { .. } => ErrorCode::ModelNotFound,
        ChatError::Unavailable { .. } => ErrorCode::ChatUnavailable,
        ChatError::Timeout => ErrorCode::ChatTimeout,
        ChatError::BadResponse(_) => ErrorCode::ChatBadResponse,
        ChatError::RunNotFound(_) => ErrorCode::RunNotFound,
        ChatError::Busy(_) => ErrorCode::TooManyChats,
        ChatError::Cancelled => ErrorCode::Cancelled,
        ChatError::Index(err) => index_code(err),
        ChatError::Embed(err) => embed_code(err),
        ChatError::Call(err) => call_code(err),
        ChatError::Storage(_) => ErrorCode::StorageError,
        ChatError::Internal(_) => ErrorCode::Internal,
    }
}

fn index_code(err: &IndexError) -> ErrorCode {
    match err {
        IndexError::Invalid(invalid) => validation_code(invalid),
        IndexError::NotFound(_) => ErrorCode::IndexNotFound,
        IndexError::AlreadyExists(_) => ErrorCode::IndexExists,
        IndexError::ItemNotFound { .. } => ErrorCode::ItemNotFound,
        IndexError::Embed(err) => embed_code(err),
        IndexError::EmbedCall(CallError::Timeout { .. }) => ErrorCode::EmbedderTimeout,
        IndexError::EmbedCall(_) => ErrorCode::EmbedderUnavailable,
        IndexError::Storage(_) => ErrorCode::StorageError,
        IndexError::Faiss(_) => ErrorCode::IndexError,
        IndexError::Unavailable => ErrorCode::IndexUnavailable,
        IndexError::Loading(_) => ErrorCode::IndexLoading,
        IndexError::Failed { .. } => ErrorCode::IndexFailed,
        IndexError::VersionGone { .. } => ErrorCode::VersionGone,
        IndexError::Internal(_) => ErrorCode::Internal,
    }
}

fn matrix_code(err: &MatrixError) -> ErrorCode {
    match err {
        MatrixError::Invalid(invalid) => match invalid {
            MatrixInvalid::EmptyQuery => ErrorCode::EmptyQuery,
            MatrixInvalid::InvalidParameter { .. } => ErrorCode::InvalidBody,
            MatrixInvalid::QueryTooLong { .. } => ErrorCode::QueryTooLong,
            MatrixInvalid::InvalidK(_) => ErrorCode::InvalidK,
            MatrixInvalid::EmptyRole => ErrorCode::EmptyRole,
            MatrixInvalid::InvalidScore(_) => ErrorCode::InvalidScore,
            MatrixInvalid::InvalidWorkerIds => ErrorCode::InvalidWorkerIds,
            MatrixInvalid::UnknownWorkers(_) => ErrorCode::UnknownWorkers,
        },
        MatrixError::NoWorkers => ErrorCode::NoWorkers,
        MatrixError::Misdefined { .. } => ErrorCode::ReservedIndex,
        MatrixError::Index(err) => index_code(err),
        MatrixError::Embed(err) => embed_code(err),
        MatrixError::Call(err) => call_code(err),
    }
}

fn storage_code(err: &StorageError) -> ErrorCode {
    match err {
        StorageError::InvalidKey(_) => ErrorCode::InvalidKey,
        StorageError::NotFound(_) => ErrorCode::ObjectNotFound,
        StorageError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        StorageError::Busy => ErrorCode::TooManyTransfers,
        StorageError::Aborted(_) => ErrorCode::UploadAborted,
        StorageError::Conflict(_) => ErrorCode::KeyConflict,
        StorageError::Backend(_) => ErrorCode::StorageError,
    }
}

fn ingest_code(err: &IngestError) -> ErrorCode {
    match err {
        IngestError::InvalidName(_) => ErrorCode::InvalidName,
        IngestError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        IngestError::Aborted(_) => ErrorCode::UploadAborted,
        IngestError::Malformed {
            format: IngestFormat::Csv,
            ..
        } => ErrorCode::MalformedCsv,
        IngestError::Malformed {
            format: IngestFormat::JsonLines,
            ..
        } => ErrorCode::MalformedJsonLines,
        IngestError::SchemaDrift { .. } => ErrorCode::SchemaDrift,
        IngestError::Busy(_) => ErrorCode::IngestInProgress,
        IngestError::TooManyIngests(_) => ErrorCode::TooManyIngests,
        IngestError::TooManyColumns { .. } => ErrorCode::TooManyColumns,
        IngestError::ColumnNameTooLong { .. } => ErrorCode::ColumnNameTooLong,
        IngestError::DiskFull { .. } => ErrorCode::DiskFull,
        IngestError::NotFound(_) => ErrorCode::DatasetNotFound,
        IngestError::Storage(_) => ErrorCode::StorageError,
        IngestError::Catalog(err) => call_code(err),
    }
}

fn query_code(err: &QueryError) -> ErrorCode {
    match err {
        QueryError::ReadOnly(_) => ErrorCode::ReadOnly,
        QueryError::Sql(_) => ErrorCode::SqlError,
        QueryError::TooLong { .. } => ErrorCode::SqlTooLong,
        QueryError::TooDeep { .. } => ErrorCode::SqlTooDeep,
        QueryError::FunctionOutputTooLarge(_) => ErrorCode::FunctionOutputTooLarge,
        QueryError::Cancelled => ErrorCode::Cancelled,
        QueryError::Internal(_) => ErrorCode::Internal,
        QueryError::InvalidLimit { .. } => ErrorCode::InvalidLimit,
        QueryError::Timeout(_) => ErrorCode::QueryTimeout,
        QueryError::MemoryExceeded { .. } => ErrorCode::QueryMemoryExceeded,
        QueryError::Busy { .. } => ErrorCode::TooManyQueries,
        QueryError::Storage(_) => ErrorCode::StorageError,
        QueryError::Catalog(err) => call_code(err),
    }
}

fn validation_code(err: &ValidationError) -> ErrorCode {
    match err {
        ValidationError::InvalidName(_) => ErrorCode::InvalidName,
        ValidationError::InvalidDimension(_) => ErrorCode::InvalidDimension,
        ValidationError::DimensionMismatch { .. } => ErrorCode::DimensionMismatch,
        ValidationError::InvalidVector { .. } => ErrorCode::InvalidVector,
        ValidationError::InvalidId { .. } => ErrorCode::InvalidId,
        ValidationError::DuplicateId(_) => ErrorCode::DuplicateId,
        ValidationError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        ValidationError::EmptyBatch => ErrorCode::EmptyBatch,
        ValidationError::InvalidMetadata { .. } => ErrorCode::InvalidMetadata,
        ValidationError::VectorOrText { .. } => ErrorCode::VectorOrText,
        ValidationError::InvalidK(_) => ErrorCode::InvalidK,
        ValidationError::InvalidEfSearch(_) => ErrorCode::InvalidEfSearch,
        ValidationError::ModeNeedsText { .. } => ErrorCode::ModeNeedsText,
        ValidationError::InvalidKeywordWeight(_) => ErrorCode::InvalidKeywordWeight,
        ValidationError::UnsupportedMode(_) => ErrorCode::UnsupportedMode,
        ValidationError::InvalidHnsw { .. } => ErrorCode::InvalidHnsw,
        ValidationError::Filter(_) => ErrorCode::InvalidFilter,
    }
}

/// The HTTP status of a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        // No message names the host's directories, whatever its status.
        let mut message = crate::redact::relative(&self.to_string()).into_owned();
        if status.is_server_error() {
            tracing::warn!(code, error = %message, "request failed");
            message = redact_paths(&message);
        }
        let mut response = HttpResponse::build(status);
        if self.retry_after() {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"lakehouse\""));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        response.json(body(code, &message))
    }
}

fn body(code: &str, message: &str) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    }
}

/// Replaces filesystem paths in a server-side error message (`/var/lib/…`,
/// `file:///…`) with `<path>`: they say nothing a client can act on and
/// tell an attacker how the host is laid out. The log keeps the original.
/// A path is an absolute one of two or more components at the start of the
/// message or after a space, quote, bracket or `=`; the path of a URL
/// (`http://host/api/x`) is left alone.
pub fn redact_paths(message: &str) -> String {
    static PATH: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let path = PATH.get_or_init(|| {
        regex::Regex::new(
            r#"(^|[\s"'(\[=])((?:file(?:-object-store)?://)?(?:/[A-Za-z0-9._\-]+){2,}/?)"#,
        )
        .ok()
    });
    match path {
        Some(path) => path.replace_all(message, "${1}<path>").into_owned(),
        None => message.to_string(),
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            JsonPayloadError::Deserialize(err) if err.is_data() => {
                ApiError::InvalidBody(err.to_string())
            }
            JsonPayloadError::Deserialize(err) => ApiError::MalformedJson(err.to_string()),
            JsonPayloadError::Payload(actix_web::error::PayloadError::Overflow) => {
                ApiError::PayloadTooLarge { limit: 0 }
            }
            other => ApiError::MalformedJson(other.to_string()),
        }
    }
}

fn route_limit(req: &HttpRequest) -> Option<usize> {
    use actix_web::HttpMessage as _;
    req.extensions()
        .get::<super::front_door::Admitted>()
        .map(|a| a.body_limit as usize)
}

/// JSON bodies: size limit and error mapping.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, req| {
            let mut error = ApiError::from(err);
            if let ApiError::PayloadTooLarge { limit } = &mut error {
                if let Some(route) = route_limit(req) {
                    *limit = route;
                }
            }
            error.into()
        })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err: PathError, _req| ApiError::InvalidPath(err.to_string()).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::InvalidQuery(err.to_string()).into()
    })
}

/// The default service: any path no route matches.
/// The default service: a path no route matches is a 404; a path that a
/// route matches with another method is a 405 listing the methods it has.
pub async fn not_found(
    req: HttpRequest,
    context: Option<web::Data<super::ApiContext>>,
) -> ApiError {
    let (method, path) = (req.method().to_string(), req.path().to_string());
    if let (Some(pattern), Some(context)) = (req.match_pattern(), context) {
        let allow = context.contract.rules.methods_of(&pattern);
        if !allow.is_empty() {
            return ApiError::MethodNotAllowed {
                method,
                path,
                allow: allow.join(", "),
            };
        }
    }
    ApiError::RouteNotFound { method, path }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse<Self::Body> {
        self.error_response()
    }
}

/// The safety net: any error response that is not already our JSON shape
/// (a 405 from a resource, a payload error from a raw-body extractor) is
/// rewritten into it, keeping its status.
pub fn uniform_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .response()
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let message = res
            .response()
            .error()
            .map(|e| e.to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        let code = code_for_status(status);
        let message = crate::redact::relative(&message).into_owned();
        let message = if status.is_server_error() {
            redact_paths(&message)
        } else {
            message
        };
        let retry_after = res.response().headers().get(header::RETRY_AFTER).cloned();
        let (req, _) = res.into_parts();
        let mut response = HttpResponse::build(status);
        if let Some(value) = retry_after {
            response.insert_header((header::RETRY_AFTER, value));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            ));
        }
        let response = response.json(body(code, &message));
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, response).map_into_right_body(),
        ))
    })
}

/// The code of an error response something other than [`ApiError`] made
/// (actix-web itself, a middleware): always one of [`ErrorCode::ALL`].
fn code_for_status(status: StatusCode) -> &'static str {
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::MalformedBody,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidBody,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::ActorUnavailable,
        StatusCode::GATEWAY_TIMEOUT => ErrorCode::ActorTimeout,
        _ => ErrorCode::Internal,
    };
    code.as_str()
}
