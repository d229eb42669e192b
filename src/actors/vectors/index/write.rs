//! The write path: validate, embed texts off the mailbox, queue, and one
//! group commit at a time — Lance append (synced in the `fsync` mode),
//! graph insert beside it, publish, acknowledge — then the upkeep step.
//!
//! A write is acknowledged once, and only after the Lance commit that holds
//! it. Whatever goes wrong in a commit — an append or graph insert that
//! fails, a sync that fails, a panic anywhere — its callers get an error and
//! the actor fails: the supervisor reloads the index from Lance, which has
//! every write that was committed (acknowledged or not) and nothing else.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ractor::{ActorRef, RpcReplyPort};
use serde_json::Value;

use super::{actor_name, upkeep, IndexArguments, IndexMessage, Pipeline};
use crate::actors::embed::{self, EmbedMessage};
use crate::actors::vectors::core::Applied;
use crate::actors::vectors::hnsw::HnswError;
use crate::actors::vectors::store::{LogRow, StoreError, VectorStore};
use crate::actors::vectors::IndexError;
use crate::config::VectorSettings;
use crate::domain::vectors::{
    prepare_metadata, prepare_vector, validate_items, IndexDefinition, ItemInput, UpsertOutcome,
    ValidationError,
};

/// Why a commit did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A newer incarnation (or a drop) owns the index, or this one has
    /// ended: nothing was written, nothing acknowledged.
    #[error("a newer incarnation owns the index; nothing was written")]
    Superseded,
    #[error("Lance append failed, nothing acknowledged: {0}")]
    Append(#[source] Arc<StoreError>),
    #[error("graph insert failed after the Lance append: {0}")]
    Apply(#[source] HnswError),
    #[error("the graph insert task failed: {0}")]
    ApplyTask(String),
    #[error("the commit task panicked: {0}")]
    Panicked(String),
}

impl CommitError {
    /// Whether the in-memory index may no longer match Lance, so the actor
    /// must fail and reload.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, CommitError::Superseded)
    }
}

/// What only the commit task touches (one at a time, under the lock).
pub(super) struct Writer {
    pub store: VectorStore,
    pub next_seq: u64,
    pub rows_since_snapshot: usize,
    /// Write a snapshot at the next upkeep step, whatever the count.
    pub force_snapshot: bool,
    /// Seqs of rows that no longer matter (superseded or delete markers).
    pub superseded: Vec<u64>,
    /// When this incarnation last appended to Lance, and last started
    /// compaction + old-version removal: an index that stops being written
    /// gets one more removal once its last versions have aged past the
    /// retention, instead of keeping them for good.
    pub last_write: Option<Instant>,
    pub last_upkeep: Option<Instant>,
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
        text: Option<Arc<str>>,
    },
    Delete {
        id: String,
    },
    /// An upsert that applies only if the item's live row is still
    /// `expected_seq` (a reindex writing back what it read, a patch
    /// merged into what it read: a write since then wins, and the caller
    /// hears which ids were skipped).
    IfUnchanged {
        id: String,
        expected_seq: u64,
        vector: Vec<f32>,
        metadata: Arc<str>,
        text: Option<Arc<str>>,
    },
    /// A delete that applies only if the item's live row is still
    /// `expected_seq` (a delete by filter: an item rewritten since it was
    /// selected is selected again, or not).
    DeleteIfUnchanged {
        id: String,
        expected_seq: u64,
    },
}

enum Reply {
    Upsert(RpcReplyPort<Result<UpsertOutcome, IndexError>>),
    Delete(RpcReplyPort<Result<(), IndexError>>),
    Conditional(RpcReplyPort<Result<Conditional, IndexError>>),
}

/// What a batch of conditional changes did.
#[derive(Debug, Clone, Default)]
pub struct Conditional {
    /// Changes written.
    pub written: usize,
    /// Ids whose live row was no longer the one expected: nothing written.
    pub skipped: Vec<String>,
    /// The Lance version holding the written rows.
    pub version: u64,
}

/// One conditional change (see [`Batch::conditional`]).
pub(crate) enum Change {
    Upsert(Reembedded),
    Delete { id: String, expected_seq: u64 },
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
            Reply::Conditional(port) => {
                let _ = port.send(Err(err));
            }
        }
    }
}

