//! The filter lookups: per field, the labels holding each value, built
//! off the write lock for the fields filtered on; and the predicate scan
//! for the rest.

use super::*;

/// Bitmap over faiss labels (= seqs): bit set means live.
#[derive(Debug, Default, Clone)]
pub(super) struct Bitmap(pub(super) Vec<u8>);

impl Bitmap {
    pub(super) fn set(&mut self, label: u64) {
        let byte = (label / 8) as usize;
        if byte >= self.0.len() {
            self.0.resize((byte + 1).next_power_of_two(), 0);
        }
        self.0[byte] |= 1 << (label % 8);
    }

    pub(super) fn clear(&mut self, label: u64) {
        if let Some(byte) = self.0.get_mut((label / 8) as usize) {
            *byte &= !(1 << (label % 8));
        }
    }

    pub(super) fn contains(&self, label: u64) -> bool {
        self.0
            .get((label / 8) as usize)
            .is_some_and(|byte| byte & (1 << (label % 8)) != 0)
    }

    pub(super) fn from_labels(labels: impl IntoIterator<Item = u64>) -> Self {
        let mut bitmap = Bitmap::default();
        for label in labels {
            bitmap.set(label);
        }
        bitmap
    }
}

/// Items holding a field at most this many times keep their labels in
/// the presence map (and need no lookup); more, and only the count is kept.
pub(super) const FEW_ITEMS: usize = 1024;

/// Which live items hold each top-level metadata field.
#[derive(Debug, Default)]
pub(super) struct Presence {
    pub(super) fields: HashMap<String, Present>,
}

#[derive(Debug)]
pub(super) enum Present {
    /// The labels of the few items holding the field.
    Few(HashSet<u64>),
    /// About how many hold it (never fewer: removals past `FEW_ITEMS` are
    /// not counted down, so a common field never looks absent).
    Many(usize),
}

impl Presence {
    pub(super) fn add(&mut self, label: u64, field: &str) {
        match self.fields.get_mut(field) {
            Some(Present::Few(labels)) => {
                labels.insert(label);
                if labels.len() > FEW_ITEMS {
                    let count = labels.len();
                    self.fields.insert(field.to_string(), Present::Many(count));
                }
            }
            Some(Present::Many(count)) => *count += 1,
            None => {
                self.fields
                    .insert(field.to_string(), Present::Few(HashSet::from([label])));
            }
        }
    }

    pub(super) fn remove(&mut self, label: u64, field: &str) {
        if let Some(Present::Few(labels)) = self.fields.get_mut(field) {
            labels.remove(&label);
            if labels.is_empty() {
                self.fields.remove(field);
            }
        }
    }

    /// Whether a lookup is worth keeping for `field`.
    pub(super) fn is_common(&self, field: &str) -> bool {
        matches!(self.fields.get(field), Some(Present::Many(_)))
    }

    pub(super) fn merge(&mut self, other: Presence) {
        for (field, present) in other.fields {
            match present {
                Present::Few(labels) => {
                    for label in labels {
                        self.add(label, &field);
                    }
                }
                Present::Many(count) => match self.fields.get_mut(&field) {
                    Some(Present::Many(known)) => *known += count,
                    Some(Present::Few(known)) => {
                        let total = known.len() + count;
                        self.fields.insert(field, Present::Many(total));
                    }
                    None => {
                        self.fields.insert(field, Present::Many(count));
                    }
                },
            }
        }
    }

    pub(super) fn retain_live(&mut self, live: impl Fn(u64) -> bool) {
        self.fields.retain(|_, present| match present {
            Present::Few(labels) => {
                labels.retain(|l| live(*l));
                !labels.is_empty()
            }
            Present::Many(_) => true,
        });
    }
}

