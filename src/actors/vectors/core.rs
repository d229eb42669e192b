//! The in-memory side of one index: the faiss graph plus the live rows,
//! shared by the actor (which writes) and its search tasks (which read).
//!
//! A `parking_lot` read-write lock rather than a tokio one: searches run on
//! blocking threads and hold it only for the graph walk; writers hold it for
//! one chunk of graph inserts or one map update, never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};

use super::arena::{Arena, RESCORE_EXTRA, RESCORE_FACTOR};
use super::hnsw::{Hnsw, HnswError};
use super::keyword::{Analysed, KeywordIndex};
use super::HotFields;
use crate::domain::keyword::{fused_distance, keyword_distance, HitExplain, SearchMode};
use crate::domain::vectors::{filter_key, Hit, IndexDefinition, Metric, MAX_K};

/// Graph inserts per write-lock acquisition: small enough that searches
/// interleave with a bulk load, large enough for faiss to use its threads.
const ADD_CHUNK: usize = 256;

/// Filtered searches whose candidate set is at most this large are answered
/// exactly; larger ones walk the graph with the candidates as the allowed
/// set. faiss's filtered HNSW walk expands only about efSearch nodes, so at
/// a few percent selectivity it can meet no allowed node at all (measured:
/// role filters over 100k workers, ~2,900 candidates, returned 0–3 of 5
/// hits for some queries). An exact scan of a few thousand candidates costs
/// a few milliseconds and is always complete.
const EXACT_SEARCH_LIMIT: usize = 8192;

/// The widest walk a selective filter may ask for.
const MAX_WIDENED_K: usize = 1024;

/// A keyword or hybrid search draws this many candidates (at least; 4k
/// for larger k) from each side before fusing them.
const FUSION_POOL: usize = 50;

/// A live item.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The seq of the write that made it; also its faiss label.
    pub seq: u64,
    /// Serialised metadata object.
    pub metadata: Arc<str>,
}

/// Bitmap over faiss labels (= seqs): bit set means live.
#[derive(Debug, Default, Clone)]
struct Bitmap(Vec<u8>);

impl Bitmap {
    fn set(&mut self, label: u64) {
        let byte = (label / 8) as usize;
        if byte >= self.0.len() {
            self.0.resize((byte + 1).next_power_of_two(), 0);
        }
        self.0[byte] |= 1 << (label % 8);
    }

    fn clear(&mut self, label: u64) {
        if let Some(byte) = self.0.get_mut((label / 8) as usize) {
            *byte &= !(1 << (label % 8));
        }
    }

    fn contains(&self, label: u64) -> bool {
        self.0
            .get((label / 8) as usize)
            .is_some_and(|byte| byte & (1 << (label % 8)) != 0)
    }

    fn from_labels(labels: impl IntoIterator<Item = u64>) -> Self {
        let mut bitmap = Bitmap::default();
        for label in labels {
            bitmap.set(label);
        }
        bitmap
    }
}

/// Items holding a field at most this many times keep their labels in
/// the presence map (and need no lookup); more, and only the count is kept.
const FEW_ITEMS: usize = 1024;

/// Which live items hold each top-level metadata field.
#[derive(Debug, Default)]
struct Presence {
    fields: HashMap<String, Present>,
}

#[derive(Debug)]
enum Present {
    /// The labels of the few items holding the field.
    Few(HashSet<u64>),
    /// About how many hold it (never fewer: removals past `FEW_ITEMS` are
    /// not counted down, so a common field never looks absent).
    Many(usize),
}

