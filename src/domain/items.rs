//! Changing items in place and in bulk: a patch of one item's fields, an
//! update or delete of the items some ids or a filter select, and a count.
//! The requests, their checks and the merge of a change into metadata.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::vectors::{check_unique_ids, validate_id, ValidationError};
use crate::codes::{ErrorCode, HasCode};

/// `PATCH …/items/{id}` body: what changes, the rest stays.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemPatch {
    /// Fields to set; a field set to `null` is removed. Fields not named
    /// keep their values.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "super::de::optional_object")]
    pub metadata: Option<Map<String, Value>>,
    /// A new text: stored for keyword search and embedded (unless `vector`
    /// is given). Absent: the text and vector stay as they are.
    pub text: Option<String>,
    /// A new vector. Absent: the vector stays (or is embedded from a new
    /// `text`).
    pub vector: Option<Vec<f32>>,
}

/// `POST …/items/update` body: fields set on the items some ids or a
/// filter select.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpdate {
    /// At most `vectors.max_bulk_items` ids; ids that do not exist are not
    /// counted. Exactly one of `ids` and `filter`.
    pub ids: Option<Vec<String>>,
    /// The search filter's language, naming at least one field.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "super::de::optional_object")]
    pub filter: Option<Map<String, Value>>,
    /// Act on more than `vectors.max_bulk_items` items (committed in
    /// groups of `vectors.max_batch`: each group is durable once
    /// committed, and a failure stops the rest).
    #[serde(default)]
    pub allow_large: bool,
    /// Fields to set on every selected item; `null` removes a field.
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "super::de::object")]
    pub set: Map<String, Value>,
}

/// `POST …/items/delete` body: the items some ids or a filter select.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDelete {
    /// At most `vectors.max_bulk_items` ids; ids that do not exist are not
    /// counted. Exactly one of `ids` and `filter`.
    pub ids: Option<Vec<String>>,
    /// The search filter's language, naming at least one field.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "super::de::optional_object")]
    pub filter: Option<Map<String, Value>>,
    /// As in an update.
    #[serde(default)]
    pub allow_large: bool,
}

/// Which items a bulk operation acts on, as sent.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ids: Option<Vec<String>>,
    pub filter: Option<Map<String, Value>>,
    pub allow_large: bool,
}

impl BulkUpdate {
    /// Its selection and its change.
    pub fn split(self) -> (Selection, Map<String, Value>) {
        let selection = Selection {
            ids: self.ids,
            filter: self.filter,
            allow_large: self.allow_large,
        };
        (selection, self.set)
    }
}

impl BulkDelete {
    pub fn selection(self) -> Selection {
        Selection {
            ids: self.ids,
            filter: self.filter,
            allow_large: self.allow_large,
        }
    }
}

/// `POST …/count` body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    /// Count only the items this filter selects (none: every item).
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "super::de::optional_object")]
    pub filter: Option<Map<String, Value>>,
}

/// `POST …/count` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountAnswer {
    pub count: usize,
    /// The Lance version counted.
    pub lance_version: u64,
}

/// What a patch, update or delete did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeOutcome {
    /// Items the selection matched.
    pub matched: usize,
    /// Items written (updated or deleted); an update that sets what an
    /// item already holds is not written.
    pub changed: usize,
    /// The Lance version that holds the change (the current one when
    /// nothing was written).
    pub lance_version: u64,
}

/// Items per scroll page, at most.
pub const MAX_SCROLL_LIMIT: usize = 1000;

/// `POST …/items/scroll` body: one page of the items a filter selects, in
/// id order, all pages of one Lance version.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrollRequest {
    /// Only the items this filter selects; send the same filter with every
    /// page.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "super::de::optional_object")]
    pub filter: Option<Map<String, Value>>,
    /// Items per page, 1 to 1000 (default 100).
    #[serde(default, deserialize_with = "super::de::optional_integer")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor` (none: the first page, at the
    /// index's current version).
    #[schema(max_length = 2100)]
    pub cursor: Option<String>,
    /// Give each item its vector.
    #[serde(default)]
    pub with_vectors: bool,
}

