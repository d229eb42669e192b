//! The `index:<name>` actor: one vector index, Lance as the truth and a
//! faiss HNSW graph derived from it.
//!
//! - **Writes** are validated in the mailbox, then queued. One commit task
//!   at a time takes everything queued (group commit: one Lance append for
//!   every waiting writer), appends it, inserts the vectors into the graph,
//!   publishes them, and only then replies. The mailbox never waits on I/O.
//! - **Searches** are dispatched from the mailbox to blocking tasks that
//!   read the shared [`Core`] under a read lock, so they run on every core
//!   and never queue behind each other or behind a commit.
//! - **Start** (first start, restart after a panic, process restart) waits
//!   for any commit still running from a dead incarnation (the per-index
//!   writer lock outlives incarnations), opens Lance, loads the faiss
//!   snapshot if it is valid and replays the rows after it, else rebuilds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;

use super::core::{Applied, Core, Entry, Query};
use super::hnsw::Hnsw;
use super::snapshot::{self, Covering, SnapshotPaths};
use super::store::{self, LogRow, VectorStore};
use super::{HotFields, IndexError, WriterLock};
use crate::actors::embed::{self, EmbedMessage};
use crate::config::VectorSettings;
use crate::domain::vectors::{
    check_unique_ids, prepare_filter, prepare_metadata, prepare_vector, validate_id, validate_k,
    Hit, IndexDefinition, IndexInfo, Item, ItemInput, SearchRequest, UpsertOutcome,
    ValidationError,
};
use crate::supervision::{Directory, Fault, StatusBoard};
use crate::telemetry::Metrics;

/// Tree name of the actor of index `name`.
pub fn actor_name(name: &str) -> String {
    format!("index:{name}")
}

pub struct IndexActor;

pub struct IndexArguments {
    pub definition: IndexDefinition,
    /// `data/vectors`: holds `<name>.lance`, `<name>.faiss(.json)`.
    pub dir: PathBuf,
    pub settings: VectorSettings,
    /// Held by whoever writes this index's Lance dataset; shared by every
    /// incarnation, so a new one waits for a dead one's commit to finish.
    pub writer_lock: WriterLock,
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
    /// The metadata of those of `ids` that exist (no vectors; cheap).
    Lookup {
        ids: Vec<String>,
        reply: RpcReplyPort<HashMap<String, Value>>,
    },
    /// Internal: a write whose vectors are ready, to queue for commit.
    Enqueue(Batch),
    /// Internal: the commit task finished; `fatal` if the in-memory index
    /// may have diverged from Lance (the actor then fails and reloads).
    Committed {
        fatal: Option<String>,
    },
    /// Internal: no write since commit number `.0` for a while; a good
    /// moment to snapshot what the last snapshot does not cover.
    Idle(u64),
    Fault(Fault),
}

impl From<Fault> for IndexMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

/// One caller's write, prepared.
pub struct Batch {
    ops: Vec<Op>,
    reply: Reply,
}

enum Op {
    Upsert {
        id: String,
        vector: Vec<f32>,
        metadata: Arc<str>,
    },
    Delete {
        id: String,
    },
}

enum Reply {
    Upsert(RpcReplyPort<Result<UpsertOutcome, IndexError>>),
    Delete(RpcReplyPort<Result<(), IndexError>>),
}

impl Reply {
    fn fail(self, err: IndexError) {
        match self {
            Reply::Upsert(port) => {
                let _ = port.send(Err(err));
            }
            Reply::Delete(port) => {
                let _ = port.send(Err(err));
            }
        }
    }
}

/// Figures `Info` reports, updated by the commit task.
#[derive(Default)]
struct Stats {
    lance_version: AtomicU64,
    fragments: AtomicU64,
    snapshot_at: Mutex<Option<DateTime<Utc>>>,
    /// A snapshot is being written beside the commits.
    snapshot_running: AtomicBool,
    /// The last background snapshot failed: write one at the next step.
    snapshot_failed: AtomicBool,
    /// Compaction and old-version removal are running beside the commits.
    upkeep_running: AtomicBool,
}

/// What only the commit task touches (one at a time, under the lock).
struct Writer {
    store: VectorStore,
    next_seq: u64,
    rows_since_snapshot: usize,
    /// Write a snapshot at the next maintenance step, whatever the count.
    force_snapshot: bool,
    /// Seqs of rows that no longer matter (superseded or delete markers).
    superseded: Vec<u64>,
    /// When this incarnation last appended to Lance, and last started
    /// compaction + old-version removal: an index that stops being written
    /// gets one more removal once its last versions have aged past the
    /// retention, instead of keeping them for good.
    last_write: Option<Instant>,
    last_upkeep: Option<Instant>,
}

