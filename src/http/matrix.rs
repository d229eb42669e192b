//! `POST /v1/matrix/search`, `POST /v1/matrix/playbooks/record`,
//! `PATCH /v1/matrix/workers/{id}` and `POST /v1/matrix/workers/count`.

use crate::domain::de::Object;
use actix_web::{delete, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::domain::items::ChangeOutcome;
use crate::domain::matrix::{
    MatrixResults, MatrixSearch, PlaybookRecord, Recorded, Withdrawn, WorkerCount,
    WorkerCountAnswer, WorkerPatch,
};
use crate::service;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(search_workers)
        .service(record_placement)
        .service(update_worker)
        .service(count_workers)
        .service(withdraw_recording);
}

/// Semantic worker search, with role/city/state filters and the playbook
/// boost (same role, near query: `distance × (1 − 0.5·score)`).
#[utoipa::path(
    tag = "matrix",
    request_body = MatrixSearch,
    responses(
        (status = 200, description = "The k nearest workers; boosted and injected ones marked", body = MatrixResults),
        (status = 404, description = "`no_workers`: seed first", body = super::error::ErrorBody),
        (status = 422, description = "`empty_query`, `query_too_long`, `invalid_k`, `too_many_ids`, `invalid_body` (a typed parameter out of its range: `available_by` not a date, `max_rate` negative), `unknown_city` (`near` names a city the shipped table does not hold), `invalid_window` (`available_between`'s `from` after its `to`), `invalid_filter`, `too_many_filter_fields`, `mode_needs_text` (a keyword search whose query has no letter or digit)", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `embedder_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/matrix/search")]
#[tracing::instrument(skip_all, fields(k = request.k, playbook = request.use_playbook))]
async fn search_workers(
    context: web::Data<ApiContext>,
    request: web::Json<Object<MatrixSearch>>,
) -> Result<web::Json<MatrixResults>, ApiError> {
    Ok(web::Json(
        service::matrix::search_workers(&context, request.into_inner().0).await?,
    ))
}

/// Record which workers filled a query (score in [0, 1]): later searches
/// with a near query and the same role boost them.
#[utoipa::path(
    tag = "matrix",
    request_body = PlaybookRecord,
    responses(
        (status = 200, description = "Recorded (durable in Lance)", body = Recorded),
        (status = 404, description = "`no_workers`: seed first", body = super::error::ErrorBody),
        (status = 422, description = "`empty_query`, `query_too_long`, `empty_role`, `invalid_score`, `invalid_worker_ids`, `unknown_workers`, `too_many_ids`", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `embedder_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/matrix/playbooks/record")]
#[tracing::instrument(skip_all, fields(role = %request.role, workers = request.worker_ids.len()))]
async fn record_placement(
    context: web::Data<ApiContext>,
    http: actix_web::HttpRequest,
    request: web::Json<Object<PlaybookRecord>>,
) -> Result<web::Json<Recorded>, ApiError> {
    let mut request = request.into_inner().0;
    request.recorded_by = Some(super::caller_name(&http));
    Ok(web::Json(
        service::matrix::record_placement(&context, request).await?,
    ))
}

/// Change a worker's day-to-day fields — `status` (active, on_assignment,
/// placed, do_not_use), availability, shift, certifications, contact —
/// with the write role; `null` removes a field. The profile text and its
/// vector stay (nothing is embedded). Durable in Lance once answered.
#[utoipa::path(
    tag = "matrix",
    params(("id" = String, Path, description = "The worker")),
    request_body = WorkerPatch,
    responses(
        (status = 200, description = "Matched 1, changed 0 or 1, and the Lance version", body = ChangeOutcome),
        (status = 400, description = "`invalid_id`", body = super::error::ErrorBody),
        (status = 404, description = "`no_workers`: seed first; `item_not_found`", body = super::error::ErrorBody),
        (status = 409, description = "`write_conflict`", body = super::error::ErrorBody),
        (status = 422, description = "`empty_change`, `invalid_metadata` (a typed worker field out of shape, named)", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[patch("/matrix/workers/{id}")]
#[tracing::instrument(skip_all)]
async fn update_worker(
    context: web::Data<ApiContext>,
    id: web::Path<String>,
    request: web::Json<Object<WorkerPatch>>,
) -> Result<web::Json<ChangeOutcome>, ApiError> {
    let outcome =
        service::matrix::update_worker(&context, id.into_inner(), request.into_inner().0).await?;
    Ok(web::Json(outcome))
}

/// How many workers match a role, a place, statuses and a filter, and with
/// `facets` how they spread over some fields (over every match, not a top
/// k).
#[utoipa::path(
    tag = "matrix",
    request_body = WorkerCount,
    responses(
        (status = 200, description = "The count, the statuses left out, the facets", body = WorkerCountAnswer),
        (status = 404, description = "`no_workers`: seed first", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_body`, `unknown_city`, `invalid_filter`, `too_many_filter_fields`, `invalid_facets`", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/matrix/workers/count")]
#[tracing::instrument(skip_all)]
async fn count_workers(
    context: web::Data<ApiContext>,
    request: web::Json<Object<WorkerCount>>,
) -> Result<web::Json<WorkerCountAnswer>, ApiError> {
    Ok(web::Json(
        service::matrix::count_workers(&context, request.into_inner().0).await?,
    ))
}

/// Withdraw one recording (a mistake, or a placement that fell through):
/// it is taken out of its entry, and the boost or demotion it gave is gone
/// from the next search. Durable once answered.
#[utoipa::path(
    tag = "matrix",
    params(("id" = String, Path, description = "The recording, as `record` answered it")),
    responses(
        (status = 200, description = "Withdrawn: the entry and what it holds now", body = Withdrawn),
        (status = 400, description = "`invalid_id`", body = super::error::ErrorBody),
        (status = 404, description = "`recording_not_found`", body = super::error::ErrorBody),
        (status = 409, description = "`write_conflict`", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[delete("/matrix/playbooks/recordings/{id}")]
#[tracing::instrument(skip_all)]
async fn withdraw_recording(
    context: web::Data<ApiContext>,
    id: web::Path<String>,
) -> Result<web::Json<Withdrawn>, ApiError> {
    Ok(web::Json(
        service::matrix::withdraw_recording(&context, id.into_inner()).await?,
    ))
}