/// An item written back (by a reindex with a new vector, by a patch with
/// merged fields), if its live row is still `expected_seq`.
pub(crate) struct Reembedded {
    pub id: String,
    pub expected_seq: u64,
    pub vector: Vec<f32>,
    pub metadata: Arc<str>,
    pub text: Option<Arc<str>>,
}

impl From<Reembedded> for Op {
    fn from(item: Reembedded) -> Self {
        Op::IfUnchanged {
            id: item.id,
            expected_seq: item.expected_seq,
            vector: item.vector,
            metadata: item.metadata,
            text: item.text,
        }
    }
}

impl Batch {
    /// Conditional upserts: the outcome's `updated` counts those written.
    pub(crate) fn reembed(
        items: Vec<Reembedded>,
        reply: RpcReplyPort<Result<UpsertOutcome, IndexError>>,
    ) -> Self {
        Self {
            ops: items.into_iter().map(Op::from).collect(),
            reply: Reply::Upsert(reply),
        }
    }

    /// Changes that apply only to items still as they were read: the reply
    /// counts those written and names those skipped.
    pub(crate) fn conditional(
        changes: Vec<Change>,
        reply: RpcReplyPort<Result<Conditional, IndexError>>,
    ) -> Self {
        Self {
            ops: changes
                .into_iter()
                .map(|change| match change {
                    Change::Upsert(item) => Op::from(item),
                    Change::Delete { id, expected_seq } => {
                        Op::DeleteIfUnchanged { id, expected_seq }
                    }
                })
                .collect(),
            reply: Reply::Conditional(reply),
        }
    }

    pub(super) fn delete(id: String, reply: RpcReplyPort<Result<(), IndexError>>) -> Self {
        Self {
            ops: vec![Op::Delete { id }],
            reply: Reply::Delete(reply),
        }
    }
}

/// Validates an upsert batch in full (nothing is written unless every item
/// is valid), embeds its texts off the mailbox, then queues it.
pub(super) fn prepare_upsert(
    arguments: &Arc<IndexArguments>,
    myself: &ActorRef<IndexMessage>,
    items: Vec<ItemInput>,
    reply: RpcReplyPort<Result<UpsertOutcome, IndexError>>,
) {
    if let Err(err) = validate_items(&items, arguments.settings.max_batch) {
        let _ = reply.send(Err(err.into()));
        return;
    }
    // Only items without a vector are embedded; a text beside a vector is
    // stored for keyword search as it is.
    let texts: Vec<String> = items
        .iter()
        .filter(|i| i.vector.is_none())
        .filter_map(|i| i.text.clone())
        .collect();
    let enqueue =
        |myself: &ActorRef<IndexMessage>, prepared: Result<Vec<Op>, IndexError>, reply| {
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
        };
    if texts.is_empty() {
        let prepared = prepare_items(
            &arguments.definition,
            &arguments.settings,
            items,
            Vec::new(),
        );
        enqueue(myself, prepared, reply);
        return;
    }
    let arguments = arguments.clone();
    let myself = myself.clone();
    tokio::spawn(async move {
        let prepared = match embed_texts(&arguments, texts).await {
            Ok(vectors) => {
                prepare_items(&arguments.definition, &arguments.settings, items, vectors)
            }
            Err(err) => Err(err),
        };
        enqueue(&myself, prepared, reply);
    });
}

