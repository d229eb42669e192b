//! One error shape for every failure: `{"error": {"code", "message"}}`.
//!
//! The errors and their codes live below the doors ([`crate::service`],
//! [`crate::codes`]); this file is only their actix conversion: a code's
//! status, the JSON body, `Retry-After`, `WWW-Authenticate` and `Allow`.
//! actix-web's own failures (bad JSON,
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

pub use crate::codes::ErrorCode;
pub use crate::service::ApiError;

/// Seconds a client should wait before retrying a restarting actor.
const RETRY_AFTER_SECS: &str = "1";

/// The one error shape: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, documented code (docs/errors.md lists them).
    pub code: String,
    /// What went wrong, for a person; 5xx messages carry no file paths.
    pub message: String,
}

/// The HTTP status of a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let (status, code) = (status_of(code), code.as_str());
        // No message names the host's directories, whatever its status.
        let mut message = crate::redact::relative(&self.to_string()).into_owned();
        if status.is_server_error() {
            tracing::warn!(code, error = %message, "request failed");
            message = crate::redact::paths(&message);
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
            crate::redact::paths(&message)
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