/// Everything a commit task needs; shared with the actor.
struct Pipeline {
    name: String,
    core: Arc<Core>,
    writer: tokio::sync::Mutex<Writer>,
    writer_lock: WriterLock,
    /// The writer lock's generation when this incarnation loaded.
    generation: u64,
    /// Set when a commit left the in-memory index unlike Lance: nothing
    /// derived from it (a snapshot) may be written any more.
    poisoned: std::sync::atomic::AtomicBool,
    snapshot_paths: SnapshotPaths,
    settings: VectorSettings,
    stats: Stats,
    metrics: Arc<Metrics>,
}

pub struct IndexState {
    arguments: Arc<IndexArguments>,
    /// Set once `post_start` has loaded the index.
    pipeline: Option<Arc<Pipeline>>,
    /// Writes waiting for the next commit.
    pending: Vec<Batch>,
    committing: bool,
    /// Commits finished by this incarnation (for the idle snapshot).
    commits: u64,
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
            pending: Vec::new(),
            committing: false,
            commits: 0,
        })
    }

    /// Loading is heavy (a rebuild of 100k vectors takes a minute), so it
    /// happens here, after the supervisor has moved on; messages queue until
    /// it is done.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        let (pipeline, snapshot_due) = load(&state.arguments).await?;
        tracing::info!(
            index = %pipeline.name,
            items = pipeline.core.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index loaded"
        );
        state.pipeline = Some(Arc::new(pipeline));
        if snapshot_due {
            // An empty commit runs the maintenance step, which writes it.
            state.start_commit(&myself);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A graceful stop leaves a fresh snapshot so the next start is fast.
        if let Some(pipeline) = state.pipeline.clone() {
            // Let a background snapshot finish (bounded: a stop must not hang).
            for _ in 0..100 {
                if !pipeline.stats.snapshot_running.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let generation = pipeline.writer_lock.clone().lock_owned().await;
            let writer = pipeline.writer.lock().await;
            let current =
                *generation == pipeline.generation && !pipeline.poisoned.load(Ordering::SeqCst);
            if current && writer.rows_since_snapshot > 0 {
                let version = writer.store.version();
                drop(writer);
                if let Err(err) = write_snapshot(&pipeline, version).await {
                    tracing::warn!(index = %pipeline.name, %err, "snapshot at shutdown failed");
                }
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(pipeline) = state.pipeline.clone() else {
            return Err("index message before the index was loaded".into());
        };
        match message {
            IndexMessage::Upsert { items, reply } => state.upsert(&myself, items, reply),
            IndexMessage::Delete { id, reply } => match validate_id(&id, "id") {
                Ok(()) => {
                    let batch = Batch {
                        ops: vec![Op::Delete { id }],
                        reply: Reply::Delete(reply),
                    };
                    state.enqueue(&myself, batch);
                }
                Err(err) => {
                    let _ = reply.send(Err(err.into()));
                }
            },
            IndexMessage::Enqueue(batch) => state.enqueue(&myself, batch),
            IndexMessage::Committed { fatal } => {
                state.committing = false;
                state.commits += 1;
                if let Some(reason) = fatal {
                    return Err(format!("index diverged from Lance, reloading: {reason}").into());
                }
                if !state.pending.is_empty() {
                    state.start_commit(&myself);
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
                    state.start_maintenance(&myself, true);
                }
            }
            IndexMessage::Get { id, reply } => {
                tokio::task::spawn_blocking(move || {
                    let _ = reply.send(get_item(&pipeline, &id));
                });
            }
            IndexMessage::Search { request, reply } => state.search(pipeline, request, reply),
            IndexMessage::Info { reply } => {
                let _ = reply.send(state.info(&pipeline));
            }
            IndexMessage::Lookup { ids, reply } => {
                let found = ids
                    .into_iter()
                    .filter_map(|id| {
                        let entry = pipeline.core.get(&id)?;
                        let metadata = serde_json::from_str(&entry.metadata).unwrap_or(Value::Null);
                        Some((id, metadata))
                    })
                    .collect();
                let _ = reply.send(found);
            }
            IndexMessage::Fault(fault) => fault.apply(&actor_name(&pipeline.name)).await?,
        }
        Ok(())
    }
}

impl IndexState {
    fn definition(&self) -> &IndexDefinition {
        &self.arguments.definition
    }

    /// Validates a write batch in full (nothing is written unless every item
    /// is valid), embeds text items off the mailbox, then queues it.
    fn upsert(
        &mut self,
        myself: &ActorRef<IndexMessage>,
        items: Vec<ItemInput>,
        reply: RpcReplyPort<Result<UpsertOutcome, IndexError>>,
    ) {
        let settings = &self.arguments.settings;
        let check = || -> Result<(), ValidationError> {
            if items.is_empty() {
                return Err(ValidationError::EmptyBatch);
            }
            if items.len() > settings.max_batch {
                return Err(ValidationError::BatchTooLarge {
                    max: settings.max_batch,
                    got: items.len(),
                });
            }
            for (i, item) in items.iter().enumerate() {
                validate_id(&item.id, &format!("items[{i}].id"))?;
                if item.vector.is_some() == item.text.is_some() {
                    return Err(ValidationError::VectorOrText {
                        field: format!("items[{i}]"),
                    });
                }
                if item.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    return Err(ValidationError::InvalidVector {
                        field: format!("items[{i}].text"),
                        reason: "must not be empty".into(),
                    });
                }
            }
            check_unique_ids(items.iter().map(|i| i.id.as_str()))
        };
        if let Err(err) = check() {
            let _ = reply.send(Err(err.into()));
            return;
        }
        let texts: Vec<String> = items.iter().filter_map(|i| i.text.clone()).collect();
        if texts.is_empty() {
            match prepare_items(self.definition(), settings, items, Vec::new()) {
                Ok(ops) => self.enqueue(
                    myself,
                    Batch {
                        ops,
                        reply: Reply::Upsert(reply),
                    },
                ),
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            }
            return;
        }
        let arguments = self.arguments.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            let prepared = match embed_texts(&arguments, texts).await {
                Ok(vectors) => {
                    prepare_items(&arguments.definition, &arguments.settings, items, vectors)
                }
                Err(err) => Err(err),
            };
            match prepared {
                Ok(ops) => {
                    let batch = Batch {
                        ops,
                        reply: Reply::Upsert(reply),
                    };
                    if let Err(ractor::MessagingErr::SendErr(IndexMessage::Enqueue(batch))) =
                        myself.send_message(IndexMessage::Enqueue(batch))
                    {
                        batch.reply.fail(IndexError::Unavailable);
                    }
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            }
        });
    }

    fn enqueue(&mut self, myself: &ActorRef<IndexMessage>, batch: Batch) {
        self.pending.push(batch);
        if !self.committing {
            self.start_commit(myself);
        }
    }

    /// Hands everything queued to one commit task.
    fn start_commit(&mut self, myself: &ActorRef<IndexMessage>) {
        self.start_maintenance(myself, false);
    }

    /// A commit task for everything queued (possibly nothing: then only the
    /// maintenance step runs; `idle` lets it snapshot any uncovered rows).
    fn start_maintenance(&mut self, myself: &ActorRef<IndexMessage>, idle: bool) {
        let Some(pipeline) = self.pipeline.clone() else {
            return;
        };
        self.committing = true;
        let group = std::mem::take(&mut self.pending);
        let myself = myself.clone();
        tokio::spawn(async move {
            let fatal = commit(&pipeline, group, idle).await.err();
            if let Some(reason) = &fatal {
                tracing::error!(index = %pipeline.name, %reason, "commit left the index inconsistent");
            }
            let _ = myself.send_message(IndexMessage::Committed { fatal });
        });
    }

    fn search(
        &self,
        pipeline: Arc<Pipeline>,
        request: SearchRequest,
        reply: RpcReplyPort<Result<Vec<Hit>, IndexError>>,
    ) {
        let check = || -> Result<(), ValidationError> {
            validate_k(request.k)?;
            if request.vector.is_some() == request.text.is_some() {
                return Err(ValidationError::VectorOrText {
                    field: "query".into(),
                });
            }
            if let Some(ef) = request.ef_search {
                if !(1..=4096).contains(&ef) {
                    return Err(ValidationError::InvalidEfSearch(ef));
                }
            }
            Ok(())
        };
        if let Err(err) = check() {
            let _ = reply.send(Err(err.into()));
            return;
        }
        let arguments = self.arguments.clone();
        tokio::spawn(async move {
            let result = run_search(&arguments, &pipeline, request).await;
            let _ = reply.send(result);
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
            tombstones,
            snapshot_age_secs: snapshot_at
                .map(|at| (Utc::now() - at).num_milliseconds() as f64 / 1000.0),
            created_at: definition.created_at,
        }
    }
}

/// Embeds `texts` through the `embed` actor, in chunks it accepts.
async fn embed_texts(
    arguments: &IndexArguments,
    texts: Vec<String>,
) -> Result<Vec<Vec<f32>>, IndexError> {
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(arguments.embed_chunk.max(1)) {
        let texts = chunk.to_vec();
        let embedded = arguments
            .directory
            .call_idempotent(
                embed::NAME,
                |reply| EmbedMessage::Embed {
                    texts: texts.clone(),
                    model: None,
                    reply,
                },
                arguments.call_timeout,
            )
            .await
            .map_err(IndexError::EmbedCall)??;
        vectors.extend(embedded.vectors.iter().map(|v| v.to_vec()));
    }
    Ok(vectors)
}

/// Turns validated inputs into operations (vectors checked and prepared).
fn prepare_items(
    definition: &IndexDefinition,
    settings: &VectorSettings,
    items: Vec<ItemInput>,
    embedded: Vec<Vec<f32>>,
) -> Result<Vec<Op>, IndexError> {
    let mut embedded = embedded.into_iter();
    let mut ops = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let raw = match (item.vector, item.text) {
            (Some(vector), None) => vector,
            (None, Some(_)) => embedded
                .next()
                .ok_or_else(|| IndexError::Internal("embedder returned too few vectors".into()))?,
            _ => {
                return Err(ValidationError::VectorOrText {
                    field: format!("items[{i}]"),
                }
                .into())
            }
        };
        let field = format!("items[{i}].vector");
        let vector = prepare_vector(raw, definition.dimension, definition.metric, &field)?;
        let metadata = prepare_metadata(
            item.metadata,
            settings.max_metadata_bytes,
            &format!("items[{i}].metadata"),
        )?;
        let metadata: Arc<str> = serde_json::to_string(&metadata)
            .map_err(|e| IndexError::Internal(e.to_string()))?
            .into();
        ops.push(Op::Upsert {
            id: item.id,
            vector,
            metadata,
        });
    }
    Ok(ops)
}