/// Embeds `texts` through the `embed` actor, in chunks it accepts.
pub(super) async fn embed_texts(
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
                    analysis: Some(arguments.definition.analysis),
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
        let text: Option<Arc<str>> = item.text.map(Arc::from);
        let raw = match (item.vector, &text) {
            (Some(vector), _) => vector,
            (None, Some(_)) => embedded
                .next()
                .ok_or_else(|| IndexError::Internal("embedder returned too few vectors".into()))?,
            (None, None) => {
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
        if definition.name == crate::actors::matrix::WORKERS {
            // The matrix and the fill validator read these fields typed.
            crate::domain::workers::check_fields(&metadata).map_err(|(name, reason)| {
                ValidationError::InvalidMetadata {
                    field: format!("items[{i}].metadata.{name}"),
                    reason,
                }
            })?;
        }
        let metadata: Arc<str> = Value::Object(metadata).to_string().into();
        ops.push(Op::Upsert {
            id: item.id,
            vector,
            metadata,
            text,
        });
    }
    Ok(ops)
}

/// One group commit, then the upkeep step. Replies to every writer in the
/// group: with its outcome once the commit is durable, or with an error.
/// An `Err` that is fatal means the in-memory index may no longer match
/// Lance (the actor must reload).
pub(super) async fn commit(
    pipeline: &Arc<Pipeline>,
    group: Vec<Batch>,
    idle: bool,
) -> Result<(), CommitError> {
    let fence = pipeline.writer_fence().await;
    if !pipeline.current() {
        // This incarnation has ended, or a newer one has read Lance:
        // writing now would reuse its seqs. Nothing is written or acked.
        for batch in group {
            batch.reply.fail(IndexError::Unavailable);
        }
        drop(fence);
        return Err(CommitError::Superseded);
    }
    let mut writer = pipeline.writer.lock().await;

    let (rows, planned) = plan_rows(pipeline, &mut writer, &group);

    // The graph insert runs while Lance writes: the new labels stay
    // invisible until `publish`, and if the append fails the index is
    // reloaded from Lance anyway.
    let append = async {
        let started = Instant::now();
        let committed = writer.store.append(&rows).await;
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
        let err = Arc::new(err);
        for batch in group {
            batch.reply.fail(IndexError::Storage(err.clone()));
        }
        // Whether Lance kept part of it is unknown, and seqs were consumed:
        // reload from Lance rather than guess.
        pipeline.poisoned.store(true, Ordering::SeqCst);
        return Err(CommitError::Append(err));
    }
    if !rows.is_empty() {
        writer.last_write = Some(Instant::now());
        pipeline
            .metrics
            .lance_commits
            .with_label_values(&[&format!("vectors/{}", pipeline.name)])
            .inc();
        if pipeline.fence.panic_in_commit.swap(false, Ordering::SeqCst) {
            // The fault the chaos harness and the tests use: durable in
            // Lance, not yet visible, not acknowledged.
            panic!(
                "injected fault: panic in the commit task of '{}'",
                actor_name(&pipeline.name)
            );
        }
    }
    if let Err(err) = applied {
        pipeline.poisoned.store(true, Ordering::SeqCst);
        let message = err.to_string();
        for batch in group {
            batch.reply.fail(IndexError::Internal(message.clone()));
        }
        return Err(err);
    }

    // Durable: now make it visible, then acknowledge.
    publish(pipeline, &mut writer, &rows);
    let version = writer.store.version();
    // Before the replies: a caller that reads the index's info next sees
    // at least the version its write answered with (upkeep may commit
    // more below, and stores again).
    pipeline
        .stats
        .lance_version
        .store(version, Ordering::Relaxed);
    for (batch, (outcome, skipped)) in group.into_iter().zip(planned) {
        match batch.reply {
            Reply::Upsert(port) => {
                let _ = port.send(outcome);
            }
            Reply::Delete(port) => {
                let _ = port.send(outcome.map(|_| ()));
            }
            Reply::Conditional(port) => {
                let _ = port.send(outcome.map(|outcome| Conditional {
                    written: outcome.updated,
                    skipped,
                    version,
                }));
            }
        }
    }
    pipeline
        .metrics
        .vector_index_items
        .with_label_values(&[&pipeline.name])
        .set(pipeline.core.len() as i64);

    upkeep::after_commit(pipeline, &mut writer, idle).await;
    // Upkeep commits (compaction, removal of superseded rows) change no
    // live item; the newest version is the one to cite, as older ones are
    // removed by retention.
    pipeline.core.set_version(writer.store.version());
    pipeline
        .stats
        .lance_version
        .store(writer.store.version(), Ordering::Relaxed);
    pipeline
        .stats
        .fragments
        .store(writer.store.fragments() as u64, Ordering::Relaxed);
    drop(writer);
    drop(fence);
    Ok(())
}

/// Decides every op against the live state plus earlier ops of the group,
/// and gives each written row the next seq. Returns the rows and each
/// batch's outcome with the ids its conditional ops skipped (a
/// conditional op written counts as `updated`).
#[allow(clippy::type_complexity)]
fn plan_rows(
    pipeline: &Pipeline,
    writer: &mut Writer,
    group: &[Batch],
) -> (
    Vec<LogRow>,
    Vec<(Result<UpsertOutcome, IndexError>, Vec<String>)>,
) {
    let mut rows: Vec<LogRow> = Vec::new();
    let mut outcomes = Vec::with_capacity(group.len());
    let mut live_in_group: HashMap<String, bool> = HashMap::new();
    for batch in group {
        let mut outcome = UpsertOutcome::default();
        let mut failure = None;
        let mut skipped = Vec::new();
        for op in &batch.ops {
            let id = match op {
                Op::Upsert { id, .. }
                | Op::Delete { id }
                | Op::IfUnchanged { id, .. }
                | Op::DeleteIfUnchanged { id, .. } => id,
            };
            // Whether a conditional op's item is still as it was read.
            let unchanged = |expected_seq: u64| {
                !live_in_group.contains_key(id)
                    && pipeline.core.get(id).is_some_and(|e| e.seq == expected_seq)
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
                    text,
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
                        text: text.clone(),
                    });
                }
                Op::IfUnchanged {
                    id,
                    expected_seq,
                    vector,
                    metadata,
                    text,
                } => {
                    if !unchanged(*expected_seq) {
                        skipped.push(id.clone());
                        continue;
                    }
                    outcome.updated += 1;
                    live_in_group.insert(id.clone(), true);
                    rows.push(LogRow {
                        id: id.clone(),
                        seq: writer.next_seq,
                        vector: Some(vector.clone()),
                        metadata: Some(metadata.clone()),
                        text: text.clone(),
                    });
                }
                Op::DeleteIfUnchanged { id, expected_seq } => {
                    if !unchanged(*expected_seq) {
                        skipped.push(id.clone());
                        continue;
                    }
                    outcome.updated += 1;
                    live_in_group.insert(id.clone(), false);
                    rows.push(LogRow {
                        id: id.clone(),
                        seq: writer.next_seq,
                        vector: None,
                        metadata: None,
                        text: None,
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
                        text: None,
                    });
                }
            }
            writer.next_seq += 1;
        }
        outcomes.push((failure.map_or(Ok(outcome), Err), skipped));
    }
    (rows, outcomes)
}

