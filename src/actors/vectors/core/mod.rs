//! The in-memory side of one index: the faiss graph plus the live rows,
//! shared by the actor (which writes) and its search tasks (which read).
//!
//! A `parking_lot` read-write lock rather than a tokio one: searches run on
//! blocking threads and hold it only for the graph walk; writers hold it for
//! one chunk of graph inserts or one map update, never across an `.await`.
//!
//! By stage: [`write`] installs a load and publishes commits, [`read`]
//! ranks a query (graph walk, exact scans, keyword fusion), [`lookups`]
//! keeps the per-field filter lookups, [`select`] the unranked sets a
//! bulk change or a count acts on, [`cache`] the recent results.

mod cache;
mod dedupe;
mod lookups;
mod read;
mod select;
mod write;

pub use select::{FacetCount, MAX_FACET_VALUES};

use cache::{CachedResult, Ranking, ResultCache};
use lookups::{Bitmap, Presence};

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
pub(super) const ADD_CHUNK: usize = 256;

/// Filtered searches whose candidate set is at most this large are answered
/// exactly; larger ones walk the graph with the candidates as the allowed
/// set. faiss's filtered HNSW walk expands only about efSearch nodes, so at
/// a few percent selectivity it can meet no allowed node at all (measured:
/// role filters over 100k workers, ~2,900 candidates, returned 0–3 of 5
/// hits for some queries). An exact scan of a few thousand candidates costs
/// a few milliseconds and is always complete.
pub(super) const EXACT_SEARCH_LIMIT: usize = 8192;

/// The widest walk a selective filter may ask for.
pub(super) const MAX_WIDENED_K: usize = 1024;

/// A keyword or hybrid search draws this many candidates (at least; 4k
/// for larger k) from each side before fusing them.
pub(super) const FUSION_POOL: usize = 50;

/// A live item.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The seq of the write that made it; also its faiss label.
    pub seq: u64,
    /// Serialised metadata object.
    pub metadata: Arc<str>,
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
    /// Live items by normalised e-mail, phone and name block, for
    /// duplicate hints: built with the first add that asks, then kept up
    /// to date.
    dedupe: Option<dedupe::DedupeIndex>,
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
    /// Held by the one build of lookups and arena running (see
    /// [`Core::build`]).
    building: Mutex<()>,
    /// Metadata objects parsed by lookup builds, ever: a search that
    /// finds the lookups it needs parses none.
    parsed_rows: std::sync::atomic::AtomicU64,
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
    /// The keyword query (keyword and hybrid modes): its words, phrases
    /// and synonyms.
    pub keywords: crate::domain::keyword::KeywordQuery,
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
            keywords: Default::default(),
            keyword_weight: 0.0,
            explain: false,
            include_ids: Vec::new(),
        }
    }

    /// A semantic search with nothing to explain or include: scored only.
    fn is_plain(&self) -> bool {
        self.mode == SearchMode::Semantic && !self.explain && self.include_ids.is_empty()
    }
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
        let analysis = definition.analysis;
        Self {
            hot_fields,
            building: Mutex::new(()),
            parsed_rows: Default::default(),
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
                keywords: KeywordIndex::new(analysis),
                tombstones: 0,
                dedupe: None,
                max_seq: 0,
            }),
        }
    }

    /// How many results the cache holds now (0 without a cache).
    pub fn cached_results(&self) -> usize {
        self.results.as_ref().map_or(0, |r| r.lock().entries.len())
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
}
