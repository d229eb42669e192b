//! Bounds on request inputs that every door enforces, through the use
//! cases, before any actor sees them (every one from configuration, each
//! with its own code): how many fields a filter may have, how long an id
//! list may be, who may write the matrix's own indexes.

use super::{ApiError, Context};
use crate::actors::matrix::MatrixError;
use crate::actors::vectors::IndexError;
use crate::domain::auth::Role;
use crate::domain::filter::{
    named_fields, top_level_fields, Filter, PreparedFilter, MAX_FILTER_CONDITIONS,
};
use crate::domain::matrix::{MatrixSearch, PreparedSearch};
use crate::domain::vectors::ValidationError;

/// A search filter has at most `limits.max_filter_fields` fields.
pub fn check_filter_fields(context: &Context, fields: usize) -> Result<(), ApiError> {
    let max = context.settings.limits.max_filter_fields;
    if fields > max {
        return Err(ApiError::TooManyFilterFields { max, got: fields });
    }
    Ok(())
}

/// Parses a search filter, once: the index gets the parsed filter. It names
/// at most `limits.max_filter_fields` fields: those at its top level
/// (counted before it is parsed) and the equalities nested in its `and`s
/// (each of those gets a lookup in the index). A filter that does not
/// parse is refused with `invalid_filter`, naming the path.
pub fn prepare_filter(
    context: &Context,
    filter: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<PreparedFilter>, ApiError> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    check_filter_fields(context, top_level_fields(filter).count())?;
    let parsed = Filter::parse(filter, MAX_FILTER_CONDITIONS)
        .map_err(|e| IndexError::Invalid(ValidationError::Filter(e)))?;
    check_filter_fields(context, named_fields(filter, &parsed).len())?;
    Ok(Some(PreparedFilter::of(parsed)))
}

/// As [`prepare_filter`], for a caller that passes the filter on as written
/// (a chat's retrieval).
pub fn check_filter(
    context: &Context,
    filter: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), ApiError> {
    prepare_filter(context, filter).map(|_| ())
}

/// A matrix search, checked and its filter parsed once (see
/// [`MatrixSearch::prepare`]), within `limits.max_filter_fields`.
pub fn prepare_search(
    context: &Context,
    request: &MatrixSearch,
) -> Result<PreparedSearch, ApiError> {
    if let Some(filter) = &request.filter {
        check_filter_fields(context, top_level_fields(filter).count())?;
    }
    let prepared = request.prepare().map_err(MatrixError::from)?;
    check_filter_fields(context, prepared.filter_fields.len())?;
    Ok(prepared)
}

/// An id list (`exclude_ids`, `worker_ids`) has at most
/// `limits.max_id_list` ids.
pub fn check_ids(
    context: &Context,
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

/// `workers` and `playbook_memory` are the matrix's own: with tokens, only
/// an admin may create them or write to them directly (a write token could
/// otherwise replace every worker, or forge playbook boosts). `role` is the
/// caller's, `None` when no tokens are configured.
pub fn check_reserved(role: Option<Role>, index: &str) -> Result<(), ApiError> {
    let reserved = [
        crate::actors::matrix::WORKERS,
        crate::actors::matrix::PLAYBOOK,
    ];
    if !reserved.contains(&index) {
        return Ok(());
    }
    match role {
        Some(role) if role < Role::Admin => Err(ApiError::ReservedIndex(index.to_string())),
        _ => Ok(()),
    }
}