/// One item of a scroll page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScrolledItem {
    pub id: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// `POST …/items/scroll` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScrollPage {
    pub items: Vec<ScrolledItem>,
    /// Give it back for the next page; absent after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The version every page of this scroll reads.
    pub lance_version: u64,
}

/// Where a scroll stands: the version it reads and the last id it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub version: u64,
    pub after: String,
}

impl Cursor {
    /// `<version>.<the last id, hex>`: opaque to clients, safe in any URL
    /// or log.
    pub fn encode(&self) -> String {
        let hex: String = self.after.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}.{hex}", self.version)
    }

    pub fn decode(text: &str) -> Result<Self, ChangeError> {
        let invalid = || {
            ChangeError::InvalidCursor(format!(
                "'{}' is not a cursor this service gave",
                super::shown(text, 40)
            ))
        };
        let (version, hex) = text.split_once('.').ok_or_else(invalid)?;
        let version = version.parse::<u64>().map_err(|_| invalid())?;
        if hex.len() % 2 != 0 || hex.len() > 2 * super::vectors::MAX_ID_CHARS * 4 {
            return Err(invalid());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let after = String::from_utf8(bytes).map_err(|_| invalid())?;
        Ok(Self { version, after })
    }
}

/// Values shown per faceted field, most frequent first.
pub const MAX_FACET_VALUES: usize = 100;

/// Fields one search may ask facets of.
pub const MAX_FACET_FIELDS: usize = 8;

/// One value of a faceted field and how many of the set hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FacetCount {
    /// The value as text (`"Welder"`, `"3"`, `"true"`).
    pub value: String,
    pub count: usize,
}

