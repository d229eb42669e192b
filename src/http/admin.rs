//! Operator actions:
//!
//! - `POST /v1/admin/faults`: make a named actor panic, fail or stall inside
//!   its own message handler (or an index's commit task panic). Answers
//!   404, like an unknown route, unless `faults.enabled = true`.
//! - `POST /v1/admin/indexes/{name}/restart`: stop an index (if it runs)
//!   and start it again with a clean restart history — how an index left
//!   `failed` after a crash loop is brought back once its cause is fixed.
//! - `POST /v1/admin/indexes/{name}/reindex`: move an index built with an
//!   older analysis to the current one, re-embedding in the background.
//! - `POST /v1/admin/snapshots`, `GET /v1/admin/snapshots`: snapshots of
//!   the data dir (see [`crate::backup`]).

use crate::domain::de::Object;
use std::time::Duration;

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::actors::vectors::index::actor_name;
use crate::actors::vectors::{IndexError, SUPERVISOR};
use crate::domain::vectors::validate_name;
use crate::supervision::{Fault, FaultKind, SupervisorError, SupervisorMessage};

/// The longest stall a `delay` fault may cause.
const MAX_DELAY_MS: u64 = 60_000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(inject_fault)
        .service(restart_index)
        .service(reindex_index)
        .service(take_snapshot)
        .service(list_snapshots);
}

