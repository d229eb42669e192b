//! Per-request observation: a request id, a tracing span, the request
//! counter and latency histogram (labelled by route template and a known
//! method, never by raw path or an arbitrary method), and an access log
//! line naming the caller's token (skipped for `/metrics` and `/health`).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use tracing::Instrument;

use super::auth::Caller;
use super::ApiContext;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Label for requests that matched no route, so scanners cannot blow up
/// the metric's cardinality.
const UNMATCHED: &str = "unmatched";

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = method_label(req.method());
    let path = req.path().to_string();
    let metrics = req
        .app_data::<web::Data<ApiContext>>()
        .map(|c| c.metrics.clone());
    let span = tracing::info_span!("request", id = %request_id, %method, %path);

    let outcome = next.call(req).instrument(span.clone()).await;

    let (status, route, caller) = match &outcome {
        Ok(res) => (
            res.status(),
            res.request().match_pattern(),
            res.request()
                .extensions()
                .get::<Caller>()
                .map(|c| c.name.clone()),
        ),
        Err(err) => (err.as_response_error().status_code(), None, None),
    };
    let caller = caller.unwrap_or_else(|| "anonymous".to_string());
    let route = route.unwrap_or_else(|| UNMATCHED.to_string());
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics
            .http_requests
            .with_label_values(&[method, &route, status.as_str()])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[method, &route])
            .observe(elapsed.as_secs_f64());
    }
    if path != "/metrics" && path != "/health" {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                %route,
                token = %caller,
                elapsed_us = elapsed.as_micros() as u64,
                "request"
            )
        });
    }
    let mut res = outcome?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    Ok(res)
}

/// The method as a metric label: one of the standard ones, or `other`, so
/// a client inventing methods cannot create new series.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Accept a caller's id only if it is short and harmless in logs.
fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