async fn run_search(
    arguments: &IndexArguments,
    pipeline: &Arc<Pipeline>,
    request: SearchRequest,
) -> Result<Vec<Hit>, IndexError> {
    let started = Instant::now();
    let definition = &arguments.definition;
    let raw = match (request.vector, request.text) {
        (Some(vector), None) => vector,
        (None, Some(text)) => embed_texts(arguments, vec![text])
            .await?
            .pop()
            .ok_or_else(|| IndexError::Internal("embedder returned no vector".into()))?,
        _ => {
            return Err(ValidationError::VectorOrText {
                field: "query".into(),
            }
            .into())
        }
    };
    let vector = prepare_vector(raw, definition.dimension, definition.metric, "vector")?;
    let query = Query {
        vector,
        k: request.k,
        filter: prepare_filter(request.filter)?,
        exclude_ids: request.exclude_ids.unwrap_or_default(),
        ef_search: request.ef_search,
    };
    let core = pipeline.core.clone();
    let hits = tokio::task::spawn_blocking(move || core.search(&query))
        .await
        .map_err(|e| IndexError::Internal(e.to_string()))??;
    pipeline
        .metrics
        .vector_search_duration
        .with_label_values(&[&definition.name])
        .observe(started.elapsed().as_secs_f64());
    Ok(hits)
}

