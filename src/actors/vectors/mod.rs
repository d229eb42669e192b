//! Vector indexes: a `vectors` supervisor (one_for_one) with one
//! `index:<name>` actor per index, and the `vector_catalog` actor that
//! creates, lists and drops them.
//!
//! On disk, under `data.dir/vectors/`: `<name>.index.json` (the definition),
//! `<name>.lance` (the truth, see [`store`]), `<name>.faiss` and
//! `<name>.faiss.json` (the derived graph's snapshot, see [`snapshot`]),
//! and `<name>.quarantine/` (torn manifests set aside, see [`store`]).
//! The `vectors` supervisor derives its children from the definitions on
//! every start, so after a process restart (or a restart of the supervisor
//! itself) every index is back.
//!
//! Each index counts its restarts against an intensity of its own: an
//! index that keeps failing (a damaged dataset, a bug its data triggers) is
//! left `failed` after `supervision.index_max_restarts`, and neither its
//! siblings nor the `vectors` supervisor notice, until an operator restarts
//! it (`POST /v1/admin/indexes/{name}/restart`).

pub mod arena;
pub mod catalog;
pub mod core;
pub mod hnsw;
pub mod index;
pub mod keyword;
pub mod snapshot;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::actors::embed::EmbedError;
use crate::config::Settings;
use crate::domain::vectors::{HnswParams, IndexDefinition, ValidationError};
use crate::startup::{backoff, intensity};
use crate::supervision::{
    CallError, ChildSpec, Directory, Intensity, StatusBoard, Strategy, SupervisorArguments,
};
use crate::telemetry::Metrics;

use self::index::{actor_name, IndexActor, IndexArguments};

/// What every incarnation of one index shares, so that only the current
/// one ever changes its files. It outlives actor incarnations (and index
/// drops: a re-created index of the same name gets the same fence).
///
/// - `writer` is held by each commit and by a load. It guards the
///   generation: every load (and every drop) bumps it, and a commit of an
///   earlier incarnation that finds a newer generation writes nothing (its
///   actor died; the new one has already read Lance).
/// - `files` is held shared by the background work of the current
///   generation that touches files beside the commits (writing snapshot
///   files, writing compacted fragments, removing old versions), and taken
///   exclusively by a load or a drop right after it bumped the generation:
///   it so waits out (and its abort hastens) any such work of an earlier
///   incarnation, and later work sees the new generation and does nothing.
#[derive(Debug, Default)]
pub struct IndexFence {
    pub writer: tokio::sync::Mutex<u64>,
    generation: AtomicU64,
    pub files: tokio::sync::RwLock<()>,
    /// Armed by a `slow_load` fault: the next load sleeps this long first.
    slow_load: Mutex<Option<Duration>>,
}

impl IndexFence {
    /// The current generation (readable without the writer lock).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Makes the next load of this index take `delay` longer (fault injection).
    pub fn arm_slow_load(&self, delay: Duration) {
        *self.slow_load.lock() = Some(delay);
    }

    /// The delay a `slow_load` fault armed, once.
    pub fn take_slow_load(&self) -> Option<Duration> {
        self.slow_load.lock().take()
    }

    /// Starts a new generation under the writer lock `writer` (a guard of
    /// [`IndexFence::writer`]), then waits until no background work of an
    /// earlier generation touches the files. Returns the new generation.
    pub async fn advance(&self, writer: &mut u64) -> u64 {
        *writer += 1;
        self.generation.store(*writer, Ordering::SeqCst);
        drop(self.files.write().await);
        *writer
    }
}

/// Metadata fields an index has been filtered on, shared by its
/// incarnations: a restarted index builds their lookups (and the vector
/// arena) while it loads, so the first filtered search after a restart
/// is as fast as any other.
pub type HotFields = Arc<HotFieldSet>;

