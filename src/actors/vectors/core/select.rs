//! Sets of live items by filter, not ranked: what a bulk change acts on,
//! what a count counts and what facets are counted over.

use super::lookups::Picked;
use super::*;
use crate::domain::filter::PreparedFilter;
pub use crate::domain::items::FacetCount;

pub use crate::domain::items::MAX_FACET_VALUES;

/// Distinct values tracked per faceted field: past this many, a value not
/// seen yet is not counted (a field of unique ids cannot grow the counts
/// with the index).
const MAX_TRACKED_VALUES: usize = 10_000;

/// A set of live items by filter: the search query that selects them.
fn selecting(filter: &PreparedFilter) -> Query {
    Query {
        filter: filter.equalities.clone(),
        predicate: filter.predicate.clone(),
        ..Query::nearest(Vec::new(), 1)
    }
}

impl Core {
    /// The live items `filter` selects, as `(id, entry)` in label order,
    /// and the Lance version they are.
    pub fn select(
        &self,
        filter: &PreparedFilter,
    ) -> Result<(u64, Vec<(String, Entry)>), HnswError> {
        let query = selecting(filter);
        self.prepare_lookups(&query.filter)?;
        let inner = self.inner.read();
        let labels = inner.filtered(&query, &HashSet::new());
        let items = labels
            .into_iter()
            .filter_map(|label| {
                let id = inner.by_label.get(&label)?;
                Some((id.clone(), inner.rows.get(id)?.clone()))
            })
            .collect();
        Ok((inner.version, items))
    }

    /// Of `ids`, the live ones, with their entries, and the Lance version.
    pub fn select_ids(&self, ids: &[String]) -> (u64, Vec<(String, Entry)>) {
        let inner = self.inner.read();
        let items = ids
            .iter()
            .filter_map(|id| Some((id.clone(), inner.rows.get(id)?.clone())))
            .collect();
        (inner.version, items)
    }