fn get_item(pipeline: &Pipeline, id: &str) -> Result<Item, IndexError> {
    let entry = pipeline
        .core
        .get(id)
        .ok_or_else(|| IndexError::ItemNotFound {
            index: pipeline.name.clone(),
            id: id.to_string(),
        })?;
    let vector = pipeline.core.vector(entry.seq)?;
    Ok(Item {
        id: id.to_string(),
        vector,
        metadata: serde_json::from_str(&entry.metadata).unwrap_or(Value::Null),
    })
}

/// One group commit. Replies to every writer in the group. `Err` means the
/// in-memory index may no longer match Lance (the actor must reload).
async fn commit(pipeline: &Arc<Pipeline>, group: Vec<Batch>, idle: bool) -> Result<(), String> {
    let generation = pipeline.writer_lock.clone().lock_owned().await;
    if *generation != pipeline.generation {
        // This incarnation is dead and a newer one has read Lance: writing
        // now would reuse its seqs. Nothing was written; nothing is acked.
        for batch in group {
            batch.reply.fail(IndexError::Unavailable);
        }
        return Ok(());
    }
    let mut writer = pipeline.writer.lock().await;

    // Decide every op against the live state plus earlier ops of the group,
    // and give each written row the next seq.
    let mut rows: Vec<LogRow> = Vec::new();
    let mut outcomes: Vec<Result<UpsertOutcome, IndexError>> = Vec::with_capacity(group.len());
    let mut live_in_group: HashMap<String, bool> = HashMap::new();
    for batch in &group {
        let mut outcome = UpsertOutcome::default();
        let mut failure = None;
        for op in &batch.ops {
            let id = match op {
                Op::Upsert { id, .. } | Op::Delete { id } => id,
            };
            let exists = live_in_group
                .get(id)
                .copied()
                .unwrap_or_else(|| pipeline.core.contains(id));
            match op {
                Op::Upsert {
                    id,
                    vector,
                    metadata,
                } => {
                    if exists {
                        outcome.updated += 1;
                    } else {
                        outcome.inserted += 1;
                    }
                    live_in_group.insert(id.clone(), true);
                    rows.push(LogRow {
                        id: id.clone(),
                        seq: writer.next_seq,
                        vector: Some(vector.clone()),
                        metadata: Some(metadata.clone()),
                    });
                }
                Op::Delete { id } => {
                    if !exists {
                        failure = Some(IndexError::ItemNotFound {
                            index: pipeline.name.clone(),
                            id: id.clone(),
                        });
                        continue;
                    }
                    live_in_group.insert(id.clone(), false);
                    rows.push(LogRow {
                        id: id.clone(),
                        seq: writer.next_seq,
                        vector: None,
                        metadata: None,
                    });
                }
            }
            writer.next_seq += 1;
        }
        outcomes.push(failure.map_or(Ok(outcome), Err));
    }

    // The graph insert runs while Lance writes: the new labels stay
    // invisible until `publish`, and if the append fails the index is
    // reloaded from Lance anyway.
    let append = async {
        let started = Instant::now();
        let committed = if rows.is_empty() {
            Ok(writer.store.version())
        } else {
            writer.store.append(&rows).await
        };
        observe_commit(pipeline, "append", started);
        committed
    };
    let insert = async {
        let started = Instant::now();
        let applied = apply(pipeline, &rows).await;
        observe_commit(pipeline, "apply", started);
        applied
    };
    let (committed, applied) = tokio::join!(append, insert);
    if let Err(err) = committed {
        tracing::error!(index = %pipeline.name, %err, rows = rows.len(), "Lance commit failed; nothing acknowledged");
        for batch in group {
            batch.reply.fail(IndexError::Storage(err.to_string()));
        }
        // Whether Lance kept part of it is unknown, and seqs were consumed:
        // reload from Lance rather than guess.
        pipeline.poisoned.store(true, Ordering::SeqCst);
        return Err(format!("Lance append failed: {err}"));
    }
    if !rows.is_empty() {
        writer.last_write = Some(Instant::now());
        pipeline
            .metrics
            .lance_commits
            .with_label_values(&[&format!("vectors/{}", pipeline.name)])
            .inc();
    }

    // Durable: now make it visible, then acknowledge.
    let max_seq = writer.next_seq.saturating_sub(1);
    match applied {
        Ok(()) => {
            let writes: Vec<Applied<'_>> = rows
                .iter()
                .map(|row| match &row.metadata {
                    Some(metadata) if row.vector.is_some() => Applied::Upsert {
                        id: &row.id,
                        seq: row.seq,
                        metadata: metadata.clone(),
                    },
                    _ => Applied::Delete { id: &row.id },
                })
                .collect();
            let superseded = pipeline.core.publish(&writes, max_seq);
            writer.superseded.extend(superseded);
            writer
                .superseded
                .extend(rows.iter().filter(|r| r.vector.is_none()).map(|r| r.seq));
            writer.rows_since_snapshot += rows.len();
        }
        Err(reason) => {
            pipeline.poisoned.store(true, Ordering::SeqCst);
            for batch in group {
                batch.reply.fail(IndexError::Internal(reason.clone()));
            }
            return Err(reason);
        }
    }
    for (batch, outcome) in group.into_iter().zip(outcomes) {
        match (batch.reply, outcome) {
            (Reply::Upsert(port), outcome) => {
                let _ = port.send(outcome);
            }
            (Reply::Delete(port), outcome) => {
                let _ = port.send(outcome.map(|_| ()));
            }
        }
    }
    pipeline
        .metrics
        .vector_index_items
        .with_label_values(&[&pipeline.name])
        .set(pipeline.core.len() as i64);

    maintain(pipeline, &mut writer, idle).await;
    pipeline
        .stats
        .lance_version
        .store(writer.store.version(), Ordering::Relaxed);
    pipeline
        .stats
        .fragments
        .store(writer.store.fragments() as u64, Ordering::Relaxed);
    Ok(())
}