impl Presence {
    fn add(&mut self, label: u64, field: &str) {
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

    fn remove(&mut self, label: u64, field: &str) {
        if let Some(Present::Few(labels)) = self.fields.get_mut(field) {
            labels.remove(&label);
            if labels.is_empty() {
                self.fields.remove(field);
            }
        }
    }

    /// Whether a lookup is worth keeping for `field`.
    fn is_common(&self, field: &str) -> bool {
        matches!(self.fields.get(field), Some(Present::Many(_)))
    }

    fn merge(&mut self, other: Presence) {
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

    fn retain_live(&mut self, live: impl Fn(u64) -> bool) {
        self.fields.retain(|_, present| match present {
            Present::Few(labels) => {
                labels.retain(|l| live(*l));
                !labels.is_empty()
            }
            Present::Many(_) => true,
        });
    }
}

pub struct CoreInner {
    hnsw: Hnsw,
    rows: HashMap<String, Entry>,
    /// label -> id, for live labels only.
    by_label: HashMap<u64, String>,
    live: Bitmap,
    /// Lazily built per common filtered field: value key -> live labels.
    fields: HashMap<String, HashMap<String, HashSet<u64>>>,
    /// Which items hold each top-level field (built with the first filter,
    /// then kept up to date): an equality on a field no item holds is
    /// answered at once, one on a rare field from its few labels, and only
    /// common fields get lookups.
    presence: Option<Presence>,
    /// A Lance version whose rows are exactly these live items (set with
    /// each publish, and after upkeep commits that change no row).
    version: u64,
    /// Compact vector copies for exact filtered scans; built with the first
    /// field index, then kept up to date by every insert and retirement.
    arena: Option<Arena>,
    /// BM25 over the live items' texts, by label.
    keywords: KeywordIndex,
    /// Labels in the graph that are no longer live (HNSW cannot remove).
    tombstones: u64,
    max_seq: u64,
}

pub struct Core {
    pub definition: IndexDefinition,
    inner: RwLock<CoreInner>,
    /// Recent results by query, valid while the index has not changed
    /// (`max_seq` grows with every write): repeated searches — a page
    /// refreshed, the same order searched by several coordinators — cost
    /// a lookup. `None` when disabled.
    results: Option<Mutex<ResultCache>>,
    /// Fields filtered on, remembered across incarnations.
    hot_fields: HotFields,
}

struct CachedResult {
    query: Query,
    max_seq: u64,
    scored: Vec<(u64, f32)>,
}

impl CachedResult {
    /// What the entry holds, roughly: the query (vector, filter, excluded
    /// ids) and the scored labels, plus the map's own overhead.
    fn bytes(&self) -> usize {
        let query = &self.query;
        64 + query.vector.len() * 4
            + query
                .filter
                .iter()
                .map(|(f, v)| f.len() + v.len() + 48)
                .sum::<usize>()
            + query
                .exclude_ids
                .iter()
                .map(|id| id.len() + 24)
                .sum::<usize>()
            + self.scored.len() * 16
    }
}

/// The result LRU, bounded by entries and by bytes: a client sending long
/// `exclude_ids` lists must not make it hold gigabytes.
struct ResultCache {
    entries: LruCache<u64, CachedResult>,
    bytes: usize,
    max_bytes: usize,
}

impl ResultCache {
    fn get(&mut self, key: &u64) -> Option<&CachedResult> {
        self.entries.get(key)
    }

    fn put(&mut self, key: u64, entry: CachedResult) {
        let size = entry.bytes();
        // One entry that would take more than an eighth of the budget is
        // not worth evicting others for.
        if size > self.max_bytes / 8 {
            return;
        }
        if let Some(old) = self.entries.pop(&key) {
            self.bytes -= old.bytes();
        }
        while self.bytes + size > self.max_bytes || self.entries.len() == self.entries.cap().get() {
            match self.entries.pop_lru() {
                Some((_, old)) => self.bytes -= old.bytes(),
                None => break,
            }
        }
        self.bytes += size;
        self.entries.put(key, entry);
    }
}

impl Query {
    fn cache_key(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for x in &self.vector {
            x.to_bits().hash(&mut hasher);
        }
        self.k.hash(&mut hasher);
        self.filter.hash(&mut hasher);
        self.predicate
            .as_ref()
            .map(|p| p.canonical())
            .hash(&mut hasher);
        self.exclude_ids.hash(&mut hasher);
        self.ef_search.hash(&mut hasher);
        hasher.finish()
    }

    fn same_as(&self, other: &Query) -> bool {
        self.k == other.k
            && self.ef_search == other.ef_search
            && self.filter == other.filter
            && self.predicate == other.predicate
            && self.exclude_ids == other.exclude_ids
            && self.vector.len() == other.vector.len()
            && self
                .vector
                .iter()
                .zip(&other.vector)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// One search, validated and with its vector prepared.
#[derive(Debug, Clone)]
pub struct Query {
    pub vector: Vec<f32>,
    pub k: usize,
    /// Equalities every match satisfies (answered from the field lookups).
    pub filter: Vec<(String, String)>,
    /// The rest of the filter, checked on each remaining item.
    pub predicate: Option<Arc<crate::domain::filter::Filter>>,
    pub exclude_ids: Vec<String>,
    pub ef_search: Option<u32>,
    pub mode: SearchMode,
    /// The query's distinct terms (keyword and hybrid modes).
    pub terms: Vec<String>,
    /// The keyword side's weight in hybrid mode.
    pub keyword_weight: f32,
    pub explain: bool,
    /// Ids scored and returned even below `k`, if they pass the filter.
    pub include_ids: Vec<String>,
}

impl Query {
    /// A semantic search of `k` for `vector`, nothing else asked.
    pub fn nearest(vector: Vec<f32>, k: usize) -> Self {
        Self {
            vector,
            k,
            filter: Vec::new(),
            predicate: None,
            exclude_ids: Vec::new(),
            ef_search: None,
            mode: SearchMode::Semantic,
            terms: Vec::new(),
            keyword_weight: 0.0,
            explain: false,
            include_ids: Vec::new(),
        }
    }

    /// A semantic search with nothing to explain or include: the cached path.
    fn is_plain(&self) -> bool {
        self.mode == SearchMode::Semantic && !self.explain && self.include_ids.is_empty()
    }
}

/// A ranked label, before it becomes a [`Hit`].
struct Ranked {
    label: u64,
    distance: f32,
    explain: Option<HitExplain>,
    beyond_k: bool,
}

/// An applied write, in seq order.
pub enum Applied<'a> {
    Upsert {
        id: &'a str,
        seq: u64,
        metadata: Arc<str>,
        /// Its text, for the keyword index.
        text: Option<Arc<str>>,
    },
    Delete {
        id: &'a str,
    },
}

impl Core {
    /// `cache_entries`, `cache_bytes`: how many recent results to keep, in
    /// how many bytes at most (either 0: none).
    pub fn new(
        definition: IndexDefinition,
        hnsw: Hnsw,
        cache_entries: usize,
        cache_bytes: usize,
        hot_fields: HotFields,
    ) -> Self {
        Self {
            hot_fields,
            results: NonZeroUsize::new(cache_entries)
                .filter(|_| cache_bytes > 0)
                .map(|n| {
                    Mutex::new(ResultCache {
                        entries: LruCache::new(n),
                        bytes: 0,
                        max_bytes: cache_bytes,
                    })
                }),
            definition,
            inner: RwLock::new(CoreInner {
                hnsw,
                rows: HashMap::new(),
                by_label: HashMap::new(),
                live: Bitmap::default(),
                fields: HashMap::new(),
                presence: None,
                version: 0,
                arena: None,
                keywords: KeywordIndex::default(),
                tombstones: 0,
                max_seq: 0,
            }),
        }
    }

    /// Installs the live rows found in Lance at `version` and their texts
    /// (load path). Every label in the graph that is not among them counts
    /// as a tombstone.
    pub fn install(
        &self,
        rows: HashMap<String, Entry>,
        texts: Vec<(u64, Arc<str>)>,
        max_seq: u64,
        version: u64,
    ) {
        let mut keywords = KeywordIndex::default();
        for (label, text) in &texts {
            keywords.insert(*label, text);
        }
        let mut inner = self.inner.write();
        inner.keywords = keywords;
        inner.by_label = rows.iter().map(|(id, e)| (e.seq, id.clone())).collect();
        inner.live = Bitmap::from_labels(rows.values().map(|e| e.seq));
        inner.tombstones = inner.hnsw.len().saturating_sub(rows.len() as u64);
        inner.rows = rows;
        inner.fields.clear();
        inner.presence = None;
        inner.arena = None;
        inner.max_seq = max_seq;
        inner.version = version;
    }

    /// The Lance version the live items are (a commit that changed no row,
    /// a compaction, moved it on).
    pub fn set_version(&self, version: u64) {
        self.inner.write().version = version;
    }

    /// Adds vectors to the graph without making them visible: a label is
    /// only found once [`Core::publish`] sets its live bit.
    pub fn add_vectors(&self, vectors: &[f32], labels: &[u64]) -> Result<(), HnswError> {
        let dimension = self.definition.dimension;
        for (chunk, chunk_labels) in vectors
            .chunks(ADD_CHUNK * dimension)
            .zip(labels.chunks(ADD_CHUNK))
        {
            let mut inner = self.inner.write();
            inner.hnsw.add(chunk, chunk_labels)?;
            if let Some(arena) = inner.arena.as_mut() {
                for (vector, &label) in chunk.chunks(dimension).zip(chunk_labels) {
                    arena.insert(label, vector);
                }
            }
        }
        Ok(())
    }

    /// Makes committed writes visible, in seq order, as Lance `version`.
    /// Returns the seqs that became superseded (old versions of updated or
    /// deleted items).
    pub fn publish(&self, writes: &[Applied<'_>], max_seq: u64, version: u64) -> Vec<u64> {
        // Texts are analysed before the lock: searches wait only for the
        // postings to be spliced in.
        let mut analysed: Vec<Option<Analysed>> = writes
            .iter()
            .map(|write| match write {
                Applied::Upsert {
                    text: Some(text), ..
                } => Some(Analysed::of(text)),
                _ => None,
            })
            .collect();
        let mut inner = self.inner.write();
        let mut superseded = Vec::new();
        for (write, analysed) in writes.iter().zip(analysed.iter_mut()) {
            let id = match write {
                Applied::Upsert { id, .. } | Applied::Delete { id } => *id,
            };
            if let Some(old) = inner.rows.remove(id) {
                inner.retire(old.seq, &old.metadata);
                superseded.push(old.seq);
            }
            if let Applied::Upsert {
                id, seq, metadata, ..
            } = write
            {
                inner.live.set(*seq);
                if let Some(analysed) = analysed.take() {
                    inner.keywords.insert_analysed(*seq, analysed);
                }
                inner.by_label.insert(*seq, id.to_string());
                // An arena built between this write's graph insert and now
                // (by a search) missed it.
                let missing = inner.arena.as_ref().is_some_and(|a| !a.contains(*seq));
                if missing {
                    if let Ok(vector) = inner.hnsw.reconstruct(*seq) {
                        if let Some(arena) = inner.arena.as_mut() {
                            arena.insert(*seq, &vector);
                        }
                    }
                }
                let entry = Entry {
                    seq: *seq,
                    metadata: metadata.clone(),
                };
                inner.index_fields(*seq, &entry.metadata);
                inner.rows.insert(id.to_string(), entry);
            }
        }
        inner.max_seq = inner.max_seq.max(max_seq);
        inner.version = version;
        superseded
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.inner.read().rows.get(id).cloned()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.inner.read().rows.contains_key(id)
    }

    pub fn vector(&self, seq: u64) -> Result<Vec<f32>, HnswError> {
        self.inner.read().hnsw.reconstruct(seq)
    }

    pub fn len(&self) -> usize {
        self.inner.read().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Lance version the live items are.
    pub fn version(&self) -> u64 {
        self.inner.read().version
    }

    pub fn max_seq(&self) -> u64 {
        self.inner.read().max_seq
    }

    /// Live items with a keyword text.
    pub fn keyword_documents(&self) -> usize {
        self.inner.read().keywords.len()
    }

    /// `(vectors in the graph, tombstones)`.
    pub fn graph_size(&self) -> (u64, u64) {
        let inner = self.inner.read();
        (inner.hnsw.len(), inner.tombstones)
    }

    /// Rebuilds the graph from the live vectors only, dropping tombstones.
    /// Searches go on against the old graph until the swap; the caller
    /// (the commit pipeline) guarantees no write is applied meanwhile.
    pub fn rebuild(&self) -> Result<(), HnswError> {
        let (labels, vectors) = {
            let inner = self.inner.read();
            let mut labels: Vec<u64> = inner.by_label.keys().copied().collect();
            labels.sort_unstable();
            let mut vectors = Vec::with_capacity(labels.len() * self.definition.dimension);
            for label in &labels {
                vectors.extend(inner.hnsw.reconstruct(*label)?);
            }
            (labels, vectors)
        };
        let definition = &self.definition;
        let mut fresh = Hnsw::new(definition.dimension, definition.metric, definition.hnsw)?;
        for (chunk, chunk_labels) in vectors
            .chunks(ADD_CHUNK * 16 * definition.dimension)
            .zip(labels.chunks(ADD_CHUNK * 16))
        {
            fresh.add(chunk, chunk_labels)?;
        }
        let mut inner = self.inner.write();
        inner.hnsw = fresh;
        inner.tombstones = 0;
        Ok(())
    }

    /// Builds the lookups of every field filtered on before (by this or an
    /// earlier incarnation), the presence map and the vector arena (load
    /// path).
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
    fn prepare_lookups(&self, filter: &[(String, String)]) -> Result<(), HnswError> {
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
    fn build(&self, fields: &[&str], evicted: &[String]) -> Result<(), HnswError> {
        let started = std::time::Instant::now();
        let (snapshot, watermark, wanted, want_presence, arena) = {
            let inner = self.inner.read();
            let wanted: Vec<&str> = fields
                .iter()
                .copied()
                .filter(|f| !inner.fields.contains_key(*f))
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
            let arena = match inner.arena {
                Some(_) => None,
                None => {
                    let _timer = Timer("vector arena", started);
                    Some(Arena::from_graph(
                        &inner.hnsw,
                        inner.by_label.keys().copied(),
                        inner.by_label.len(),
                        self.definition.dimension,
                    )?)
                }
            };
            (snapshot, inner.max_seq, wanted, want_presence, arena)
        };
        let built = {
            let _timer = Timer("filter lookups", started);
            index_fields_of(&snapshot, &wanted, want_presence)
        };
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

    /// Runs `f` with the graph under the read lock (snapshots).
    pub fn with_graph<T>(&self, f: impl FnOnce(&Hnsw, u64) -> T) -> T {
        let inner = self.inner.read();
        f(&inner.hnsw, inner.max_seq)
    }

    /// The k nearest live items passing the filter and not excluded.
    pub fn search(&self, query: &Query) -> Result<Vec<Hit>, HnswError> {
        self.prepare_lookups(&query.filter)?;
        if !query.is_plain() {
            let inner = self.inner.read();
            let ranked = self.rank(query, &inner)?;
            return Ok(ranked
                .into_iter()
                .filter_map(|r| {
                    let mut hit = inner.hit(r.label, r.distance, r.explain)?;
                    hit.beyond_k = r.beyond_k;
                    Some(hit)
                })
                .collect());
        }
        let key = query.cache_key();
        let max_seq = self.inner.read().max_seq;
        let cached = self.results.as_ref().and_then(|results| {
            let mut results = results.lock();
            let entry = results.get(&key)?;
            (entry.max_seq == max_seq && entry.query.same_as(query)).then(|| entry.scored.clone())
        });
        let scored = match cached {
            Some(scored) => scored,
            None => {
                let scored = self.score(query, &self.inner.read())?;
                if let Some(results) = &self.results {
                    results.lock().put(
                        key,
                        CachedResult {
                            query: query.clone(),
                            max_seq,
                            scored: scored.clone(),
                        },
                    );
                }
                scored
            }
        };

        let inner = self.inner.read();
        Ok(scored
            .into_iter()
            .filter_map(|(label, distance)| inner.hit(label, distance, None))
            .collect())
    }

    /// The exact `k` nearest live items passing the filter (and, with
    /// `only`, among those ids), with the Lance version they are: the same
    /// hits, in the same order, as a scan of that version
    /// ([`super::store::search_at`]) — every candidate scored at full
    /// precision, ties by id — without reading Lance. What a chat cites.
    pub fn exact(
        &self,
        query: &Query,
        only: Option<&HashSet<String>>,
    ) -> Result<(u64, Vec<Hit>), HnswError> {
        self.prepare_lookups(&query.filter)?;
        if self.inner.read().arena.is_none() {
            self.build(&[], &[])?;
        }
        let inner = self.inner.read();
        let excluded = inner.excluded(query);
        let candidates: Vec<u64> = match only {
            Some(ids) => {
                let mut labels: Vec<u64> = ids
                    .iter()
                    .filter_map(|id| inner.rows.get(id).map(|e| e.seq))
                    .filter(|label| !excluded.contains(label) && inner.passes(*label, query))
                    .collect();
                labels.sort_unstable();
                labels
            }
            None => inner.filtered(query, &excluded),
        };
        let metric = self.definition.metric;
        let exact = |label: u64| -> Result<Option<(f32, &str, u64)>, HnswError> {
            let Some(id) = inner.by_label.get(&label) else {
                return Ok(None);
            };
            let vector = inner.hnsw.reconstruct(label)?;
            Ok(Some((metric.exact(&query.vector, &vector), id.as_str(), label)))
        };
        let order =
            |a: &(f32, &str, u64), b: &(f32, &str, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(b.1));
        let k = query.k.max(1);
        // Every candidate's approximate distance and its error bound, from
        // the arena; the k best by it are scored exactly, which bounds the
        // k-th exact distance by `threshold`; only candidates whose lower
        // bound reaches it can be among the k nearest, and they are scored
        // exactly too. Exact results, at the cost of the few vectors near
        // the threshold instead of every candidate.
        let mut scored: Vec<(f32, &str, u64)> = Vec::new();
        match inner.arena.as_ref() {
            Some(arena) => {
                let mut approximate = Vec::with_capacity(candidates.len());
                arena.distances_bounded(metric, &query.vector, &candidates, &mut approximate);
                let missing = candidates.len() - approximate.len();
                approximate.sort_by(|a, b| a.1.total_cmp(&b.1));
                let mut rescored = HashSet::new();
                for &(label, _, _) in approximate.iter().take(k) {
                    rescored.insert(label);
                    scored.extend(exact(label)?);
                }
                scored.sort_by(order);
                let threshold = match scored.get(k - 1) {
                    Some(kth) => kth.0,
                    None => f32::INFINITY,
                };
                for &(label, approx, error) in &approximate {
                    if approx - error <= threshold && rescored.insert(label) {
                        scored.extend(exact(label)?);
                    }
                }
                // Candidates the arena lacks (published between its build
                // and this read): scored directly.
                if missing > 0 {
                    for &label in &candidates {
                        if !rescored.contains(&label) && !arena.contains(label) {
                            scored.extend(exact(label)?);
                        }
                    }
                }
            }
            None => {
                for &label in &candidates {
                    scored.extend(exact(label)?);
                }
            }
        }
        scored.sort_by(order);
        scored.truncate(query.k);
        let hits = scored
            .into_iter()
            .filter_map(|(distance, _, label)| inner.hit(label, distance, None))
            .collect();
        Ok((inner.version, hits))
    }

    /// `(label, distance)` of the k nearest, best first. Every search
    /// holds only the read lock, whatever its efSearch.
    fn score(&self, query: &Query, inner: &CoreInner) -> Result<Vec<(u64, f32)>, HnswError> {
        let ef_search = query.ef_search.unwrap_or(self.definition.hnsw.ef_search);
        let metric = self.definition.metric;
        if query.filter.is_empty() && query.predicate.is_none() {
            let allowed = inner.allowed_unfiltered(query);
            return inner.graph_search_k(query, query.k, ef_search, allowed.as_deref(), metric);
        }
        let excluded = inner.excluded(query);
        let candidates = inner.filtered(query, &excluded);
        self.score_among(query, inner, &candidates)
    }

    /// [`Core::score`] of a filtered search, over its `candidates` (the
    /// live labels passing the filter, in order).
    fn score_among(
        &self,
        query: &Query,
        inner: &CoreInner,
        candidates: &[u64],
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let ef_search = query.ef_search.unwrap_or(self.definition.hnsw.ef_search);
        let metric = self.definition.metric;
        if candidates.len() <= EXACT_SEARCH_LIMIT {
            return inner.exact_search(query, candidates, metric);
        }
        // A selective filter leaves few allowed nodes among the ones an
        // ef-sized walk visits: widen the walk in proportion (faiss explores
        // max(efSearch, k) nodes).
        let allowed = Bitmap::from_labels(candidates.iter().copied());
        let selectivity = candidates.len() as f64 / inner.rows.len().max(1) as f64;
        let widened = ((query.k as f64 / selectivity).ceil() as usize)
            .clamp(query.k, MAX_WIDENED_K.min(candidates.len()).max(query.k));
        let mut hits = inner.graph_search_k(query, widened, ef_search, Some(&allowed), metric)?;
        hits.truncate(query.k);
        Ok(hits)
    }

    /// A keyword or hybrid search, or any search asked to explain itself
    /// or to include given ids: candidates from each side the mode uses
    /// (the same filter and exclusions), each scored on both, fused by
    /// [`fused_distance`], best first; `k` of them plus the included ids
    /// that ranked lower.
    fn rank(&self, query: &Query, inner: &CoreInner) -> Result<Vec<Ranked>, HnswError> {
        let mode = query.mode;
        let weight = mode.weight(query.keyword_weight);
        let pool = if mode == SearchMode::Semantic {
            query.k
        } else {
            (query.k * 4).max(FUSION_POOL).min(MAX_K)
        };
        let excluded = inner.excluded(query);
        // The filter is applied once, for both sides (a predicate parses
        // every remaining item's metadata).
        let candidates = (!query.filter.is_empty() || query.predicate.is_some())
            .then(|| inner.filtered(query, &excluded));
        let semantic: Vec<(u64, f32)> = if mode.uses_vectors() {
            let mut wide = query.clone();
            wide.k = pool;
            match &candidates {
                Some(candidates) => self.score_among(&wide, inner, candidates)?,
                None => self.score(&wide, inner)?,
            }
        } else {
            Vec::new()
        };
        let resolved = inner.keywords.resolve(&query.terms);
        let keyword = if mode.uses_keywords() {
            let is_excluded = |label: u64| excluded.contains(&label);
            inner
                .keywords
                .top(&resolved, candidates.as_deref(), &is_excluded, pool)
        } else {
            Vec::new()
        };
        let included: HashSet<u64> = query
            .include_ids
            .iter()
            .filter_map(|id| inner.rows.get(id).map(|e| e.seq))
            .filter(|label| !excluded.contains(label) && inner.passes(*label, query))
            .collect();

        // Every candidate once, with what each side knows of it.
        let mut labels: Vec<u64> = Vec::with_capacity(semantic.len() + keyword.len());
        let mut seen = HashSet::new();
        let semantic_ranks: HashMap<u64, (usize, f32)> = semantic
            .iter()
            .enumerate()
            .map(|(i, &(label, distance))| (label, (i + 1, distance)))
            .collect();
        let keyword_ranks: HashMap<u64, (usize, f32)> = keyword
            .iter()
            .enumerate()
            .map(|(i, s)| (s.label, (i + 1, s.score)))
            .collect();
        for label in semantic
            .iter()
            .map(|s| s.0)
            .chain(keyword.iter().map(|s| s.label))
            .chain(
                query
                    .include_ids
                    .iter()
                    .filter_map(|id| inner.rows.get(id).map(|e| e.seq)),
            )
        {
            let wanted = semantic_ranks.contains_key(&label)
                || keyword_ranks.contains_key(&label)
                || included.contains(&label);
            if wanted && seen.insert(label) {
                labels.push(label);
            }
        }
        let metric = self.definition.metric;
        let mut parts = Vec::with_capacity(labels.len());
        for label in labels {
            let semantic_distance = match (mode.uses_vectors(), semantic_ranks.get(&label)) {
                (false, _) => None,
                (true, Some(&(_, distance))) => Some(distance),
                (true, None) => Some(metric.exact(&query.vector, &inner.hnsw.reconstruct(label)?)),
            };
            let keyword_score = match keyword_ranks.get(&label) {
                Some(&(_, score)) => score,
                None if mode.uses_keywords() => {
                    inner.keywords.score(&resolved, label).unwrap_or(0.0)
                }
                None => 0.0,
            };
            // A keyword search returns only what matches, included ids too.
            if mode == SearchMode::Keyword && keyword_score <= 0.0 {
                continue;
            }
            parts.push((label, semantic_distance, keyword_score));
        }
        let reference = resolved.reference();
        let mut ranked: Vec<Ranked> = parts
            .into_iter()
            .map(|(label, semantic_distance, keyword_score)| {
                let distance = fused_distance(
                    semantic_distance,
                    keyword_distance(keyword_score, reference),
                    weight,
                );
                let explain = query.explain.then(|| HitExplain {
                    mode,
                    semantic_distance,
                    semantic_rank: semantic_ranks.get(&label).map(|r| r.0),
                    keyword_score,
                    keyword_reference: reference,
                    keyword_distance: keyword_distance(keyword_score, reference),
                    keyword_rank: keyword_ranks.get(&label).map(|r| r.0),
                    matched_terms: inner.keywords.matched(&query.terms, label),
                    keyword_weight: weight,
                    fused_distance: distance,
                    fused_rank: 0,
                });
                Ranked {
                    label,
                    distance,
                    explain,
                    beyond_k: false,
                }
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(b.label.cmp(&a.label))
        });
        let mut kept = Vec::with_capacity(query.k + included.len());
        for (i, mut r) in ranked.into_iter().enumerate() {
            if let Some(explain) = r.explain.as_mut() {
                explain.fused_rank = i + 1;
            }
            r.beyond_k = i >= query.k;
            if i < query.k || included.contains(&r.label) {
                kept.push(r);
            }
        }
        Ok(kept)
    }
}

impl CoreInner {
    /// The hit for a ranked label, if it is still live.
    fn hit(&self, label: u64, distance: f32, explain: Option<HitExplain>) -> Option<Hit> {
        let id = self.by_label.get(&label)?;
        let entry = self.rows.get(id)?;
        Some(Hit {
            id: id.clone(),
            distance,
            metadata: serde_json::from_str(&entry.metadata).unwrap_or(Value::Object(Map::new())),
            explain,
            beyond_k: false,
        })
    }

    /// The live labels passing the query's filter, minus `excluded`, in order.
    fn filtered(&self, query: &Query, excluded: &HashSet<u64>) -> Vec<u64> {
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
    fn passes(&self, label: u64, query: &Query) -> bool {
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

    fn excluded(&self, query: &Query) -> HashSet<u64> {
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
    fn allowed_unfiltered(&self, query: &Query) -> Option<std::borrow::Cow<'_, Bitmap>> {
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

    fn retire(&mut self, seq: u64, metadata: &str) {
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

    fn index_fields(&mut self, seq: u64, metadata: &str) {
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
    fn live_labels(&self, excluded: &HashSet<u64>) -> Vec<u64> {
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
    fn satisfies(&self, label: u64, predicate: &crate::domain::filter::Filter) -> bool {
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
    fn candidates(&self, filter: &[(String, String)], excluded: &HashSet<u64>) -> Vec<u64> {
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

    fn graph_search_k(
        &self,
        query: &Query,
        k: usize,
        ef_search: u32,
        allowed: Option<&Bitmap>,
        metric: Metric,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let allowed = allowed.map(|bitmap| bitmap.0.as_slice());
        let found = self.hnsw.search(&query.vector, k, ef_search, allowed)?;
        Ok(found
            .into_iter()
            .map(|(label, raw)| (label, metric.distance(raw)))
            .collect())
    }

    /// Scores every candidate from the arena, then rescores the best few
    /// from faiss's full-precision vectors, so reported distances are exact.
    fn exact_search(
        &self,
        query: &Query,
        candidates: &[u64],
        metric: Metric,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        // Equal distances: the newest write (largest seq) first, so among
        // identical playbook queries the latest recordings are the ones kept.
        let order = |a: &(u64, f32), b: &(u64, f32)| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0));
        let mut shortlist: Vec<(u64, f32)> = match &self.arena {
            Some(arena) => {
                let mut scored = Vec::with_capacity(candidates.len());
                arena.distances(metric, &query.vector, candidates, &mut scored);
                let keep = (query.k * RESCORE_FACTOR).max(query.k + RESCORE_EXTRA);
                if scored.len() > keep {
                    scored.select_nth_unstable_by(keep - 1, order);
                    scored.truncate(keep);
                }
                scored
            }
            None => candidates.iter().map(|&label| (label, 0.0)).collect(),
        };
        for candidate in shortlist.iter_mut() {
            let vector = self.hnsw.reconstruct(candidate.0)?;
            candidate.1 = metric.exact(&query.vector, &vector);
        }
        shortlist.sort_by(order);
        shortlist.truncate(query.k);
        Ok(shortlist)
    }
}

/// Lookups of `fields` (value key -> labels) over `rows`, and with
/// `presence` which fields each row holds: one parse of each row's
/// metadata for all of it.
#[allow(clippy::type_complexity)]
fn index_fields_of(
    rows: &[(u64, Arc<str>)],
    fields: &[&str],
    presence: bool,
) -> (Vec<(String, HashMap<String, HashSet<u64>>)>, Option<Presence>) {
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
    (fields.iter().map(|f| f.to_string()).zip(built).collect(), present)
}

/// The values of a few top-level fields of a metadata object, parsed
/// without building the rest (skills lists, texts): a restart indexes
/// every row's metadata, and a full parse of 100k rows took ~0.3 s.
struct Picked<'f> {
    fields: &'f [&'f str],
    values: Vec<Option<Value>>,
    /// Every top-level key, when asked for.
    keys: Option<Vec<String>>,
}

impl<'f> Picked<'f> {
    fn parse(json: &str, fields: &'f [&'f str]) -> Vec<Option<Value>> {
        Self::parse_with_keys(json, fields, false).0
    }

    /// The fields' values, and with `keys` every top-level key.
    fn parse_with_keys(
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
struct Timer(&'static str, std::time::Instant);

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

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn entry(exclude: usize, hits: usize) -> CachedResult {
        CachedResult {
            query: Query {
                filter: vec![("role".into(), "s:Welder".into())],
                exclude_ids: (0..exclude).map(|i| format!("W{i:07}")).collect(),
                ..Query::nearest(vec![0.0; 64], 10)
            },
            max_seq: 1,
            scored: (0..hits as u64).map(|l| (l, 0.5)).collect(),
        }
    }

    #[test]
    fn the_result_cache_stays_within_its_bytes() {
        let mut cache = ResultCache {
            entries: LruCache::new(NonZeroUsize::new(1000).unwrap()),
            bytes: 0,
            max_bytes: 64 << 10,
        };
        for key in 0..500u64 {
            cache.put(key, entry(50, 10));
            assert!(cache.bytes <= cache.max_bytes, "{} bytes", cache.bytes);
            let held: usize = cache.entries.iter().map(|(_, e)| e.bytes()).sum();
            assert_eq!(held, cache.bytes, "the count follows the entries");
        }
        assert!(cache.entries.len() < 500, "old entries were evicted");
        assert!(cache.get(&499).is_some(), "the newest is kept");
        // An entry worth more than an eighth of the budget is not cached.
        cache.put(10_000, entry(2_000, 10));
        assert!(cache.get(&10_000).is_none());
        // Replacing an entry does not count it twice.
        let before = cache.bytes;
        cache.put(499, entry(50, 10));
        assert_eq!(cache.bytes, before);
    }
}
