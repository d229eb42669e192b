//! `POST /v1/matrix/search` and `POST /v1/matrix/playbooks/record`.

use crate::domain::de::Object;
use actix_web::{post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::domain::matrix::{MatrixResults, MatrixSearch, PlaybookRecord, Recorded};
use crate::service;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(search_workers).service(record_placement);
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
    request: web::Json<Object<PlaybookRecord>>,
) -> Result<web::Json<Recorded>, ApiError> {
    Ok(web::Json(
        service::matrix::record_placement(&context, request.into_inner().0).await?,
    ))
}