/// Inserts the committed upserts' vectors into the graph (off the runtime).
async fn apply(pipeline: &Pipeline, rows: &[LogRow]) -> Result<(), String> {
    let dimension = pipeline.core.definition.dimension;
    let mut labels = Vec::new();
    let mut vectors = Vec::with_capacity(rows.len() * dimension);
    for row in rows {
        if let Some(vector) = &row.vector {
            labels.push(row.seq);
            vectors.extend_from_slice(vector);
        }
    }
    if labels.is_empty() {
        return Ok(());
    }
    let core = pipeline.core.clone();
    tokio::task::spawn_blocking(move || core.add_vectors(&vectors, &labels))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// After a commit: snapshot when due, drop superseded rows from Lance,
/// compact fragments, remove old versions. Failures are logged; the data
/// stays correct. Only what must see a quiet index runs here, under the
/// writer lock: the graph rebuild, the snapshot's copy of the graph (the
/// file is written by a background task) and the deletes; compaction and
/// version removal run beside the commits.
async fn maintain(pipeline: &Arc<Pipeline>, writer: &mut Writer, idle: bool) {
    let settings = &pipeline.settings;
    let (graph, tombstones) = pipeline.core.graph_size();
    if tombstones >= settings.rebuild_min_tombstones as u64
        && tombstones as f64 > settings.rebuild_tombstone_share * graph as f64
    {
        let core = pipeline.core.clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || core.rebuild()).await {
            Ok(Ok(())) => {
                tracing::info!(
                    index = %pipeline.name,
                    dropped = tombstones,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "graph rebuilt without tombstones"
                );
                // The snapshot on disk still holds them: replace it.
                writer.force_snapshot = true;
            }
            Ok(Err(err)) => tracing::warn!(index = %pipeline.name, %err, "graph rebuild failed"),
            Err(err) => tracing::warn!(index = %pipeline.name, %err, "graph rebuild failed"),
        }
        observe_maintenance(pipeline, "rebuild", started);
    }
    if pipeline.stats.snapshot_failed.swap(false, Ordering::SeqCst) {
        writer.force_snapshot = true;
    }
    // Replaying what a snapshot misses costs ~0.3 ms a row at restart, so
    // small indexes snapshot often (cheap) and large ones every tenth of
    // their size, at most every `snapshot_every` rows; an idle index
    // snapshots whatever is left. A graph small enough to be copied costs
    // the writer only the copy, so it snapshots every fortieth of its size
    // (a restart of a 50k-row index replays at most ~1,250 rows).
    let (graph, _) = pipeline.core.graph_size();
    let copyable =
        graph as usize * pipeline.core.definition.dimension * 4 <= SNAPSHOT_COPY_LIMIT_BYTES;
    let share = if copyable { 40 } else { 10 };
    let threshold = settings
        .snapshot_every
        .min(settings.snapshot_min_rows.max(graph as usize / share));
    let due = writer.force_snapshot
        || writer.rows_since_snapshot >= threshold
        || (idle && writer.rows_since_snapshot > 0);
    if due && !copyable {
        // Too big to copy (the copy would double the index's memory): write
        // it here, holding up this index's commits but not its searches.
        if !pipeline.stats.snapshot_running.load(Ordering::SeqCst) {
            let started = Instant::now();
            match write_snapshot(pipeline, writer.store.version()).await {
                Ok(()) => {
                    writer.rows_since_snapshot = 0;
                    writer.force_snapshot = false;
                }
                Err(err) => tracing::warn!(index = %pipeline.name, %err, "snapshot failed"),
            }
            observe_maintenance(pipeline, "snapshot_write", started);
        }
    } else if due && !pipeline.stats.snapshot_running.swap(true, Ordering::SeqCst) {
        let started = Instant::now();
        match start_snapshot(pipeline, writer.store.version()).await {
            Ok(()) => {
                writer.rows_since_snapshot = 0;
                writer.force_snapshot = false;
            }
            Err(err) => {
                pipeline
                    .stats
                    .snapshot_running
                    .store(false, Ordering::SeqCst);
                tracing::warn!(index = %pipeline.name, %err, "snapshot failed");
            }
        }
        observe_maintenance(pipeline, "snapshot_copy", started);
    }
    if writer.superseded.len() >= settings.cleanup_superseded {
        let started = Instant::now();
        // The newest row carries the seq high-water mark: never delete it.
        let keep = writer.next_seq.saturating_sub(1);
        let seqs: Vec<u64> = writer
            .superseded
            .iter()
            .copied()
            .filter(|s| *s != keep)
            .collect();
        match writer.store.delete_seqs(&seqs).await {
            Ok(commits) => {
                pipeline
                    .metrics
                    .lance_commits
                    .with_label_values(&[&format!("vectors/{}", pipeline.name)])
                    .inc_by(commits as u64);
                writer.superseded.retain(|s| *s == keep);
            }
            Err(err) => {
                tracing::warn!(index = %pipeline.name, %err, "removing superseded rows failed")
            }
        }
        observe_maintenance(pipeline, "delete_superseded", started);
    }
    let target = if writer.store.fragments() > store::MAX_FRAGMENTS_TOTAL {
        Some(store::MERGE_TARGET_ROWS)
    } else if writer.store.fragments_below(store::COMPACT_TARGET_ROWS) > settings.max_fragments {
        Some(store::COMPACT_TARGET_ROWS)
    } else {
        None
    };
    let retention = Duration::from_secs(settings.version_retention_secs);
    let aged_out = writer.last_write.is_some_and(|written| {
        let due = written + retention;
        Instant::now() >= due && writer.last_upkeep.is_none_or(|upkeep| upkeep < due)
    });
    let target = target.or((idle && aged_out).then_some(store::COMPACT_TARGET_ROWS));
    if let Some(target) = target {
        if start_lance_upkeep(pipeline, writer.store.dataset(), target) {
            writer.last_upkeep = Some(Instant::now());
        }
    }
}