/// The fields with filter lookups, least recently filtered on first, at
/// most `vectors.max_hot_fields` of them: every write updates the lookup
/// of every hot field, so a client filtering on ever new fields must not
/// make every later write slower (nor the memory grow).
#[derive(Debug)]
pub struct HotFieldSet {
    max: usize,
    order: Mutex<Vec<String>>,
}

impl Default for HotFieldSet {
    fn default() -> Self {
        Self::new(16)
    }
}

impl HotFieldSet {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            order: Mutex::new(Vec::new()),
        }
    }

    /// Marks `fields` as used now; returns the fields that fell out of the
    /// set (never one of `fields`: a filter with more fields than the cap
    /// keeps them all until the next one).
    pub fn touch(&self, fields: &[&str]) -> Vec<String> {
        let mut order = self.order.lock();
        for field in fields {
            match order.iter().position(|f| f == field) {
                Some(i) if i + 1 == order.len() => {}
                Some(i) => {
                    let used = order.remove(i);
                    order.push(used);
                }
                None => order.push(field.to_string()),
            }
        }
        let keep = self.max.max(fields.len());
        let excess = order.len().saturating_sub(keep);
        order.drain(..excess).collect()
    }

    /// The fields, least recently used first.
    pub fn list(&self) -> Vec<String> {
        self.order.lock().clone()
    }
}

