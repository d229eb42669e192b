//! Operations: liveness, readiness, metrics and the supervision tree.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{ApiContext, ApiError};
use crate::supervision::{ChildStatus, NodeView};

/// Routes outside `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

/// Routes under `/v1`.
pub fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.route("/supervision", web::get().to(supervision));
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    /// Vector indexes left failed after a crash loop: they answer 503
    /// `index_failed`, everything else serves (and a node is not taken out
    /// of rotation for one bad index).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_indexes: Vec<String>,
}

/// Liveness: the edge answers.
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness: every actor in the tree is running (or was stopped on
/// purpose); anything starting, restarting or failed makes this a 503
/// naming it — except a vector index left failed, which is listed but
/// does not make the node unready.
async fn ready(context: web::Data<ApiContext>) -> Result<HttpResponse, ApiError> {
    let nodes = context.board.flatten();
    let failed_indexes: Vec<String> = nodes
        .iter()
        .filter(|(name, status)| *status == ChildStatus::Failed && name.starts_with("index:"))
        .map(|(name, _)| name.clone())
        .collect();
    let waiting: Vec<String> = nodes
        .into_iter()
        .filter(|(name, status)| match status {
            ChildStatus::Starting | ChildStatus::Restarting => true,
            ChildStatus::Failed => !failed_indexes.contains(name),
            ChildStatus::Running | ChildStatus::Stopped => false,
        })
        .map(|(name, status)| format!("{name} ({})", status_word(status)))
        .collect();
    if waiting.is_empty() {
        Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            failed_indexes,
        }))
    } else {
        Err(ApiError::NotReady(format!(
            "waiting for {}",
            waiting.join(", ")
        )))
    }
}

fn status_word(status: ChildStatus) -> &'static str {
    match status {
        ChildStatus::Starting => "starting",
        ChildStatus::Running => "running",
        ChildStatus::Restarting => "restarting",
        ChildStatus::Stopped => "stopped",
        ChildStatus::Failed => "failed",
    }
}

/// Prometheus text exposition.
async fn metrics(context: web::Data<ApiContext>) -> Result<HttpResponse, ApiError> {
    let body = context
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("static mime"),
        ))
        .body(body))
}

/// The supervision tree as JSON.
async fn supervision(context: web::Data<ApiContext>) -> web::Json<NodeView> {
    web::Json(context.board.view("root", ChildStatus::Running))
}
