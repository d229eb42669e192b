//! The `index:<name>` actor: one vector index, Lance as the truth and a
//! faiss HNSW graph derived from it. The actor keeps the mailbox and the
//! lifecycle; the work happens in the rooms named after its stages:
//!
//! - [`load`]: start (first start, restart after a panic, process
//!   restart) takes the index's fence — waiting for any commit or file work
//!   of a dead incarnation — opens Lance (setting a torn newest manifest
//!   aside, and only that), loads the faiss snapshot if it is valid and
//!   replays the rows after it, else rebuilds.
//! - [`write`]: writes are validated in the mailbox, then queued. One
//!   commit task at a time takes everything queued (group commit: one Lance
//!   append for every waiting writer), appends it, inserts the vectors into
//!   the graph, publishes them, and only then replies. The commit task is
//!   watched: if it panics or fails, its callers get an error at once and
//!   the actor fails, so the supervisor reloads the index from Lance.
//! - [`modify`]: a patch, a bulk update or delete: selected, merged and
//!   queued as conditional writes, so a write in between is never lost.
//! - [`upkeep`]: after a commit, on the same path — snapshots, deletes of
//!   superseded rows, commits of compactions prepared beside it; in the
//!   background, fenced by the incarnation — snapshot files, compaction's
//!   rewrite, removal of old versions.
//! - [`search`]: reads never wait for the mailbox. A loaded incarnation
//!   publishes an [`IndexReader`] in the [`Directory`] (an ETS table, in
//!   OTP terms); the HTTP edge and the matrix search through it on their
//!   own threads, under the shared [`Core`]'s read lock, so searches run
//!   on every core and never queue behind each other or behind a commit.
//!   Searches sent to the mailbox (while no reader is published) run on
//!   blocking tasks against the same core.

mod load;
mod modify;
mod reindex;
mod search;
mod upkeep;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;

use super::core::Core;
use super::snapshot::SnapshotPaths;
use super::{HotFields, IndexError, IndexFence};
use crate::config::{Durability, VectorSettings};
use crate::domain::vectors::{
    validate_id, Hit, IndexDefinition, IndexInfo, Item, ItemInput, PinnedHits, PinnedSearch,
    SearchRequest, UpsertOutcome,
};
use crate::supervision::{Directory, Fault, FaultKind, StatusBoard};
use crate::telemetry::Metrics;

pub use modify::{ChangeKind, ChangeRequest, Target};
pub use search::{ScrollQuery, Tally};
pub use write::{Batch, CommitError};
#[cfg(test)]
pub(crate) use write::{Change, Reembedded};

/// Tree name of the actor of index `name`.
pub fn actor_name(name: &str) -> String {
    crate::domain::vectors::index_actor(name)
}

pub struct IndexActor;

pub struct IndexArguments {
    pub definition: IndexDefinition,
    /// `data/vectors`: holds `<name>.lance`, `<name>.faiss(.json)`.
    pub dir: PathBuf,
    pub settings: VectorSettings,
    pub durability: Durability,
    /// Shared by every incarnation: a new one waits for a dead one's
    /// commit and file work, and fences out what it left behind.
    pub fence: Arc<IndexFence>,
    /// Fields this index has been filtered on (shared by incarnations).
    pub hot_fields: HotFields,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
    /// The `vectors` supervisor's board (for the restart count in `Info`).
    pub board: StatusBoard,
    /// Bound on calls this actor makes (to `embed`).
    pub call_timeout: Duration,
    /// Texts per call to `embed` (its `max_texts`).
    pub embed_chunk: usize,
    /// This incarnation's Lance session (its caches bounded by config).
    pub lance: Arc<lance::session::Session>,
}

