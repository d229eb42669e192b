//! Operations: liveness, readiness, metrics and the supervision tree.

use actix_web::http::header::ContentType;
use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::supervision::{ChildStatus, NodeView};

/// Routes outside `/v1`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(ready).service(metrics);
}

/// Routes under `/v1`.
pub fn configure_v1(cfg: &mut ServiceConfig) {
    cfg.service(supervision);
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    status: &'static str,
    /// Vector indexes left failed after a crash loop: they answer 503
    /// `index_failed`, everything else serves (and a node is not taken out
    /// of rotation for one bad index).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_indexes: Vec<String>,
}

/// Liveness: the edge answers. Always open.
#[utoipa::path(tag = "ops", responses((status = 200, description = "The edge answers", body = Health)))]
#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: every actor in the tree is running (or was stopped on
/// purpose); anything starting, restarting or failed makes this a 503
/// naming it — except a vector index left failed, which is listed but
/// does not make the node unready.
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, description = "Every actor is running", body = Readiness),
        (status = 503, description = "`not_ready`: names what is starting, restarting or failed", body = super::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
#[get("/ready")]
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
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")),
    security((), ("bearer" = []))
)]
#[get("/metrics")]
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

/// The supervision tree: every node's status, restarts and last failure.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "The live tree", body = NodeView)),
    security(("bearer" = ["read"]))
)]
#[get("/supervision")]
async fn supervision(context: web::Data<ApiContext>) -> web::Json<NodeView> {
    web::Json(context.board.view("root", ChildStatus::Running))
}