/// Graphs whose vectors take more than this are snapshotted in place
/// rather than copied and written in the background.
const SNAPSHOT_COPY_LIMIT_BYTES: usize = 256 << 20;

fn observe_commit(pipeline: &Pipeline, stage: &str, started: Instant) {
    pipeline
        .metrics
        .vector_commit_duration
        .with_label_values(&[&pipeline.name, stage])
        .observe(started.elapsed().as_secs_f64());
}

fn observe_maintenance(pipeline: &Pipeline, step: &str, started: Instant) {
    pipeline
        .metrics
        .vector_maintenance_duration
        .with_label_values(&[&pipeline.name, step])
        .observe(started.elapsed().as_secs_f64());
}

/// Copies the graph (the caller holds the writer lock, so it is exactly
/// the committed state up to `lance_version`) and writes the copy in the
/// background. Commits go on meanwhile; the snapshot is installed only if
/// this incarnation still owns the index when the file is complete.
async fn start_snapshot(pipeline: &Arc<Pipeline>, lance_version: u64) -> Result<(), String> {
    let core = pipeline.core.clone();
    let (copy, max_seq) = tokio::task::spawn_blocking(move || {
        core.with_graph(|hnsw, max_seq| hnsw.try_clone().map(|copy| (copy, max_seq)))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let written = write_snapshot_copy(&pipeline, copy, lance_version, max_seq).await;
        if let Err(err) = written {
            tracing::warn!(index = %pipeline.name, %err, "snapshot failed");
            pipeline.stats.snapshot_failed.store(true, Ordering::SeqCst);
        }
        observe_maintenance(&pipeline, "snapshot_write", started);
        pipeline
            .stats
            .snapshot_running
            .store(false, Ordering::SeqCst);
    });
    Ok(())
}

