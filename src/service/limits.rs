//! Bounds on request inputs that every door enforces, through the use
//! cases, before any actor sees them (every one from configuration, each
//! with its own code): how many fields a filter may have, how long an id
//! list may be, who may write the matrix's own indexes.

use super::{ApiError, Context};
use crate::domain::auth::Role;

/// A search filter has at most `limits.max_filter_fields` fields.
pub fn check_filter_fields(context: &Context, fields: usize) -> Result<(), ApiError> {
    let max = context.settings.limits.max_filter_fields;
    if fields > max {
        return Err(ApiError::TooManyFilterFields { max, got: fields });
    }
    Ok(())
}

/// A filter names at most `limits.max_filter_fields` fields: those at its
/// top level and the equalities nested in its `and`s (each of those gets a
/// lookup in the index). A filter that does not parse passes here and is
/// refused, naming the path, by the index.
pub fn check_filter(
    context: &Context,
    filter: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), ApiError> {
    let Some(filter) = filter else { return Ok(()) };
    let mut fields: std::collections::HashSet<&str> = filter
        .keys()
        .map(String::as_str)
        .filter(|k| !["and", "or", "not"].contains(k))
        .collect();
    let parsed =
        crate::domain::filter::Filter::parse(filter, crate::domain::vectors::MAX_FILTER_CONDITIONS);
    let equalities = parsed.map(|f| f.required_equalities()).unwrap_or_default();
    fields.extend(equalities.iter().map(|(field, _)| field.as_str()));
    check_filter_fields(context, fields.len())
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
    let reserved = [crate::actors::matrix::WORKERS, crate::actors::matrix::PLAYBOOK];
    if !reserved.contains(&index) {
        return Ok(());
    }
    match role {
        Some(role) if role < Role::Admin => Err(ApiError::ReservedIndex(index.to_string())),
        _ => Ok(()),
    }
}
