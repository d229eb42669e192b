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
use serde::Serialize;

use crate::actors::embed::EmbedError;
use crate::actors::ingest::IngestError;
use crate::actors::matrix::MatrixError;
use crate::actors::query::QueryError;
use crate::actors::storage::StorageError;
use crate::actors::vectors::IndexError;
use crate::domain::matrix::MatrixInvalid;
use crate::domain::vectors::ValidationError;
use crate::supervision::CallError;

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
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("service not ready: {0}")]
    NotReady(String),
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
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// The status and the stable, documented `code` of each failure.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            ApiError::DatasetNotFound(_) => (StatusCode::NOT_FOUND, "dataset_not_found"),
            ApiError::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::RouteNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Call(err) => call_status(err),
            ApiError::Index(err) => index_status(err),
            ApiError::Embed(err) => embed_status(err),
            ApiError::Matrix(err) => matrix_status(err),
            ApiError::Storage(err) => storage_status(err),
            ApiError::Ingest(err) => ingest_status(err),
            ApiError::Query(err) => query_status(err),
        }
    }

    /// Whether the client should retry after a pause (503s).
    fn retry_after(&self) -> bool {
        self.status_and_code().0 == StatusCode::SERVICE_UNAVAILABLE
    }
}

fn call_status(err: &CallError) -> (StatusCode, &'static str) {
    match err {
        CallError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "actor_unavailable"),
        CallError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "actor_timeout"),
        CallError::Unknown { .. } => (StatusCode::NOT_FOUND, "unknown_actor"),
        CallError::FaultsUnsupported { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "fault_not_supported")
        }
        CallError::Failed { .. } => (StatusCode::SERVICE_UNAVAILABLE, "actor_failed"),
    }
}

fn embed_status(err: &EmbedError) -> (StatusCode, &'static str) {
    match err {
        EmbedError::EmptyBatch => (StatusCode::UNPROCESSABLE_ENTITY, "empty_batch"),
        EmbedError::TooManyTexts { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_texts"),
        EmbedError::EmptyText { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "empty_text"),
        EmbedError::TextTooLong { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "text_too_long"),
        EmbedError::UnknownModel { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_model"),
        EmbedError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "embedder_unavailable"),
        EmbedError::BadResponse(_) => (StatusCode::BAD_GATEWAY, "embedder_bad_response"),
        EmbedError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "embed_failed"),
    }
}