/// Facet fields, checked: at most [`MAX_FACET_FIELDS`], each a top-level
/// field name of 1 to 64 characters without control characters, none
/// twice.
pub fn check_facets(fields: &[String]) -> Result<(), ChangeError> {
    if fields.len() > MAX_FACET_FIELDS {
        return Err(ChangeError::InvalidFacets(format!(
            "at most {MAX_FACET_FIELDS} facet fields, got {}",
            fields.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, field) in fields.iter().enumerate() {
        let chars = field.chars().count();
        if chars == 0 || chars > 64 || field.chars().any(char::is_control) {
            return Err(ChangeError::InvalidFacets(format!(
                "facets[{i}] must be a field name of 1 to 64 characters without control characters"
            )));
        }
        if !seen.insert(field) {
            return Err(ChangeError::InvalidFacets(format!(
                "facets[{i}]: '{}' is asked twice",
                super::shown(field, 64)
            )));
        }
    }
    Ok(())
}

/// Why a bulk operation was refused before anything was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    #[error("give exactly one of 'ids' (not empty) and 'filter' (naming a field): a bulk {0} never runs over the whole index by default")]
    NoSelection(&'static str),
    #[error("the selection holds {got} items, more than vectors.max_bulk_items ({max}); send \"allow_large\": true to go on")]
    TooLarge { max: usize, got: usize },
    #[error("{0}")]
    EmptyChange(&'static str),
    #[error("{changed} items were written; {left} kept changing under other writes: retry them")]
    Conflict { changed: usize, left: usize },
    #[error("{0}")]
    InvalidFacets(String),
    #[error("{0}")]
    InvalidCursor(String),
    #[error("limit must be between 1 and {MAX_SCROLL_LIMIT}, got {0}")]
    InvalidLimit(usize),
}

impl HasCode for ChangeError {
    fn code(&self) -> ErrorCode {
        match self {
            ChangeError::NoSelection(_) => ErrorCode::NoSelection,
            ChangeError::TooLarge { .. } => ErrorCode::BulkTooLarge,
            ChangeError::EmptyChange(_) => ErrorCode::EmptyChange,
            ChangeError::Conflict { .. } => ErrorCode::WriteConflict,
            ChangeError::InvalidFacets(_) => ErrorCode::InvalidFacets,
            ChangeError::InvalidCursor(_) => ErrorCode::InvalidCursor,
            ChangeError::InvalidLimit(_) => ErrorCode::InvalidLimit,
        }
    }
}

impl Selection {
    /// The selection's ids, checked (`Ok(None)`: a filter selects). `what`
    /// names the operation in the error.
    pub fn checked_ids(
        &self,
        what: &'static str,
        max_ids: usize,
    ) -> Result<Option<&[String]>, SelectionError> {
        let filter_given = self.filter.as_ref().is_some_and(|f| !f.is_empty());
        match (&self.ids, filter_given) {
            (Some(ids), false) if !ids.is_empty() => {
                if ids.len() > max_ids {
                    return Err(ChangeError::TooLarge {
                        max: max_ids,
                        got: ids.len(),
                    }
                    .into());
                }
                for (i, id) in ids.iter().enumerate() {
                    validate_id(id, &format!("ids[{i}]"))?;
                }
                check_unique_ids(ids.iter().map(String::as_str))?;
                Ok(Some(ids))
            }
            (None, true) => Ok(None),
            _ => Err(ChangeError::NoSelection(what).into()),
        }
    }
}

/// A selection's problem: its shape, or an id in it.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// `metadata` with `changes` applied: a `null` removes its field, any other
/// value sets it. Whether anything changed comes with it.
pub fn merged(
    metadata: &Map<String, Value>,
    changes: &Map<String, Value>,
) -> (Map<String, Value>, bool) {
    let mut out = metadata.clone();
    let mut changed = false;
    for (field, value) in changes {
        if value.is_null() {
            changed |= out.remove(field).is_some();
        } else if out.get(field) != Some(value) {
            out.insert(field.clone(), value.clone());
            changed = true;
        }
    }
    (out, changed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_nothing_else() {
        for after in ["m1", "a b/ç\u{1F600}", ""] {
            let cursor = Cursor {
                version: 42,
                after: after.to_string(),
            };
            assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }
        for bad in [
            "",
            "42",
            "x.6d31",
            "42.6d3",
            "42.zz",
            "42.ff",
            "-1.6d31",
            "42.6d31.",
            &format!("1.{}", "61".repeat(2000)),
        ] {
            assert!(
                matches!(Cursor::decode(bad), Err(ChangeError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_merge_sets_replaces_and_removes_and_says_whether_anything_changed() {
        let held = map(json!({"role": "Welder", "status": "active", "city": "Gary"}));
        let (out, changed) = merged(
            &held,
            &map(json!({"status": "placed", "city": null, "new": 1})),
        );
        assert!(changed);
        assert_eq!(
            out,
            map(json!({"role": "Welder", "status": "placed", "new": 1}))
        );
        let (same, changed) = merged(&held, &map(json!({"status": "active", "gone": null})));
        assert!(!changed);
        assert_eq!(same, held);
    }

    #[test]
    fn a_selection_is_ids_or_a_filter_never_both_and_never_nothing() {
        let ids = |ids: Value, filter: Value| Selection {
            ids: serde_json::from_value(ids).unwrap(),
            filter: serde_json::from_value(filter).unwrap(),
            allow_large: false,
        };
        let code = |selection: Selection| {
            selection
                .checked_ids("delete", 3)
                .map(|ids| ids.map(<[String]>::len))
                .map_err(|e| match e {
                    SelectionError::Change(change) => change.code(),
                    SelectionError::Invalid(invalid) => invalid.code(),
                })
        };
        assert_eq!(code(ids(json!(["a", "b"]), Value::Null)), Ok(Some(2)));
        assert_eq!(code(ids(Value::Null, json!({"role": "Welder"}))), Ok(None));
        for (given, filter) in [
            (Value::Null, Value::Null),
            (json!([]), Value::Null),
            (Value::Null, json!({})),
            (json!(["a"]), json!({"role": "Welder"})),
        ] {
            assert_eq!(code(ids(given, filter)), Err(ErrorCode::NoSelection));
        }
        assert_eq!(
            code(ids(json!(["a", "a"]), Value::Null)),
            Err(ErrorCode::DuplicateId)
        );
        assert_eq!(
            code(ids(json!(["a\nb"]), Value::Null)),
            Err(ErrorCode::InvalidId)
        );
        assert_eq!(
            code(ids(json!(["a", "b", "c", "d"]), Value::Null)),
            Err(ErrorCode::BulkTooLarge)
        );
    }
}
