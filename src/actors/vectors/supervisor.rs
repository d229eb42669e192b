//! The `vectors` supervisor and what it takes to build index actors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::Settings;
use crate::domain::vectors::{HnswParams, IndexDefinition};
use crate::supervision::{
    Backoff, ChildSpec, Directory, Intensity, StatusBoard, Strategy, SupervisorArguments,
};
use crate::telemetry::Metrics;

use super::fence::{HotFieldSet, HotFields, IndexFence};
use super::index::{actor_name, IndexActor, IndexArguments};

/// Tree name of the vectors supervisor.
pub const SUPERVISOR: &str = "vectors";

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
        metrics.lance_cache_limits(
            settings.vectors.lance_metadata_cache_bytes,
            settings.vectors.lance_index_cache_bytes,
        );
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

    /// A Lance session for one incarnation of one index: its metadata and
    /// index caches bounded by `vectors.lance_*_cache_bytes` (Lance's own
    /// default is 1 GiB and 6 GiB for every dataset opened, and each
    /// commit adds its manifest and transaction to the former), and
    /// measured in `lakehouse_lance_cache_bytes` while it lives. One per
    /// incarnation, as Lance's default is, so a restart starts cold and
    /// indexes do not share one cache's shards.
    fn lance_session(&self) -> Arc<lance::session::Session> {
        let v = &self.settings.vectors;
        let session = Arc::new(lance::session::Session::new(
            v.lance_index_cache_bytes,
            v.lance_metadata_cache_bytes,
            Arc::new(lance::io::ObjectStoreRegistry::default()),
        ));
        self.metrics.watch_lance(&session);
        session
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
    /// intensity of its own. Each start reads the definition on disk
    /// again (a reindex changes it), and falls back to `definition` if it
    /// cannot.
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
            let path = context.definition_path(&definition.name);
            let definition = match read_definition(&path) {
                Ok(read) if read.name == definition.name => read,
                Ok(_) | Err(_) => definition.clone(),
            };
            (
                IndexActor,
                IndexArguments {
                    definition,
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
                    lance: context.lance_session(),
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
                intensity: Intensity::configured(&context.settings.supervision),
                backoff: Backoff::configured(&context.settings.supervision),
                children,
                board: context.board.clone(),
                directory: context.directory.clone(),
                metrics: context.metrics.clone(),
            }
        })
    }
}

pub(super) fn read_definition(path: &Path) -> Result<IndexDefinition, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let definition: IndexDefinition = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    definition.validate().map_err(|e| e.to_string())?;
    Ok(definition)
}