fn index_status(err: &IndexError) -> (StatusCode, &'static str) {
    match err {
        IndexError::Invalid(invalid) => validation_status(invalid),
        IndexError::NotFound(_) => (StatusCode::NOT_FOUND, "index_not_found"),
        IndexError::AlreadyExists(_) => (StatusCode::CONFLICT, "index_exists"),
        IndexError::ItemNotFound { .. } => (StatusCode::NOT_FOUND, "item_not_found"),
        IndexError::Embed(err) => embed_status(err),
        IndexError::EmbedCall(CallError::Timeout { .. }) => {
            (StatusCode::GATEWAY_TIMEOUT, "embedder_timeout")
        }
        IndexError::EmbedCall(_) => (StatusCode::SERVICE_UNAVAILABLE, "embedder_unavailable"),
        IndexError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
        IndexError::Faiss(_) => (StatusCode::INTERNAL_SERVER_ERROR, "index_error"),
        IndexError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "index_unavailable"),
        IndexError::Loading(_) => (StatusCode::SERVICE_UNAVAILABLE, "index_loading"),
        IndexError::Failed { .. } => (StatusCode::SERVICE_UNAVAILABLE, "index_failed"),
        IndexError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn matrix_status(err: &MatrixError) -> (StatusCode, &'static str) {
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    match err {
        MatrixError::Invalid(invalid_request) => match invalid_request {
            MatrixInvalid::EmptyQuery => (invalid, "empty_query"),
            MatrixInvalid::QueryTooLong { .. } => (invalid, "query_too_long"),
            MatrixInvalid::InvalidK(_) => (invalid, "invalid_k"),
            MatrixInvalid::EmptyRole => (invalid, "empty_role"),
            MatrixInvalid::InvalidScore(_) => (invalid, "invalid_score"),
            MatrixInvalid::InvalidWorkerIds => (invalid, "invalid_worker_ids"),
            MatrixInvalid::UnknownWorkers(_) => (invalid, "unknown_workers"),
        },
        MatrixError::NoWorkers => (StatusCode::NOT_FOUND, "no_workers"),
        MatrixError::Index(err) => index_status(err),
        MatrixError::Embed(err) => embed_status(err),
        MatrixError::Call(err) => call_status(err),
    }
}

fn storage_status(err: &StorageError) -> (StatusCode, &'static str) {
    match err {
        StorageError::InvalidKey(_) => (StatusCode::BAD_REQUEST, "invalid_key"),
        StorageError::NotFound(_) => (StatusCode::NOT_FOUND, "object_not_found"),
        StorageError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        StorageError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "too_many_transfers"),
        StorageError::Aborted(_) => (StatusCode::BAD_REQUEST, "upload_aborted"),
        StorageError::Backend(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
    }
}

fn ingest_status(err: &IngestError) -> (StatusCode, &'static str) {
    match err {
        IngestError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
        IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        IngestError::Aborted(_) => (StatusCode::BAD_REQUEST, "upload_aborted"),
        IngestError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_csv"),
        IngestError::SchemaDrift { .. } => (StatusCode::CONFLICT, "schema_drift"),
        IngestError::Busy(_) => (StatusCode::CONFLICT, "ingest_in_progress"),
        IngestError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
        IngestError::Catalog(err) => call_status(err),
    }
}

fn query_status(err: &QueryError) -> (StatusCode, &'static str) {
    match err {
        QueryError::ReadOnly(_) => (StatusCode::BAD_REQUEST, "read_only"),
        QueryError::Sql(_) => (StatusCode::BAD_REQUEST, "sql_error"),
        QueryError::InvalidLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit"),
        QueryError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "query_timeout"),
        QueryError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
        QueryError::Catalog(err) => call_status(err),
    }
}

fn validation_status(err: &ValidationError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match err {
        ValidationError::InvalidName(_) => (S::BAD_REQUEST, "invalid_name"),
        ValidationError::InvalidDimension(_) => (S::BAD_REQUEST, "invalid_dimension"),
        ValidationError::DimensionMismatch { .. } => (S::BAD_REQUEST, "dimension_mismatch"),
        ValidationError::InvalidVector { .. } => (S::BAD_REQUEST, "invalid_vector"),
        ValidationError::InvalidId { .. } => (S::BAD_REQUEST, "invalid_id"),
        ValidationError::DuplicateId(_) => (S::BAD_REQUEST, "duplicate_id"),
        ValidationError::BatchTooLarge { .. } => (S::UNPROCESSABLE_ENTITY, "batch_too_large"),
        ValidationError::EmptyBatch => (S::UNPROCESSABLE_ENTITY, "empty_batch"),
        ValidationError::InvalidMetadata { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_metadata"),
        ValidationError::VectorOrText { .. } => (S::UNPROCESSABLE_ENTITY, "vector_or_text"),
        ValidationError::InvalidK(_) => (S::UNPROCESSABLE_ENTITY, "invalid_k"),
        ValidationError::InvalidEfSearch(_) => (S::UNPROCESSABLE_ENTITY, "invalid_ef_search"),
        ValidationError::InvalidHnsw { .. } => (S::BAD_REQUEST, "invalid_hnsw"),
        ValidationError::InvalidFilter { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_filter"),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        let mut response = HttpResponse::build(status);
        if self.retry_after() {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        response.json(body(code, &self.to_string()))
    }
}

fn body<'a>(code: &'a str, message: &'a str) -> ErrorBody<'a> {
    ErrorBody {
        error: ErrorDetail { code, message },
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
            JsonPayloadError::Deserialize(err) if err.is_data() => {
                ApiError::InvalidBody(err.to_string())
            }
            JsonPayloadError::Deserialize(err) => ApiError::MalformedJson(err.to_string()),
            other => ApiError::MalformedJson(other.to_string()),
        }
    }
}

/// JSON bodies: size limit and error mapping.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| ApiError::from(err).into())
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
pub async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
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

fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal",
        _ => "request_failed",
    }
}
