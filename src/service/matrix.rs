//! The matrix use cases: worker search (with the playbook's boosts) and
//! recording a placement. The matrix actor does the work; its searches of
//! `workers` and `playbook_memory` go through their published readers.

use crate::actors::matrix::{MatrixMessage, NAME};
use crate::domain::matrix::{MatrixResults, MatrixSearch, PlaybookRecord, Recorded};

use super::limits::{check_ids, prepare_search};
use super::{ApiError, Context};

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