impl Core {
    /// Builds the lookups of every field filtered on before (by this or an
    /// earlier incarnation), the presence map and the vector arena (load
    /// path).
    /// Metadata objects lookup builds have parsed (see `parsed_rows`).
    pub fn parsed_rows(&self) -> u64 {
        self.parsed_rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn prepare_filters(&self) -> Result<(), HnswError> {
        let fields = self.hot_fields.list();
        if fields.is_empty() {
            return Ok(());
        }
        self.build(&fields.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    }

    /// Makes the filter's fields ready to answer: the presence map and the
    /// arena exist, and every field that many items hold has its lookup
    /// (built now if missing, the least recently used beyond
    /// `vectors.max_hot_fields` dropped). A field few items hold needs
    /// none (its labels are in the presence map), nor one no item holds.
    pub(super) fn prepare_lookups(&self, filter: &[(String, String)]) -> Result<(), HnswError> {
        if filter.is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = filter.iter().map(|(f, _)| f.as_str()).collect();
        let ready = |inner: &CoreInner| {
            inner.arena.is_some()
                && inner.presence.as_ref().is_some_and(|presence| {
                    fields.iter().all(|field| {
                        !presence.is_common(field) || inner.fields.contains_key(*field)
                    })
                })
        };
        if ready(&self.inner.read()) {
            return Ok(());
        }
        // Which fields are common is known once presence is; build that
        // first if need be (it looks at every field the filter names).
        if self.inner.read().presence.is_none() {
            self.build(&fields, &[])?;
        }
        let common: Vec<&str> = {
            let inner = self.inner.read();
            let presence = inner.presence.as_ref();
            fields
                .iter()
                .copied()
                .filter(|f| presence.is_some_and(|p| p.is_common(f)))
                .collect()
        };
        let evicted = if common.is_empty() {
            Vec::new()
        } else {
            self.hot_fields.touch(&common)
        };
        let missing = {
            let inner = self.inner.read();
            common.iter().any(|f| !inner.fields.contains_key(*f)) || inner.arena.is_none()
        };
        if missing || !evicted.is_empty() {
            self.build(&common, &evicted)?;
        }
        Ok(())
    }

    /// Builds what is missing of: the lookups of `fields`, the presence
    /// map, the vector arena; drops the lookups of `evicted`. Never under
    /// the write lock: the rows and the arena are read under the read lock
    /// (writers wait, searches go on), the metadata is parsed with no lock
    /// at all, and the write lock is taken only to install the result and
    /// catch up with the writes published meanwhile.
    ///
    /// One build at a time: the searches that find the same things
    /// missing (every client's first filtered search after a start) wait
    /// for the one build and then find nothing left to do, instead of
    /// each parsing every item's metadata and copying every vector. 50
    /// clients starting the mix at 100k workers built the arena and the
    /// lookups ~180 times over: RSS rose to 14 GB for 15 s.
    pub(super) fn build(&self, fields: &[&str], evicted: &[String]) -> Result<(), HnswError> {
        let _one_at_a_time = self.building.lock();
        let started = std::time::Instant::now();
        let (snapshot, watermark, wanted, want_presence, arena, built) = {
            let inner = self.inner.read();
            // A field the presence map shows few items hold needs no lookup
            // (the map answers it, and none would be kept). Without this
            // check, every search queued behind the first build after a
            // start parsed all the metadata again for such a field (the
            // status a matrix search always excludes by): 50 clients on
            // 100k workers stalled ~5 s.
            let wanted: Vec<&str> = fields
                .iter()
                .copied()
                .filter(|f| {
                    !inner.fields.contains_key(*f)
                        && inner.presence.as_ref().is_none_or(|p| p.is_common(f))
                })
                .collect();
            let want_presence = inner.presence.is_none();
            let snapshot: Vec<(u64, Arc<str>)> = if wanted.is_empty() && !want_presence {
                Vec::new()
            } else {
                inner
                    .rows
                    .values()
                    .map(|e| (e.seq, e.metadata.clone()))
                    .collect()
            };
            let (arena, built) = match inner.arena {
                Some(_) => (None, None),
                // The arena is copied from the graph under the read lock
                // while another thread parses the lookups: a restart of a
                // 100k index waits for both (~150 ms each here).
                None => std::thread::scope(|scope| {
                    let parsing = scope.spawn(|| {
                        let _timer = Timer("filter lookups", started);
                        index_fields_of(&snapshot, &wanted, want_presence)
                    });
                    let arena = {
                        let _timer = Timer("vector arena", started);
                        Arena::from_graph(
                            &inner.hnsw,
                            inner.by_label.keys().copied(),
                            inner.by_label.len(),
                            self.definition.dimension,
                        )
                    };
                    let built = parsing
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    (Some(arena), Some(built))
                }),
            };
            let arena = arena.transpose()?;
            (snapshot, inner.max_seq, wanted, want_presence, arena, built)
        };
        // A build that waited for another may find nothing left to do.
        if wanted.is_empty() && !want_presence && arena.is_none() && evicted.is_empty() {
            return Ok(());
        }
        // With the arena there, the lookups are parsed without the lock.
        let built = built.unwrap_or_else(|| {
            let _timer = Timer("filter lookups", started);
            index_fields_of(&snapshot, &wanted, want_presence)
        });
        self.parsed_rows
            .fetch_add(snapshot.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(snapshot);

        let mut inner = self.inner.write();
        let inner = &mut *inner;
        for field in evicted {
            inner.fields.remove(field);
        }
        // Writes published while the lookups were built: add the new rows,
        // and drop labels that are no longer live.
        let fresh: Vec<(u64, Arc<str>)> = inner
            .rows
            .values()
            .filter(|e| e.seq > watermark)
            .map(|e| (e.seq, e.metadata.clone()))
            .collect();
        let delta = index_fields_of(&fresh, &wanted, want_presence);
        let (mut lookups, mut presence) = built;
        let (delta_lookups, delta_presence) = delta;
        for ((field, values), (_, more)) in lookups.iter_mut().zip(delta_lookups) {
            for (key, labels) in more {
                values.entry(key).or_default().extend(labels);
            }
            for labels in values.values_mut() {
                labels.retain(|label| inner.live.contains(*label));
            }
            values.retain(|_, labels| !labels.is_empty());
            let _ = field;
        }
        if let (Some(presence), Some(more)) = (presence.as_mut(), delta_presence) {
            presence.merge(more);
            presence.retain_live(|label| inner.live.contains(label));
        }
        let presence_now = presence.or(inner.presence.take());
        for (field, values) in lookups {
            let common = presence_now.as_ref().is_some_and(|p| p.is_common(&field));
            if common && !inner.fields.contains_key(&field) {
                inner.fields.insert(field, values);
            }
        }
        inner.presence = presence_now;
        if let Some(mut arena) = arena {
            // Labels published since the arena was read, and ones retired.
            let labels: Vec<u64> = inner.by_label.keys().copied().collect();
            for label in labels {
                if !arena.contains(label) {
                    if let Ok(vector) = inner.hnsw.reconstruct(label) {
                        arena.insert(label, &vector);
                    }
                }
            }
            arena.retain(|label| inner.live.contains(label));
            if inner.arena.is_none() {
                inner.arena = Some(arena);
            }
        }
        Ok(())
    }
}

impl CoreInner {
    /// The live labels passing the query's filter, minus `excluded`, in order.
    pub(super) fn filtered(&self, query: &Query, excluded: &HashSet<u64>) -> Vec<u64> {
        let mut candidates = if query.filter.is_empty() {
            self.live_labels(excluded)
        } else {
            self.candidates(&query.filter, excluded)
        };
        if let Some(predicate) = &query.predicate {
            candidates.retain(|label| self.satisfies(*label, predicate));
        }
        candidates
    }

    /// Whether the item under `label` passes the query's whole filter.
    pub(super) fn passes(&self, label: u64, query: &Query) -> bool {
        if query.filter.is_empty() && query.predicate.is_none() {
            return true;
        }
        let Some(entry) = self.by_label.get(&label).and_then(|id| self.rows.get(id)) else {
            return false;
        };
        let Ok(metadata) = serde_json::from_str::<Value>(&entry.metadata) else {
            return false;
        };
        query
            .filter
            .iter()
            .all(|(field, key)| metadata.get(field).and_then(filter_key).as_ref() == Some(key))
            && query
                .predicate
                .as_ref()
                .is_none_or(|p| p.matches(&metadata))
    }

    pub(super) fn excluded(&self, query: &Query) -> HashSet<u64> {
        query
            .exclude_ids
            .iter()
            .filter_map(|id| self.rows.get(id).map(|e| e.seq))
            .collect()
    }

    /// Every live label except the excluded ones, as the graph search's
    /// selector: none at all when every node of the graph is live and
    /// nothing is excluded (faiss then skips a membership test per visited
    /// node, ~6% of a search's CPU), else the live bitmap, borrowed unless
    /// something is excluded.
    pub(super) fn allowed_unfiltered(&self, query: &Query) -> Option<std::borrow::Cow<'_, Bitmap>> {
        let excluded: Vec<u64> = query
            .exclude_ids
            .iter()
            .filter_map(|id| self.rows.get(id).map(|entry| entry.seq))
            .collect();
        if excluded.is_empty() {
            // Rows are the published, live items, one graph node each; any
            // other node is a tombstone or not published yet.
            if self.hnsw.len() == self.rows.len() as u64 {
                return None;
            }
            return Some(std::borrow::Cow::Borrowed(&self.live));
        }
        let mut allowed = self.live.clone();
        for seq in excluded {
            allowed.clear(seq);
        }
        Some(std::borrow::Cow::Owned(allowed))
    }

    pub(super) fn retire(&mut self, seq: u64, metadata: &str) {
        self.live.clear(seq);
        self.keywords.remove(seq);
        if let Some(arena) = self.arena.as_mut() {
            arena.remove(seq);
        }
        self.by_label.remove(&seq);
        self.tombstones += 1;
        if self.fields.is_empty() && self.presence.is_none() {
            return;
        }
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(metadata) {
            for (field, values) in self.fields.iter_mut() {
                if let Some(key) = map.get(field).and_then(filter_key) {
                    if let Some(labels) = values.get_mut(&key) {
                        labels.remove(&seq);
                    }
                }
            }
            if let Some(presence) = self.presence.as_mut() {
                for field in map.keys() {
                    presence.remove(seq, field);
                }
            }
        }
    }

    pub(super) fn index_fields(&mut self, seq: u64, metadata: &str) {
        if self.fields.is_empty() && self.presence.is_none() {
            return;
        }
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(metadata) {
            for (field, values) in self.fields.iter_mut() {
                if let Some(key) = map.get(field).and_then(filter_key) {
                    values.entry(key).or_default().insert(seq);
                }
            }
            if let Some(presence) = self.presence.as_mut() {
                for field in map.keys() {
                    presence.add(seq, field);
                }
            }
        }
    }

    /// Every live label except the excluded ones, in order.
    pub(super) fn live_labels(&self, excluded: &HashSet<u64>) -> Vec<u64> {
        let mut labels: Vec<u64> = self
            .by_label
            .keys()
            .copied()
            .filter(|label| !excluded.contains(label))
            .collect();
        labels.sort_unstable();
        labels
    }

    /// Whether the item under `label` satisfies `predicate`.
    pub(super) fn satisfies(&self, label: u64, predicate: &crate::domain::filter::Filter) -> bool {
        let Some(entry) = self.by_label.get(&label).and_then(|id| self.rows.get(id)) else {
            return false;
        };
        serde_json::from_str::<Value>(&entry.metadata).is_ok_and(|m| predicate.matches(&m))
    }

    /// Live labels matching every `(field, key)`, minus the excluded ones,
    /// in label order. Fields with a lookup are answered from it; any other
    /// field from the presence map (no item holds it: nothing matches; few
    /// do: those are the only candidates), and its value checked on each
    /// remaining candidate's metadata — so a lookup dropped by a concurrent
    /// search, or a field too rare for one, costs a scan of candidates,
    /// never an error.
    pub(super) fn candidates(
        &self,
        filter: &[(String, String)],
        excluded: &HashSet<u64>,
    ) -> Vec<u64> {
        let mut sets: Vec<&HashSet<u64>> = Vec::with_capacity(filter.len());
        let mut unindexed: Vec<(&str, &str)> = Vec::new();
        for (field, key) in filter {
            match self.fields.get(field) {
                Some(values) => match values.get(key) {
                    Some(set) => sets.push(set),
                    None => return Vec::new(),
                },
                None => match self.presence.as_ref().and_then(|p| p.fields.get(field)) {
                    Some(Present::Few(labels)) => {
                        sets.push(labels);
                        unindexed.push((field, key));
                    }
                    Some(Present::Many(_)) => unindexed.push((field, key)),
                    None if self.presence.is_some() => return Vec::new(),
                    None => unindexed.push((field, key)),
                },
            }
        }
        sets.sort_by_key(|s| s.len());
        let mut labels: Vec<u64> = match sets.split_first() {
            Some((smallest, rest)) => smallest
                .iter()
                .copied()
                .filter(|label| {
                    self.live.contains(*label)
                        && !excluded.contains(label)
                        && rest.iter().all(|s| s.contains(label))
                })
                .collect(),
            None => self.live_labels(excluded),
        };
        if !unindexed.is_empty() {
            let fields: Vec<&str> = unindexed.iter().map(|(f, _)| *f).collect();
            labels.retain(|label| {
                let Some(entry) = self.by_label.get(label).and_then(|id| self.rows.get(id)) else {
                    return false;
                };
                let values = Picked::parse(&entry.metadata, &fields);
                values.iter().zip(&unindexed).all(|(value, (_, key))| {
                    value.as_ref().and_then(filter_key).as_deref() == Some(*key)
                })
            });
        }
        // Slots follow labels: in label order the arena is read forwards.
        labels.sort_unstable();
        labels
    }
}

/// Lookups of `fields` (value key -> labels) over `rows`, and with
/// `presence` which fields each row holds: one parse of each row's
/// metadata for all of it.
#[allow(clippy::type_complexity)]
pub(super) fn index_fields_of(
    rows: &[(u64, Arc<str>)],
    fields: &[&str],
    presence: bool,
) -> (
    Vec<(String, HashMap<String, HashSet<u64>>)>,
    Option<Presence>,
) {
    let mut built: Vec<HashMap<String, HashSet<u64>>> = vec![HashMap::new(); fields.len()];
    let mut present = presence.then(Presence::default);
    if !fields.is_empty() || presence {
        for (seq, metadata) in rows {
            let (values, keys) = Picked::parse_with_keys(metadata, fields, presence);
            for (value, values) in values.iter().zip(built.iter_mut()) {
                if let Some(key) = value.as_ref().and_then(filter_key) {
                    values.entry(key).or_default().insert(*seq);
                }
            }
            if let Some(present) = present.as_mut() {
                for key in keys {
                    present.add(*seq, &key);
                }
            }
        }
    }
    (
        fields.iter().map(|f| f.to_string()).zip(built).collect(),
        present,
    )
}

/// The values of a few top-level fields of a metadata object, parsed
/// without building the rest (skills lists, texts): a restart indexes
/// every row's metadata, and a full parse of 100k rows took ~0.3 s.
pub(super) struct Picked<'f> {
    pub(super) fields: &'f [&'f str],
    pub(super) values: Vec<Option<Value>>,
    /// Every top-level key, when asked for.
    pub(super) keys: Option<Vec<String>>,
}