/// Snapshot every dataset and index as of now into `snapshots.dir`: each
/// Lance dataset's newest version (tagged, so retention keeps it), the
/// catalogs, definitions and stored objects, each file by its SHA-256 —
/// only the files the target does not hold yet are copied. Restore with
/// `lakehouse restore --from DIR --snapshot ID --data-dir DIR`.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 201, description = "The snapshot's manifest", body = crate::backup::SnapshotManifest),
        (status = 409, description = "`snapshot_in_progress`", body = super::error::ErrorBody),
        (status = 500, description = "`storage_error`: the data dir or the target failed (named)", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[post("/admin/snapshots")]
async fn take_snapshot(context: web::Data<ApiContext>) -> Result<HttpResponse, ApiError> {
    let manifest = crate::service::ops::take_snapshot(&context).await?;
    Ok(HttpResponse::Created().json(manifest))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    /// Newest first.
    pub snapshots: Vec<crate::backup::SnapshotSummary>,
}

/// The snapshots `snapshots.dir` holds, newest first.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "The snapshots", body = SnapshotList),
        (status = 500, description = "`storage_error`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[get("/admin/snapshots")]
async fn list_snapshots(
    context: web::Data<ApiContext>,
) -> Result<web::Json<SnapshotList>, ApiError> {
    Ok(web::Json(SnapshotList {
        snapshots: crate::service::ops::list_snapshots(&context).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestartAccepted {
    pub index: String,
    /// The index is loading; `GET /v1/vectors/index/{name}` answers once it
    /// has (503 `index_loading` meanwhile).
    pub restarting: bool,
}

/// Stop an index (if it runs) and start it again with a clean restart
/// history: how one left failed after a crash loop comes back.
#[utoipa::path(
    tag = "admin",
    params(("name" = String, Path, description = "The index")),
    responses(
        (status = 202, description = "Restarting: it answers `503 index_loading` until loaded", body = RestartAccepted),
        (status = 404, description = "`index_not_found`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[post("/admin/indexes/{name}/restart")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn restart_index(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if validate_name(&name).is_err() {
        return Err(IndexError::NotFound(name).into());
    }
    let actor = actor_name(&name);
    // A restart reloads the index from Lance: give it the long budget.
    let restarted = context
        .call_with(
            SUPERVISOR,
            |reply| SupervisorMessage::RestartChild(actor.clone(), reply),
            context.settings.request_timeout() * 4,
        )
        .await?;
    match restarted {
        Ok(()) => {}
        Err(SupervisorError::NoSuchChild(_)) => return Err(IndexError::NotFound(name).into()),
        Err(err) => return Err(ApiError::Internal(err.to_string())),
    }
    tracing::warn!("index restart requested by an operator");
    Ok(HttpResponse::Accepted().json(RestartAccepted {
        index: name,
        restarting: true,
    }))
}

/// Move an index built with an older analysis to the current one. Its
/// keyword side and queries switch at once (the index restarts); the
/// vectors the built-in model made from its texts are re-embedded in the
/// background, and `GET /v1/vectors/index/{name}` shows how far
/// (`reindex`). Vectors a client gave, or Ollama made, stay. A restart or
/// crash midway resumes it; a client's write meanwhile is never
/// overwritten.
#[utoipa::path(
    tag = "admin",
    params(("name" = String, Path, description = "The index")),
    responses(
        (status = 202, description = "`started`, or `running` already", body = crate::domain::vectors::ReindexAnswer),
        (status = 200, description = "`current`: the index already has the current analysis", body = crate::domain::vectors::ReindexAnswer),
        (status = 404, description = "`index_not_found`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[post("/admin/indexes/{name}/reindex")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn reindex_index(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let answer = crate::service::vectors::reindex(&context, &name.into_inner()).await?;
    Ok(match answer.state {
        crate::domain::vectors::ReindexRequestState::Current => HttpResponse::Ok().json(answer),
        _ => HttpResponse::Accepted().json(answer),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// The actor's tree name, e.g. `embed` or `index:workers`.
    pub actor: String,
    pub fault: FaultKind,
    /// Required for `delay` and `slow_load`, refused otherwise.
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 1, maximum = 60000)]
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaultAccepted {
    pub actor: String,
    pub fault: FaultKind,
    pub injected: bool,
}

/// Make a named actor panic, fail or stall inside its own handler (or an
/// index's commit task panic, or its next load be slow). Answers 404, like
/// an unknown route, unless `faults.enabled = true`.
#[utoipa::path(
    tag = "admin",
    request_body = FaultRequest,
    responses(
        (status = 202, description = "Delivered to the actor's mailbox", body = FaultAccepted),
        (status = 404, description = "`not_found` (faults are off) or `unknown_actor`", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_body` (a delay out of range, a fault the actor does not take) or `fault_not_supported`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[post("/admin/faults")]
#[tracing::instrument(skip_all, fields(actor = %request.actor))]
async fn inject_fault(
    context: web::Data<ApiContext>,
    method_path: actix_web::HttpRequest,
    request: web::Json<Object<FaultRequest>>,
) -> Result<HttpResponse, ApiError> {
    if !context.settings.faults.enabled {
        return Err(ApiError::RouteNotFound {
            method: method_path.method().to_string(),
            path: method_path.path().to_string(),
        });
    }
    let request = request.into_inner().0;
    let index_only = |name: &str| {
        ApiError::InvalidBody(format!(
            "fault '{name}' applies only to vector indexes (actor 'index:<name>')"
        ))
    };
    let is_index = crate::domain::vectors::index_of(&request.actor).is_some();
    let fault = match (request.fault, request.delay_ms) {
        (FaultKind::Delay, Some(ms)) if (1..=MAX_DELAY_MS).contains(&ms) => {
            Fault::delay(Duration::from_millis(ms))
        }
        (FaultKind::SlowLoad, Some(ms)) if (1..=MAX_DELAY_MS).contains(&ms) && is_index => {
            Fault::slow_load(Duration::from_millis(ms))
        }
        (FaultKind::SlowLoad, Some(_)) if !is_index => return Err(index_only("slow_load")),
        (kind @ (FaultKind::Delay | FaultKind::SlowLoad), _) => {
            let name = if kind == FaultKind::Delay {
                "delay"
            } else {
                "slow_load"
            };
            return Err(ApiError::InvalidBody(format!(
                "fault '{name}' needs delay_ms between 1 and {MAX_DELAY_MS}"
            )));
        }
        (_, Some(_)) => {
            return Err(ApiError::InvalidBody(
                "delay_ms applies only to faults 'delay' and 'slow_load'".into(),
            ))
        }
        (FaultKind::Panic, None) => Fault::panic(),
        (FaultKind::Error, None) => Fault::error(),
        (FaultKind::CommitPanic, None) if is_index => Fault::commit_panic(),
        (FaultKind::CommitPanic, None) => return Err(index_only("commit_panic")),
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
