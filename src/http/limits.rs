//! Bounds on request inputs that the edge enforces before any actor sees
//! them (every one from configuration, each with its own code): how many
//! fields a filter may have, how long an id list may be.

use super::{ApiContext, ApiError};

/// A search filter has at most `limits.max_filter_fields` fields.
pub fn check_filter_fields(context: &ApiContext, fields: usize) -> Result<(), ApiError> {
    let max = context.settings.limits.max_filter_fields;
    if fields > max {
        return Err(ApiError::TooManyFilterFields { max, got: fields });
    }
    Ok(())
}

/// An id list (`exclude_ids`, `worker_ids`) has at most
/// `limits.max_id_list` ids.
pub fn check_ids(
    context: &ApiContext,
    field: &'static str,
    ids: Option<&[String]>,
) -> Result<(), ApiError> {
    let max = context.settings.limits.max_id_list;
    match ids {
        Some(ids) if ids.len() > max => Err(ApiError::TooManyIds {
            field,
            max,
            got: ids.len(),
        }),
        _ => Ok(()),
    }
}
