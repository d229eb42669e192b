//! `POST /v1/admin/faults`: make a named actor panic, fail or stall inside
//! its own message handler. Answers 404, like an unknown route, unless
//! `faults.enabled = true`.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{ApiContext, ApiError};
use crate::supervision::{Fault, FaultKind};

/// The longest stall a `delay` fault may cause.
const MAX_DELAY_MS: u64 = 60_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/faults", web::post().to(inject));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// The actor's tree name, e.g. `embed` or `index:workers`.
    pub actor: String,
    pub fault: FaultKind,
    /// Required for `delay`, refused otherwise.
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct FaultAccepted {
    pub actor: String,
    pub fault: FaultKind,
    pub injected: bool,
}

#[tracing::instrument(skip_all, fields(actor = %request.actor))]
async fn inject(
    context: web::Data<ApiContext>,
    method_path: actix_web::HttpRequest,
    request: web::Json<FaultRequest>,
) -> Result<HttpResponse, ApiError> {
    if !context.settings.faults.enabled {
        return Err(ApiError::RouteNotFound {
            method: method_path.method().to_string(),
            path: method_path.path().to_string(),
        });
    }
    let request = request.into_inner();
    let fault = match (request.fault, request.delay_ms) {
        (FaultKind::Delay, Some(ms)) if (1..=MAX_DELAY_MS).contains(&ms) => {
            Fault::delay(Duration::from_millis(ms))
        }
        (FaultKind::Delay, _) => {
            return Err(ApiError::InvalidBody(format!(
                "fault 'delay' needs delay_ms between 1 and {MAX_DELAY_MS}"
            )))
        }
        (_, Some(_)) => {
            return Err(ApiError::InvalidBody(
                "delay_ms applies only to fault 'delay'".into(),
            ))
        }
        (FaultKind::Panic, None) => Fault::panic(),
        (FaultKind::Error, None) => Fault::error(),
    };
    let known = context.board.find_node(&request.actor).is_some();
    context.directory.inject(&request.actor, fault, known)?;
    tracing::warn!(fault = ?request.fault, "fault injected");
    Ok(HttpResponse::Accepted().json(FaultAccepted {
        actor: request.actor,
        fault: request.fault,
        injected: true,
    }))
}