pub enum IndexMessage {
    /// Insert or replace items by id.
    Upsert {
        items: Vec<ItemInput>,
        reply: RpcReplyPort<Result<UpsertOutcome, IndexError>>,
    },
    Delete {
        id: String,
        reply: RpcReplyPort<Result<(), IndexError>>,
    },
    Get {
        id: String,
        reply: RpcReplyPort<Result<Item, IndexError>>,
    },
    Search {
        request: SearchRequest,
        reply: RpcReplyPort<Result<Vec<Hit>, IndexError>>,
    },
    Info {
        reply: RpcReplyPort<IndexInfo>,
    },
    /// An exact search of the index as of one Lance version (the newest
    /// when `version` is `None`): the same version always gives the same
    /// hits. Reads Lance, not the graph.
    Pinned {
        request: PinnedSearch,
        reply: RpcReplyPort<Result<PinnedHits, IndexError>>,
    },
    /// Keeps `version` from removal by the retention of old versions
    /// (something durable cites it).
    Tag {
        version: u64,
        tag: String,
        reply: RpcReplyPort<Result<(), IndexError>>,
    },
    /// The metadata of those of `ids` that exist (no vectors; cheap).
    Lookup {
        ids: Vec<String>,
        reply: RpcReplyPort<HashMap<String, Value>>,
    },
    /// Change items in place: a patch of one, an update or delete of those
    /// some ids or a filter select (see [`modify`]).
    Change {
        request: ChangeRequest,
        reply: RpcReplyPort<Result<crate::domain::items::ChangeOutcome, IndexError>>,
    },
    /// How many live items a filter selects, and facets over them.
    Tally {
        filter: Option<crate::domain::filter::PreparedFilter>,
        facets: Vec<String>,
        /// Items left out, whatever the filter.
        exclude_ids: Vec<String>,
        reply: RpcReplyPort<Result<Tally, IndexError>>,
    },
    /// One page of the items a filter selects, in id order, of one version.
    Scroll {
        query: ScrollQuery,
        reply: RpcReplyPort<Result<crate::domain::items::ScrollPage, IndexError>>,
    },
    /// One version of the index's dataset, to export (the current one
    /// unless a version is given).
    ExportSource {
        version: Option<u64>,
        reply: RpcReplyPort<Result<(lance::Dataset, u64), IndexError>>,
    },
    /// Internal: a write whose vectors are ready, to queue for commit.
    Enqueue(Batch),
    /// Internal: the commit task ended. An `Err` that
    /// [`CommitError::is_fatal`] means the in-memory index may differ from
    /// Lance: the actor fails and is reloaded.
    Committed(Result<(), CommitError>),
    /// Internal: no write since commit number `.0` for a while; a good
    /// moment to snapshot what the last snapshot does not cover.
    Idle(u64),
    /// Internal: a compaction prepared beside the commits waits for its
    /// turn on the commit path.
    CompactionReady,
    Fault(Fault),
}

impl From<Fault> for IndexMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

/// Figures `Info` reports, updated by the commit path.
#[derive(Default)]
struct Stats {
    lance_version: AtomicU64,
    fragments: AtomicU64,
    snapshot_at: Mutex<Option<DateTime<Utc>>>,
    /// The newest seq the faiss snapshot on disk covers.
    snapshot_seq: AtomicU64,
    /// A snapshot is being written beside the commits.
    snapshot_running: AtomicBool,
    /// The last background snapshot failed: write one at the next step.
    snapshot_failed: AtomicBool,
}

/// Everything the commit path and the background work of one incarnation
/// share with the actor.
struct Pipeline {
    name: String,
    core: Arc<Core>,
    writer: tokio::sync::Mutex<write::Writer>,
    fence: Arc<IndexFence>,
    /// The fence's generation when this incarnation loaded.
    generation: u64,
    /// Cleared when the incarnation ends (its state is dropped): a commit
    /// that has not started yet then writes nothing, and no upkeep starts.
    alive: AtomicBool,
    /// Set when a commit left the in-memory index unlike Lance: nothing
    /// derived from it (a snapshot) may be written any more.
    poisoned: AtomicBool,
    upkeep: upkeep::Upkeep,
    snapshot_paths: SnapshotPaths,
    settings: VectorSettings,
    stats: Stats,
    metrics: Arc<Metrics>,
    /// This incarnation, to wake when a prepared compaction is ready.
    actor: ActorRef<IndexMessage>,
    /// The configured synonyms and the index's own, analysed its way.
    synonyms: crate::domain::keyword::Synonyms,
    /// The reindex pass this incarnation runs or ran (see [`reindex`]).
    reindex: Mutex<Option<crate::domain::vectors::ReindexProgress>>,
}

impl Pipeline {
    /// Whether this incarnation may still change the index's files: it is
    /// alive and no later incarnation (or a drop) has taken over.
    fn current(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && self.fence.generation() == self.generation
    }
}

/// The read side of one loaded incarnation, published in the
/// [`Directory`] under the actor's name (see [`reader`]).
pub struct IndexReader {
    arguments: Arc<IndexArguments>,
    pipeline: Arc<Pipeline>,
}

impl IndexReader {
    /// A search from the HTTP edge. An unfiltered semantic search (a graph
    /// walk, about a millisecond) runs on the edge's worker thread itself,
    /// no hand-off at all; anything that may take longer (a filter, which
    /// may first build its lookups; keyword scoring) goes to the blocking
    /// pool, so the worker's other connections (`/ready` among them) are
    /// never held behind it.
    pub async fn search(&self, request: SearchRequest) -> Result<Vec<Hit>, IndexError> {
        request.validate()?;
        let quick = request.filter.is_none()
            && request.prepared.as_ref().is_none_or(|p| p.is_empty())
            && request.mode() == crate::domain::keyword::SearchMode::Semantic;
        let run = if quick {
            search::Run::Inline
        } else {
            search::Run::Blocking
        };
        search::run(&self.arguments, &self.pipeline, request, run).await
    }