async fn write_snapshot_copy(
    pipeline: &Pipeline,
    copy: Hnsw,
    lance_version: u64,
    max_seq: u64,
) -> Result<(), String> {
    let paths = pipeline.snapshot_paths.clone();
    let definition = pipeline.core.definition.clone();
    let tag = pipeline.generation;
    let prepared = tokio::task::spawn_blocking(move || {
        snapshot::prepare(&paths, tag, &copy, &definition, lance_version, max_seq)
    })
    .await
    .map_err(|e| e.to_string())??;
    let generation = pipeline.writer_lock.clone().lock_owned().await;
    if *generation != pipeline.generation || pipeline.poisoned.load(Ordering::SeqCst) {
        // A newer incarnation owns the files now.
        prepared.discard();
        return Ok(());
    }
    let meta = prepared.install(&pipeline.snapshot_paths)?;
    drop(generation);
    *pipeline.stats.snapshot_at.lock() = Some(meta.written_at);
    tracing::info!(
        index = %pipeline.name,
        vectors = meta.ntotal,
        lance_version = meta.lance_version,
        "snapshot written"
    );
    Ok(())
}

/// Compacts the Lance dataset, then removes its old versions, beside the
/// commits (one run at a time).
fn start_lance_upkeep(
    pipeline: &Arc<Pipeline>,
    mut dataset: lance::Dataset,
    target_rows: usize,
) -> bool {
    if pipeline.stats.upkeep_running.swap(true, Ordering::SeqCst) {
        return false;
    }
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        match store::compact(&mut dataset, target_rows).await {
            Ok(()) => pipeline
                .metrics
                .lance_commits
                .with_label_values(&[&format!("vectors/{}", pipeline.name)])
                .inc(),
            Err(err) => tracing::warn!(index = %pipeline.name, %err, "compaction failed"),
        }
        observe_maintenance(&pipeline, "compact", started);
        let started = Instant::now();
        let retention = Duration::from_secs(pipeline.settings.version_retention_secs);
        match store::remove_old_versions(&dataset, retention).await {
            Ok((versions, bytes)) => tracing::debug!(
                index = %pipeline.name,
                versions,
                bytes,
                "old Lance versions removed"
            ),
            Err(err) => {
                tracing::warn!(index = %pipeline.name, %err, "removing old versions failed")
            }
        }
        observe_maintenance(&pipeline, "remove_old_versions", started);
        pipeline.stats.upkeep_running.store(false, Ordering::SeqCst);
    });
    true
}