/// Makes committed rows visible, in seq order, and notes what they
/// superseded for the upkeep step.
fn publish(pipeline: &Pipeline, writer: &mut Writer, rows: &[LogRow]) {
    let max_seq = writer.next_seq.saturating_sub(1);
    let writes: Vec<Applied<'_>> = rows
        .iter()
        .map(|row| match &row.metadata {
            Some(metadata) if row.vector.is_some() => Applied::Upsert {
                id: &row.id,
                seq: row.seq,
                metadata: metadata.clone(),
                text: row.text.clone(),
            },
            _ => Applied::Delete { id: &row.id },
        })
        .collect();
    // The store has just appended these rows: its version is what the
    // live items now are.
    let superseded = pipeline
        .core
        .publish(&writes, max_seq, writer.store.version());
    writer.superseded.extend(superseded);
    writer
        .superseded
        .extend(rows.iter().filter(|r| r.vector.is_none()).map(|r| r.seq));
    writer.rows_since_snapshot += rows.len();
}

/// Inserts the rows' vectors into the graph (off the runtime), unpublished.
async fn apply(pipeline: &Pipeline, rows: &[LogRow]) -> Result<(), CommitError> {
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
        .map_err(|e| CommitError::ApplyTask(e.to_string()))?
        .map_err(CommitError::Apply)
}

pub(super) fn observe_commit(pipeline: &Pipeline, stage: &str, started: Instant) {
    pipeline
        .metrics
        .vector_commit_duration
        .with_label_values(&[&pipeline.name, stage])
        .observe(started.elapsed().as_secs_f64());
}

impl Pipeline {
    /// The fence's writer lock: held by one commit (or load) at a time.
    async fn writer_fence(&self) -> tokio::sync::MutexGuard<'_, u64> {
        self.fence.writer.lock().await
    }
}