    /// A search whose CPU part runs on the blocking pool: for callers on
    /// the actors' runtime (the matrix), whose threads also run every
    /// actor and commit — a hybrid search over a role's thousands of
    /// workers takes milliseconds, and holding a runtime thread that long
    /// starved the commits (record p50 92 ms → 810 ms in the 100k mix).
    pub async fn search_off_runtime(&self, request: SearchRequest) -> Result<Vec<Hit>, IndexError> {
        request.validate()?;
        search::run(
            &self.arguments,
            &self.pipeline,
            request,
            search::Run::Blocking,
        )
        .await
    }

    /// The index's definition.
    pub fn definition(&self) -> &crate::domain::vectors::IndexDefinition {
        &self.arguments.definition
    }

    /// The metadata of those of `ids` that exist.
    pub fn lookup(&self, ids: Vec<String>) -> HashMap<String, Value> {
        search::lookup(&self.pipeline, ids)
    }

    /// One page of a scroll.
    pub async fn scroll(
        &self,
        query: ScrollQuery,
    ) -> Result<crate::domain::items::ScrollPage, IndexError> {
        search::scroll(&self.arguments, &self.pipeline, query).await
    }

    /// Items of `batch` (id, serialised metadata) that look like another
    /// live item or an earlier one of the batch (see
    /// [`crate::domain::dedupe`]), on the blocking pool.
    pub async fn duplicates(
        &self,
        batch: Vec<(String, String)>,
    ) -> Vec<crate::domain::dedupe::DuplicateHint> {
        let core = self.pipeline.core.clone();
        tokio::task::spawn_blocking(move || core.duplicates(&batch))
            .await
            .unwrap_or_default()
    }

    /// How many live items `filter` selects, and `facets` over them.
    pub async fn tally(
        &self,
        filter: Option<crate::domain::filter::PreparedFilter>,
        facets: Vec<String>,
        exclude_ids: Vec<String>,
    ) -> Result<Tally, IndexError> {
        search::tally(&self.pipeline, filter, facets, exclude_ids).await
    }

    /// The ids of the live items whose `field` is one of `values`, on the
    /// blocking pool (the first call may build the field's lookup).
    pub async fn ids_with(
        &self,
        field: &str,
        values: Vec<String>,
    ) -> Result<Vec<String>, IndexError> {
        let core = self.pipeline.core.clone();
        let field = field.to_string();
        tokio::task::spawn_blocking(move || {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            core.ids_with(&field, &values)
        })
        .await
        .map_err(|e| IndexError::Internal(e.to_string()))?
        .map_err(IndexError::from)
    }
}

/// The reader of index `name`, if an incarnation has loaded it and is
/// still alive. `None` means: ask the actor (it may be loading,
/// restarting, failed or gone, and its answer says which).
pub fn reader(directory: &Directory, name: &str) -> Option<Arc<IndexReader>> {
    directory
        .table::<IndexReader>(&actor_name(name))
        .filter(|reader| {
            reader.pipeline.alive.load(Ordering::SeqCst)
                && !reader.pipeline.poisoned.load(Ordering::SeqCst)
        })
}

pub struct IndexState {
    arguments: Arc<IndexArguments>,
    /// Set once `post_start` has loaded the index.
    pipeline: Option<Arc<Pipeline>>,
    /// Published once loaded; withdrawn when the incarnation ends.
    reader: Option<Arc<IndexReader>>,
    /// Writes waiting for the next commit.
    pending: Vec<Batch>,
    committing: bool,
    /// Commits finished by this incarnation (for the idle snapshot).
    commits: u64,
}

impl Drop for IndexState {
    /// The incarnation is over, however it ended: nothing it left running
    /// may commit or touch the files from now on.
    fn drop(&mut self) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.alive.store(false, Ordering::SeqCst);
            pipeline.upkeep.abort_background();
        }
        self.withdraw_reader();
    }
}

