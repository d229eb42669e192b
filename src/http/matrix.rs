//! `POST /v1/matrix/search` and `POST /v1/matrix/playbooks/record`.

use actix_web::{post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::limits::{check_filter, check_ids};
use super::{ApiContext, ApiError};
use crate::actors::matrix::{MatrixMessage, NAME};
use crate::domain::matrix::{MatrixResults, MatrixSearch, PlaybookRecord, Recorded};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(search).service(record);
}

/// Semantic worker search, with role/city/state filters and the playbook
/// boost (same role, near query: `distance × (1 − 0.5·score)`).
#[utoipa::path(
    tag = "matrix",
    request_body = MatrixSearch,
    responses(
        (status = 200, description = "The k nearest workers; boosted and injected ones marked", body = MatrixResults),
        (status = 404, description = "`no_workers`: seed first", body = super::error::ErrorBody),
        (status = 422, description = "`empty_query`, `query_too_long`, `invalid_k`, `too_many_ids`", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `embedder_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/matrix/search")]
#[tracing::instrument(skip_all, fields(k = request.k, playbook = request.use_playbook))]
async fn search(
    context: web::Data<ApiContext>,
    request: web::Json<MatrixSearch>,
) -> Result<web::Json<MatrixResults>, ApiError> {
    let request = request.into_inner();
    check_ids(&context, "exclude_ids", request.exclude_ids.as_deref())?;
    check_filter(&context, request.filter.as_ref())?;
    let results = context
        .call(NAME, |reply| MatrixMessage::Search { request, reply })
        .await??;
    Ok(web::Json(results))
}

/// Record which workers filled a query (score in [0, 1]): later searches
/// with a near query and the same role boost them.
#[utoipa::path(
    tag = "matrix",
    request_body = PlaybookRecord,
    responses(
        (status = 200, description = "Recorded (durable in Lance)", body = Recorded),
        (status = 404, description = "`no_workers`: seed first", body = super::error::ErrorBody),
        (status = 422, description = "`empty_query`, `empty_role`, `invalid_score`, `invalid_worker_ids`, `unknown_workers`, `too_many_ids`", body = super::error::ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `embedder_unavailable`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/matrix/playbooks/record")]
#[tracing::instrument(skip_all, fields(role = %request.role, workers = request.worker_ids.len()))]
async fn record(
    context: web::Data<ApiContext>,
    request: web::Json<PlaybookRecord>,
) -> Result<web::Json<Recorded>, ApiError> {
    let request = request.into_inner();
    check_ids(&context, "worker_ids", Some(&request.worker_ids))?;
    let recorded = context
        .call(NAME, |reply| MatrixMessage::Record { request, reply })
        .await??;
    Ok(web::Json(recorded))
}