    /// Up to `limit` live items `filter` selects whose id comes after
    /// `after`, in id order, whether more follow, and the Lance version
    /// they are (one read of the items).
    pub fn page(
        &self,
        filter: Option<&PreparedFilter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(u64, Vec<(String, Entry)>, bool), HnswError> {
        let query = filter.map_or_else(|| Query::nearest(Vec::new(), 1), selecting);
        self.prepare_lookups(&query.filter)?;
        let inner = self.inner.read();
        let mut ids: Vec<&String> = inner
            .filtered(&query, &HashSet::new())
            .into_iter()
            .filter_map(|label| inner.by_label.get(&label))
            .filter(|id| after.is_none_or(|after| id.as_str() > after))
            .collect();
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let items = ids
            .into_iter()
            .filter_map(|id| Some((id.clone(), inner.rows.get(id)?.clone())))
            .collect();
        Ok((inner.version, items, more))
    }

    /// How many live items `filter` selects (all of them without one), and
    /// the Lance version counted.
    pub fn count(
        &self,
        filter: Option<&PreparedFilter>,
        exclude_ids: &[String],
    ) -> Result<(u64, usize), HnswError> {
        let Some(filter) = filter.filter(|f| !f.is_empty()) else {
            let inner = self.inner.read();
            let excluded = exclude_ids
                .iter()
                .filter(|id| inner.rows.contains_key(*id))
                .count();
            return Ok((inner.version, inner.rows.len() - excluded));
        };
        let query = selecting(filter);
        self.prepare_lookups(&query.filter)?;
        let inner = self.inner.read();
        let excluded = labels_of(&inner, exclude_ids);
        Ok((inner.version, inner.filtered(&query, &excluded).len()))
    }

    /// The ids of the live items whose `field` holds one of `values` (a
    /// string each), from the field's lookup: no metadata is parsed but
    /// that of the few items holding a rare field.
    pub fn ids_with(&self, field: &str, values: &[&str]) -> Result<Vec<String>, HnswError> {
        let mut ids = Vec::new();
        for value in values {
            let filter = PreparedFilter {
                equalities: vec![(
                    field.to_string(),
                    crate::domain::vectors::filter_key(&Value::String(value.to_string()))
                        .unwrap_or_default(),
                )],
                predicate: None,
            };
            ids.extend(self.select(&filter)?.1.into_iter().map(|(id, _)| id));
        }
        Ok(ids)
    }

    /// For each of `fields`, the values the items `filter` selects hold and
    /// how many hold each — over the whole selected set, not a top k. A
    /// list counts each of its entries (a certification by its `name`);
    /// objects and nulls are not counted. At most [`MAX_FACET_VALUES`]
    /// values per field, most frequent first, then by value.
    /// The count comes with it, from the same read of the items.
    pub fn facets(
        &self,
        filter: Option<&PreparedFilter>,
        fields: &[String],
        exclude_ids: &[String],
    ) -> Result<(u64, usize, HashMap<String, Vec<FacetCount>>), HnswError> {
        let query = filter.map_or_else(|| Query::nearest(Vec::new(), 1), selecting);
        self.prepare_lookups(&query.filter)?;
        // The faceted fields' lookups too (for the fields many items hold):
        // a scalar value is then counted from its set, no metadata parsed.
        let wanted: Vec<(String, String)> =
            fields.iter().map(|f| (f.clone(), String::new())).collect();
        self.prepare_lookups(&wanted)?;
        let inner = self.inner.read();
        let excluded = labels_of(&inner, exclude_ids);
        let labels = inner.filtered(&query, &excluded);
        let (version, count) = (inner.version, labels.len());
        // Every live item selected: a set's size is its count.
        let everything =
            query.filter.is_empty() && query.predicate.is_none() && excluded.is_empty();
        let members: Option<HashSet<u64>> = (!everything).then(|| labels.iter().copied().collect());
        let mut counts: Vec<HashMap<String, usize>> = vec![HashMap::new(); fields.len()];
        // Per field, the selected items its lookup does not cover (lists,
        // objects, no value): those are parsed.
        let mut to_parse: Vec<Vec<u64>> = vec![Vec::new(); fields.len()];
        for (i, field) in fields.iter().enumerate() {
            let Some(values) = inner.fields.get(field) else {
                to_parse[i] = labels.clone();
                continue;
            };
            let mut covered = 0;
            for (key, set) in values {
                let n = match &members {
                    None => set.len(),
                    Some(members) if set.len() <= members.len() => {
                        set.iter().filter(|l| members.contains(l)).count()
                    }
                    Some(members) => members.iter().filter(|l| set.contains(l)).count(),
                };
                if n > 0 && counts[i].len() < MAX_TRACKED_VALUES {
                    counts[i].insert(shown_key(key), n);
                }
                covered += n;
            }
            if covered < labels.len() {
                let held: HashSet<u64> = values.values().flatten().copied().collect();
                to_parse[i] = labels
                    .iter()
                    .copied()
                    .filter(|l| !held.contains(l))
                    .collect();
            }
        }
        for (i, field) in fields.iter().enumerate() {
            let names = [field.as_str()];
            let counted = &mut counts[i];
            for label in &to_parse[i] {
                let Some(entry) = inner.by_label.get(label).and_then(|id| inner.rows.get(id))
                else {
                    continue;
                };
                let Some(value) = Picked::parse(&entry.metadata, &names).pop().flatten() else {
                    continue;
                };
                let mut seen = HashSet::new();
                for shown in facet_values(&value) {
                    // A list holding a value twice counts its item once.
                    if !seen.insert(shown.clone()) {
                        continue;
                    }
                    let tracked = counted.len();
                    match counted.get_mut(&shown) {
                        Some(n) => *n += 1,
                        None if tracked < MAX_TRACKED_VALUES => {
                            counted.insert(shown, 1);
                        }
                        None => {}
                    }
                }
            }
        }
        let facets = fields
            .iter()
            .zip(counts)
            .map(|(field, counted)| {
                let mut values: Vec<FacetCount> = counted
                    .into_iter()
                    .map(|(value, count)| FacetCount { value, count })
                    .collect();
                values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                values.truncate(MAX_FACET_VALUES);
                (field.clone(), values)
            })
            .collect();
        Ok((version, count, facets))
    }
}

/// A lookup key as a facet shows it: `s:Welder` → `Welder`, `n:3` → `3`.
fn shown_key(key: &str) -> String {
    key.split_once(':')
        .map_or(key, |(_, value)| value)
        .to_string()
}

/// The labels of those of `ids` that are live.
fn labels_of(inner: &CoreInner, ids: &[String]) -> HashSet<u64> {
    ids.iter()
        .filter_map(|id| inner.rows.get(id).map(|e| e.seq))
        .collect()
}

/// The values one field's value counts as: a scalar itself, a list each
/// scalar entry (and each entry's `name`).
fn facet_values(value: &Value) -> Vec<String> {
    fn scalar(value: &Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
            Value::Object(object) => object
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        }
    }
    match value {
        Value::Array(entries) => entries.iter().filter_map(scalar).collect(),
        Value::Object(_) => Vec::new(),
        other => scalar(other).into_iter().collect(),
    }
}