/// Tree name of the vectors supervisor.
pub const SUPERVISOR: &str = "vectors";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("index '{0}' does not exist")]
    NotFound(String),
    #[error("index '{0}' already exists")]
    AlreadyExists(String),
    #[error("item '{id}' is not in index '{index}'")]
    ItemNotFound { index: String, id: String },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("embedder: {0}")]
    EmbedCall(CallError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("faiss: {0}")]
    Faiss(String),
    #[error("the index is restarting; retry shortly")]
    Unavailable,
    /// The index is loading (first start, or a restart): ask again shortly.
    #[error("index '{0}' is loading; retry shortly")]
    Loading(String),
    /// The index used up its own restart intensity and stays down until an
    /// admin restart.
    #[error("index '{index}' has failed: {reason}")]
    Failed { index: String, reason: String },
    /// A pinned search asked for a version that retention removed.
    #[error("index '{index}' no longer keeps version {version} (removed after vectors.version_retention_secs)")]
    VersionGone { index: String, version: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<store::StoreError> for IndexError {
    fn from(err: store::StoreError) -> Self {
        Self::Storage(err.to_string())
    }
}

impl From<hnsw::HnswError> for IndexError {
    fn from(err: hnsw::HnswError) -> Self {
        Self::Faiss(err.0)
    }
}

/// What it takes to build index actors; shared by the supervisor's factory
/// and the catalog.
#[derive(Clone)]
pub struct VectorsContext {
    pub dir: PathBuf,
    pub settings: Arc<Settings>,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
    /// The `vectors` supervisor's board.
    pub board: StatusBoard,
    /// One fence per index name, outliving actor incarnations.
    fences: Arc<Mutex<HashMap<String, Arc<IndexFence>>>>,
    /// The filtered fields per index name, outliving actor incarnations.
    hot_fields: Arc<Mutex<HashMap<String, HotFields>>>,
}

impl VectorsContext {
    /// `board`: the `vectors` supervisor's board, shared with the HTTP edge.
    pub fn new(
        settings: Arc<Settings>,
        directory: Directory,
        metrics: Arc<Metrics>,
        board: StatusBoard,
    ) -> Self {
        Self {
            dir: settings.data.dir.join("vectors"),
            settings,
            directory,
            metrics,
            board,
            fences: Arc::default(),
            hot_fields: Arc::default(),
        }
    }

    pub fn hnsw_defaults(&self) -> HnswParams {
        let v = &self.settings.vectors;
        HnswParams {
            m: v.hnsw_m,
            ef_construction: v.hnsw_ef_construction,
            ef_search: v.hnsw_ef_search,
        }
    }

    pub fn fence(&self, name: &str) -> Arc<IndexFence> {
        self.fences
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub fn hot_fields(&self, name: &str) -> HotFields {
        let max = self.settings.vectors.max_hot_fields;
        self.hot_fields
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(HotFieldSet::new(max)))
            .clone()
    }

    pub fn definition_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.index.json"))
    }

    /// The child spec of index `definition.name`, with a restart
    /// intensity of its own.
    pub fn index_spec(&self, definition: IndexDefinition) -> ChildSpec {
        let context = self.clone();
        let name = actor_name(&definition.name);
        let fence = self.fence(&definition.name);
        let hot_fields = self.hot_fields(&definition.name);
        let supervision = &self.settings.supervision;
        let shutdown = Duration::from_millis(supervision.shutdown_timeout_ms);
        let own = Intensity {
            max_restarts: supervision.index_max_restarts,
            period: Duration::from_secs(supervision.index_period_secs),
        };
        ChildSpec::worker(name, move || {
            (
                IndexActor,
                IndexArguments {
                    definition: definition.clone(),
                    dir: context.dir.clone(),
                    settings: context.settings.vectors.clone(),
                    durability: context.settings.data.durability,
                    fence: fence.clone(),
                    hot_fields: hot_fields.clone(),
                    directory: context.directory.clone(),
                    metrics: context.metrics.clone(),
                    board: context.board.clone(),
                    call_timeout: context.settings.request_timeout(),
                    embed_chunk: context.settings.embed.max_texts,
                },
            )
        })
        .shutdown(shutdown)
        .own_intensity(own)
    }

    /// Every persisted definition, by name. Unreadable files are logged and
    /// skipped: one bad file must not keep the other indexes down.
    pub fn definitions(&self) -> Vec<IndexDefinition> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut definitions: Vec<IndexDefinition> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".index.json"))
            .filter_map(|path| match read_definition(&path) {
                Ok(definition) => Some(definition),
                Err(err) => {
                    tracing::error!(path = %path.display(), %err, "skipping unreadable index definition");
                    None
                }
            })
            .collect();
        definitions.sort_by(|a, b| a.name.cmp(&b.name));
        definitions
    }

    /// The `vectors` supervisor: its children are re-derived from the
    /// definitions on disk at every (re)start.
    pub fn supervisor_spec(&self) -> ChildSpec {
        let context = self.clone();
        ChildSpec::supervisor(SUPERVISOR, self.board.clone(), move || {
            let children = context
                .definitions()
                .into_iter()
                .map(|definition| context.index_spec(definition))
                .collect();
            SupervisorArguments {
                name: SUPERVISOR.to_string(),
                strategy: Strategy::OneForOne,
                intensity: intensity(&context.settings),
                backoff: backoff(&context.settings),
                children,
                board: context.board.clone(),
                directory: context.directory.clone(),
                metrics: context.metrics.clone(),
            }
        })
    }
}

fn read_definition(path: &Path) -> Result<IndexDefinition, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let definition: IndexDefinition = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    definition.validate().map_err(|e| e.to_string())?;
    Ok(definition)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hot_field_tests {
    use super::HotFieldSet;

    #[test]
    fn hot_fields_keep_the_most_recently_used_up_to_the_cap() {
        let hot = HotFieldSet::new(3);
        assert!(hot.touch(&["role"]).is_empty());
        assert!(hot.touch(&["city", "state"]).is_empty());
        // `role` used again: `city` is now the least recently used.
        assert!(hot.touch(&["role"]).is_empty());
        assert_eq!(hot.touch(&["zip"]), ["city"]);
        assert_eq!(hot.list(), ["state", "role", "zip"]);
        // Ad-hoc fields never grow the set past its cap...
        for i in 0..100 {
            hot.touch(&[&format!("field{i}")]);
            assert!(hot.list().len() <= 3);
        }
        // ...and a filter with more fields than the cap keeps all of its own.
        let evicted = hot.touch(&["a", "b", "c", "d"]);
        assert_eq!(evicted.len(), 3);
        assert_eq!(hot.list(), ["a", "b", "c", "d"]);
    }
}
