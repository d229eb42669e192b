//! The matrix use cases: worker search (with the playbook's boosts),
//! recording a placement, a worker's day-to-day fields changed, workers
//! counted. The matrix actor does the searching and recording; its
//! searches of `workers` and `playbook_memory` go through their published
//! readers. Changes and counts go to the `workers` index itself.

use crate::actors::matrix::{MatrixError, MatrixMessage, NAME, WORKERS};
use crate::actors::vectors::index::{ChangeKind, ChangeRequest, Target};
use crate::actors::vectors::IndexError;
use crate::domain::items::{check_facets, ChangeError, ChangeOutcome};
use crate::domain::matrix::{
    MatrixResults, MatrixSearch, PlaybookRecord, Recorded, WorkerCount, WorkerCountAnswer,
    WorkerPatch,
};

use super::limits::{check_ids, prepare_search};
use super::{ApiError, Context};

/// `workers` missing is `no_workers`, as for a search.
fn no_workers(err: ApiError) -> ApiError {
    match err {
        ApiError::Index(IndexError::NotFound(_)) => MatrixError::NoWorkers.into(),
        other => other,
    }
}

/// Takes one recording back out of the playbook (a mistaken one, or one
/// whose placement fell through): its boost or demotion is gone from the
/// next search.
pub async fn withdraw_recording(
    context: &Context,
    recording_id: String,
) -> Result<crate::domain::matrix::Withdrawn, ApiError> {
    Ok(context
        .call(NAME, |reply| MatrixMessage::Withdraw {
            recording_id,
            reply,
        })
        .await??)
}

/// Sets (or with `null` removes) a worker's fields; its profile text and
/// vector stay. The write role suffices: only metadata changes, checked as
/// a worker's (`status`, `shift`, availability, certifications typed).
pub async fn update_worker(
    context: &Context,
    id: String,
    patch: WorkerPatch,
) -> Result<ChangeOutcome, ApiError> {
    crate::domain::vectors::validate_id(&id, "id").map_err(IndexError::from)?;
    if patch.metadata.is_empty() {
        return Err(IndexError::from(ChangeError::EmptyChange(
            "'metadata' names no field: nothing to change",
        ))
        .into());
    }
    let request = ChangeRequest {
        target: Target::One(id),
        change: ChangeKind::Patch {
            metadata: patch.metadata,
            text: None,
            vector: None,
        },
        allow_large: false,
        max_items: 1,
    };
    super::vectors::change(context, WORKERS, request)
        .await
        .map_err(no_workers)
}

/// How many workers match a role, place, status and filter, and facets
/// over them.
pub async fn count_workers(
    context: &Context,
    request: WorkerCount,
) -> Result<WorkerCountAnswer, ApiError> {
    let facets = request.facets.clone().unwrap_or_default();
    check_facets(&facets).map_err(IndexError::from)?;
    let prepared = prepare_search(context, &request.as_search())?;
    let filter = Some(prepared.filter).filter(|f| !f.is_empty());
    let hidden = match crate::actors::vectors::index::reader(&context.directory, WORKERS) {
        Some(reader) if !prepared.hidden_statuses.is_empty() => {
            let names = prepared
                .hidden_statuses
                .iter()
                .map(|s| s.as_str().to_string())
                .collect();
            reader.ids_with("status", names).await?
        }
        _ => Vec::new(),
    };
    let tally = super::vectors::tally(context, WORKERS, filter, facets.clone(), hidden)
        .await
        .map_err(no_workers)?;
    Ok(WorkerCountAnswer {
        count: tally.count,
        lance_version: tally.version,
        excluded_statuses: prepared.excluded_statuses,
        facets: (!facets.is_empty()).then(|| tally.facets.into_iter().collect()),
    })
}

/// The k best workers for a need.
pub async fn search_workers(
    context: &Context,
    mut request: MatrixSearch,
) -> Result<MatrixResults, ApiError> {
    check_ids(context, "exclude_ids", request.exclude_ids.as_deref())?;
    request.prepared = Some(prepare_search(context, &request)?);
    let results = context
        .call(NAME, |reply| MatrixMessage::Search { request, reply })
        .await??;
    if let Some(reason) = results.degraded {
        context
            .metrics
            .matrix_degraded
            .with_label_values(&[reason.as_str()])
            .inc();
    }
    Ok(results)
}

/// Records which workers filled a need (durable in Lance once answered).
pub async fn record_placement(
    context: &Context,
    request: PlaybookRecord,
) -> Result<Recorded, ApiError> {
    check_ids(context, "worker_ids", Some(&request.worker_ids))?;
    Ok(context
        .call(NAME, |reply| MatrixMessage::Record { request, reply })
        .await??)
}