/// Writes a snapshot of the live graph in the foreground (graceful stop).
async fn write_snapshot(pipeline: &Pipeline, lance_version: u64) -> Result<(), String> {
    let core = pipeline.core.clone();
    let paths = pipeline.snapshot_paths.clone();
    let meta = tokio::task::spawn_blocking(move || {
        core.with_graph(|hnsw, max_seq| {
            snapshot::write(&paths, hnsw, &core.definition, lance_version, max_seq)
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    *pipeline.stats.snapshot_at.lock() = Some(meta.written_at);
    Ok(())
}

/// Builds the index from storage. Returns the pipeline and whether a
/// snapshot should be written soon (none was usable).
async fn load(arguments: &IndexArguments) -> Result<(Pipeline, bool), IndexError> {
    let definition = arguments.definition.clone();
    let name = definition.name.clone();
    let writer_lock = arguments.writer_lock.clone();
    let mut lock = writer_lock.clone().lock_owned().await;
    *lock += 1;
    let generation = *lock;
    let started = Instant::now();

    // The snapshot is read (and CRC-checked) while Lance is scanned; whether
    // it may be used is decided once Lance's version and seqs are known.
    let snapshot_paths = SnapshotPaths::new(&arguments.dir, &name);
    snapshot_paths.remove_temporary();
    let reading = {
        let paths = snapshot_paths.clone();
        let definition = definition.clone();
        tokio::task::spawn_blocking(move || snapshot::read(&paths, &definition))
    };

    let dataset = arguments.dir.join(format!("{name}.lance"));
    let (store, fallback) = VectorStore::open_or_create(&dataset, definition.dimension).await?;
    if let Some(note) = fallback {
        tracing::warn!(index = %name, %note, "opened an older Lance version");
    }

    // The live state: per id, the row with the largest seq.
    let mut metas = store.scan_meta().await?;
    metas.sort_by_key(|m| m.seq);
    let max_seq = metas.last().map_or(0, |m| m.seq);
    let mut rows: HashMap<String, Entry> = HashMap::with_capacity(metas.len());
    let mut superseded = Vec::new();
    for meta in metas {
        if let Some(old) = rows.remove(&meta.id) {
            superseded.push(old.seq);
        }
        if meta.deleted {
            superseded.push(meta.seq);
        } else {
            let metadata = meta.metadata.unwrap_or_else(|| Arc::from("{}"));
            rows.insert(
                meta.id,
                Entry {
                    seq: meta.seq,
                    metadata,
                },
            );
        }
    }

    let scanned_ms = started.elapsed().as_millis() as u64;
    let covering = Covering {
        lance_version: store.version(),
        lance_max_seq: max_seq,
    };
    let loaded = reading
        .await
        .map_err(|e| IndexError::Internal(e.to_string()))?
        .and_then(|(hnsw, meta)| {
            snapshot::check_covering(&meta, &covering)?;
            Ok((hnsw, meta))
        });
    let (hnsw, after_seq, snapshot_at) = match loaded {
        Ok((hnsw, meta)) => (hnsw, Some(meta.max_seq), Some(meta.written_at)),
        Err(reason) => {
            if !rows.is_empty() {
                tracing::warn!(index = %name, %reason, items = rows.len(), "no usable snapshot; rebuilding from Lance");
            }
            // A rejected snapshot must never be trusted later, when Lance's
            // version and seqs may have grown past it again.
            snapshot_paths.remove();
            (
                Hnsw::new(definition.dimension, definition.metric, definition.hnsw)?,
                None,
                None,
            )
        }
    };
    let snapshot_ms = started.elapsed().as_millis() as u64;
    let core = Arc::new(Core::new(
        definition.clone(),
        hnsw,
        arguments.settings.result_cache_entries,
        arguments.hot_fields.clone(),
    ));

    // Replay (or rebuild): live rows the graph does not have yet.
    let live: std::collections::HashSet<u64> = rows.values().map(|e| e.seq).collect();
    let mut replayed = 0usize;
    let mut stream = store.scan_vectors(after_seq).await?;
    while let Some((seqs, vectors)) = stream.try_next().await? {
        let (seqs, vectors) = keep_live(&live, seqs, vectors, definition.dimension);
        if seqs.is_empty() {
            continue;
        }
        replayed += seqs.len();
        let core = core.clone();
        tokio::task::spawn_blocking(move || core.add_vectors(&vectors, &seqs))
            .await
            .map_err(|e| IndexError::Internal(e.to_string()))??;
    }
    drop(stream);
    core.install(rows, max_seq);
    let replayed_ms = started.elapsed().as_millis() as u64;
    // The lookups filtered searches used before a restart, built now rather
    // than by the first search after it.
    let prepared = core.clone();
    tokio::task::spawn_blocking(move || prepared.prepare_filters())
        .await
        .map_err(|e| IndexError::Internal(e.to_string()))??;
    tracing::info!(
        index = %name,
        scanned_ms,
        snapshot_ms,
        replayed,
        replayed_ms,
        prepared_ms = started.elapsed().as_millis() as u64,
        "load stages (cumulative)"
    );

    let metrics = arguments.metrics.clone();
    metrics
        .vector_index_items
        .with_label_values(&[&name])
        .set(core.len() as i64);
    let stats = Stats::default();
    stats
        .lance_version
        .store(store.version(), Ordering::Relaxed);
    stats
        .fragments
        .store(store.fragments() as u64, Ordering::Relaxed);
    *stats.snapshot_at.lock() = snapshot_at;
    // Anything replayed would be replayed again at the next start: snapshot it.
    let snapshot_due = replayed > 0;
    let pipeline = Pipeline {
        name,
        core,
        writer: tokio::sync::Mutex::new(Writer {
            store,
            next_seq: max_seq + 1,
            rows_since_snapshot: replayed,
            force_snapshot: snapshot_due,
            superseded,
            last_write: None,
            last_upkeep: None,
        }),
        writer_lock,
        generation,
        poisoned: std::sync::atomic::AtomicBool::new(false),
        snapshot_paths,
        settings: arguments.settings.clone(),
        stats,
        metrics,
    };
    Ok((pipeline, snapshot_due))
}

fn keep_live(
    live: &std::collections::HashSet<u64>,
    seqs: Vec<u64>,
    vectors: Vec<f32>,
    dimension: usize,
) -> (Vec<u64>, Vec<f32>) {
    if seqs.iter().all(|s| live.contains(s)) {
        return (seqs, vectors);
    }
    let mut kept_seqs = Vec::new();
    let mut kept = Vec::new();
    for (i, seq) in seqs.into_iter().enumerate() {
        if live.contains(&seq) {
            kept_seqs.push(seq);
            kept.extend_from_slice(&vectors[i * dimension..(i + 1) * dimension]);
        }
    }
    (kept_seqs, kept)
}
