//! `POST /v1/matrix/search` and `POST /v1/matrix/playbooks/record`.

use actix_web::web;

use super::{ApiContext, ApiError};
use crate::actors::matrix::{MatrixMessage, NAME};
use crate::domain::matrix::{MatrixResults, MatrixSearch, PlaybookRecord, Recorded};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/matrix/search", web::post().to(search))
        .route("/matrix/playbooks/record", web::post().to(record));
}

#[tracing::instrument(skip_all, fields(k = request.k, playbook = request.use_playbook))]
async fn search(
    context: web::Data<ApiContext>,
    request: web::Json<MatrixSearch>,
) -> Result<web::Json<MatrixResults>, ApiError> {
    let request = request.into_inner();
    let results = context
        .call(NAME, |reply| MatrixMessage::Search { request, reply })
        .await??;
    Ok(web::Json(results))
}

#[tracing::instrument(skip_all, fields(role = %request.role, workers = request.worker_ids.len()))]
async fn record(
    context: web::Data<ApiContext>,
    request: web::Json<PlaybookRecord>,
) -> Result<web::Json<Recorded>, ApiError> {
    let request = request.into_inner();
    let recorded = context
        .call(NAME, |reply| MatrixMessage::Record { request, reply })
        .await??;
    Ok(web::Json(recorded))
}