impl Actor for IndexActor {
    type Msg = IndexMessage;
    type State = IndexState;
    type Arguments = IndexArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: IndexArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        std::fs::create_dir_all(&arguments.dir)?;
        Ok(IndexState {
            arguments: Arc::new(arguments),
            pipeline: None,
            reader: None,
            pending: Vec::new(),
            committing: false,
            commits: 0,
        })
    }

    /// Loading is heavy (a rebuild of 100k vectors takes a minute), so it
    /// happens here, after the supervisor has moved on; the board says
    /// `starting`/`restarting` meanwhile (the HTTP edge answers `503
    /// index_loading`), and messages from inside the tree queue.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        let (pipeline, snapshot_due) = load::load(&state.arguments, myself.clone()).await?;
        tracing::info!(
            index = %pipeline.name,
            items = pipeline.core.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index loaded"
        );
        let pipeline = Arc::new(pipeline);
        let reader = Arc::new(IndexReader {
            arguments: state.arguments.clone(),
            pipeline: pipeline.clone(),
        });
        let owner = actor_name(&state.arguments.definition.name);
        state.arguments.directory.publish(&owner, reader.clone());
        state.reader = Some(reader);
        state.pipeline = Some(pipeline);
        if snapshot_due {
            // An empty commit runs the maintenance step, which writes it.
            state.start_commit(&myself, false);
        }
        if let Some(record) = state.arguments.definition.reindex {
            let pipeline = state.pipeline.clone().expect("just set");
            tokio::spawn(reindex::run(
                state.arguments.clone(),
                pipeline,
                myself.clone(),
                record,
            ));
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stopping (a drop, a shutdown): searches ask the actor from now on.
        state.withdraw_reader();
        // A graceful stop leaves a fresh snapshot so the next start is fast.
        if let Some(pipeline) = state.pipeline.clone() {
            upkeep::snapshot_at_stop(&pipeline).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let outcome = handle_message(myself, message, state).await;
        if outcome.is_err() {
            // The incarnation is failing: no search may read its core while
            // the supervisor gets to the restart.
            state.withdraw_reader();
        }
        outcome
    }
}

async fn handle_message(
    myself: ActorRef<IndexMessage>,
    message: IndexMessage,
    state: &mut IndexState,
) -> Result<(), ActorProcessingErr> {
    let Some(pipeline) = state.pipeline.clone() else {
        return Err("index message before the index was loaded".into());
    };
    match message {
        IndexMessage::Upsert { items, reply } => {
            write::prepare_upsert(&state.arguments, &myself, items, reply)
        }
        IndexMessage::Delete { id, reply } => match validate_id(&id, "id") {
            Ok(()) => state.enqueue(&myself, Batch::delete(id, reply)),
            Err(err) => {
                let _ = reply.send(Err(err.into()));
            }
        },
        IndexMessage::Change { request, reply } => {
            modify::start(state.arguments.clone(), pipeline, myself, request, reply)
        }
        IndexMessage::Tally {
            filter,
            facets,
            exclude_ids,
            reply,
        } => {
            tokio::spawn(async move {
                let _ = reply.send(search::tally(&pipeline, filter, facets, exclude_ids).await);
            });
        }
        IndexMessage::Scroll { query, reply } => {
            let arguments = state.arguments.clone();
            tokio::spawn(async move {
                let _ = reply.send(search::scroll(&arguments, &pipeline, query).await);
            });
        }
        IndexMessage::ExportSource { version, reply } => {
            let arguments = state.arguments.clone();
            tokio::spawn(async move {
                let _ = reply.send(search::export_source(&arguments, &pipeline, version).await);
            });
        }
        IndexMessage::Enqueue(batch) => state.enqueue(&myself, batch),
        IndexMessage::Committed(outcome) => {
            state.committing = false;
            state.commits += 1;
            if let Err(err) = outcome {
                if err.is_fatal() {
                    return Err(format!("commit failed, reloading from Lance: {err}").into());
                }
            }
            if !state.pending.is_empty() || pipeline.upkeep.compaction_ready() {
                state.start_commit(&myself, false);
            } else {
                let (commits, myself) = (state.commits, myself.clone());
                let idle = Duration::from_millis(state.arguments.settings.snapshot_idle_ms);
                tokio::spawn(async move {
                    tokio::time::sleep(idle).await;
                    let _ = myself.send_message(IndexMessage::Idle(commits));
                });
            }
        }
        IndexMessage::Idle(commits) => {
            if commits == state.commits && !state.committing && state.pending.is_empty() {
                state.start_commit(&myself, true);
            }
        }
        IndexMessage::CompactionReady => {
            if !state.committing {
                state.start_commit(&myself, false);
            }
        }
        IndexMessage::Get { id, reply } => {
            tokio::task::spawn_blocking(move || {
                let _ = reply.send(search::get_item(&pipeline, &id));
            });
        }
        IndexMessage::Search { request, reply } => {
            search::dispatch(state.arguments.clone(), pipeline, request, reply)
        }
        IndexMessage::Info { reply } => {
            let _ = reply.send(state.info(&pipeline));
        }
        IndexMessage::Pinned { request, reply } => {
            search::pinned(state.arguments.clone(), pipeline, request, reply)
        }
        IndexMessage::Tag {
            version,
            tag,
            reply,
        } => {
            let path = search::dataset_path(&state.arguments);
            tokio::spawn(async move {
                let tagged = super::store::tag_version(&path, &tag, version).await;
                let _ = reply.send(tagged.map_err(IndexError::from));
            });
        }
        IndexMessage::Lookup { ids, reply } => {
            let _ = reply.send(search::lookup(&pipeline, ids));
        }
        IndexMessage::Fault(fault) if fault.kind == FaultKind::CommitPanic => {
            tracing::warn!(index = %pipeline.name, "the next commit will panic (injected fault)");
            pipeline.fence.panic_in_commit.store(true, Ordering::SeqCst);
        }
        IndexMessage::Fault(fault) if fault.kind == FaultKind::SlowLoad => {
            pipeline.fence.arm_slow_load(fault.delay);
            return Err(format!(
                "injected fault: restart '{}' with a load {} ms slower",
                actor_name(&pipeline.name),
                fault.delay.as_millis()
            )
            .into());
        }
        IndexMessage::Fault(fault) => fault.apply(&actor_name(&pipeline.name)).await?,
    }
    Ok(())
}