impl<'f> Picked<'f> {
    pub(super) fn parse(json: &str, fields: &'f [&'f str]) -> Vec<Option<Value>> {
        Self::parse_with_keys(json, fields, false).0
    }

    /// The fields' values, and with `keys` every top-level key.
    pub(super) fn parse_with_keys(
        json: &str,
        fields: &'f [&'f str],
        keys: bool,
    ) -> (Vec<Option<Value>>, Vec<String>) {
        let mut picked = Picked {
            fields,
            values: vec![None; fields.len()],
            keys: keys.then(Vec::new),
        };
        let mut deserializer = serde_json::Deserializer::from_str(json);
        if serde::de::DeserializeSeed::deserialize(&mut picked, &mut deserializer).is_err() {
            return (vec![None; fields.len()], Vec::new());
        }
        (picked.values, picked.keys.unwrap_or_default())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut Picked<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut Picked<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a metadata object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if let Some(keys) = self.keys.as_mut() {
                keys.push(key.to_string());
            }
            match self.fields.iter().position(|f| *f == key) {
                Some(i) => self.values[i] = Some(map.next_value::<Value>()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Logs (at debug) how long a part of a load took, when dropped.
pub(super) struct Timer(&'static str, std::time::Instant);

impl Drop for Timer {
    fn drop(&mut self) {
        tracing::debug!(
            part = self.0,
            elapsed_ms = self.1.elapsed().as_millis() as u64,
            "built"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_fields_match_a_full_parse() {
        let fields = ["role", "city", "n", "missing"];
        let json = r#"{"skills":["a","b",{"x":[1,2]}],"role":"Fork\"lift","n":3,
                       "note":"{\"role\":\"decoy\"}","city":"Dallas","flag":true}"#;
        let picked = Picked::parse(json, &fields);
        let full: Value = serde_json::from_str(json).unwrap();
        for (field, value) in fields.iter().zip(&picked) {
            assert_eq!(value.as_ref(), full.get(*field), "{field}");
        }
        // Not an object, or not JSON: nothing, rather than an error.
        assert_eq!(Picked::parse("[1,2]", &fields), vec![None; 4]);
        assert_eq!(Picked::parse("{\"role\":", &fields), vec![None; 4]);
    }
}