impl IndexState {
    fn definition(&self) -> &IndexDefinition {
        &self.arguments.definition
    }

    /// Withdraws this incarnation's reader from the Directory (idempotent).
    fn withdraw_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let owner = actor_name(&self.arguments.definition.name);
            self.arguments.directory.withdraw(&owner, &reader);
        }
    }

    fn enqueue(&mut self, myself: &ActorRef<IndexMessage>, batch: Batch) {
        self.pending.push(batch);
        if !self.committing {
            self.start_commit(myself, false);
        }
    }

    /// Hands everything queued (possibly nothing: then only the upkeep
    /// step runs; `idle` lets it snapshot any uncovered rows) to one commit
    /// task, and watches it: however the task ends — a result, an error, a
    /// panic — the actor hears of it.
    fn start_commit(&mut self, myself: &ActorRef<IndexMessage>, idle: bool) {
        let Some(pipeline) = self.pipeline.clone() else {
            return;
        };
        self.committing = true;
        let group = std::mem::take(&mut self.pending);
        let task = tokio::spawn(async move { write::commit(&pipeline, group, idle).await });
        let myself = myself.clone();
        tokio::spawn(async move {
            let outcome = match task.await {
                Ok(outcome) => outcome,
                // The group's reply ports were dropped with the task: its
                // callers already have their error.
                Err(join) => Err(CommitError::Panicked(panic_message(join))),
            };
            if let Err(err) = &outcome {
                tracing::error!(index = %myself.get_name().unwrap_or_default(), %err, "commit failed");
            }
            let _ = myself.send_message(IndexMessage::Committed(outcome));
        });
    }

    fn info(&self, pipeline: &Pipeline) -> IndexInfo {
        let definition = self.definition();
        let (graph, tombstones) = pipeline.core.graph_size();
        let snapshot_at = *pipeline.stats.snapshot_at.lock();
        IndexInfo {
            name: definition.name.clone(),
            dimension: definition.dimension,
            metric: definition.metric,
            hnsw: definition.hnsw,
            kind: definition.kind,
            storage: definition.storage,
            analysis: definition.analysis,
            analysis_current: definition.analysis == crate::domain::analysis::Analysis::CURRENT,
            count: pipeline.core.len(),
            status: "ready".to_string(),
            restarts: self
                .arguments
                .board
                .restarts(&actor_name(&definition.name))
                .unwrap_or(0),
            lance_version: pipeline.stats.lance_version.load(Ordering::Relaxed),
            fragments: pipeline.stats.fragments.load(Ordering::Relaxed),
            graph_vectors: graph,
            keyword_documents: pipeline.core.keyword_documents(),
            tombstones,
            snapshot_age_secs: snapshot_at
                .map(|at| (Utc::now() - at).num_milliseconds() as f64 / 1000.0),
            writes_since_snapshot: pipeline
                .core
                .max_seq()
                .saturating_sub(pipeline.stats.snapshot_seq.load(Ordering::Relaxed)),
            created_at: definition.created_at,
            synonyms: definition.synonyms.clone(),
            reindex: pipeline.reindex.lock().clone(),
        }
    }
}

/// The message of a task's panic.
fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string()),
        Err(join) => join.to_string(),
    }
}
