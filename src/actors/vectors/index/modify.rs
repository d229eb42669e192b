//! Changing items in place: a patch of one item, an update or a delete of
//! the items some ids or a filter select.
//!
//! A change runs on its own task, off the mailbox: it selects the live
//! items, merges the change into each (metadata fields set or removed; a
//! new text embedded unless a vector comes with it; the stored vector and
//! text read back from Lance when they stay), and queues the result for
//! the group commit as conditional writes — each applies only if the item's
//! live row is still the one read. An item another write changed in
//! between is read and merged again (three tries), so a concurrent write
//! is never overwritten by a merge of what it replaced. Like any write, a
//! change is acknowledged once the Lance commit that holds it is durable.
//!
//! Only a new text is embedded: a change of metadata keeps the vector as
//! stored, bit for bit.

use std::collections::HashSet;
use std::sync::Arc;

use ractor::{ActorRef, RpcReplyPort};
use serde_json::{Map, Value};

use super::write::{embed_texts, Batch, Change, Conditional, Reembedded};
use super::{IndexArguments, IndexMessage, Pipeline};
use crate::actors::vectors::core::Entry;
use crate::actors::vectors::store;
use crate::actors::vectors::IndexError;
use crate::domain::filter::PreparedFilter;
use crate::domain::items::{merged, ChangeError, ChangeOutcome};
use crate::domain::vectors::{prepare_metadata, prepare_vector, ValidationError};

/// Tries per item before a change gives up on one that keeps changing.
const TRIES: usize = 3;

/// Which items a change acts on.
#[derive(Debug, Clone)]
pub enum Target {
    /// One item, which must exist (a patch).
    One(String),
    /// Those of the ids that exist.
    Ids(Vec<String>),
    /// The live items a filter selects.
    Filter(PreparedFilter),
}

/// What a change does to each item.
#[derive(Debug, Clone)]
pub enum ChangeKind {
    /// Set (or, with `null`, remove) metadata fields; replace the text
    /// (embedded unless `vector` is given) or the vector.
    Patch {
        metadata: Map<String, Value>,
        text: Option<String>,
        vector: Option<Vec<f32>>,
    },
    Delete,
}

/// A change, checked by the use case.
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    pub target: Target,
    pub change: ChangeKind,
    /// More than `max_items` selected items are refused unless this is set.
    pub allow_large: bool,
    pub max_items: usize,
}

/// Runs `request` on its own task and replies when it is durable.
pub(super) fn start(
    arguments: Arc<IndexArguments>,
    pipeline: Arc<Pipeline>,
    myself: ActorRef<IndexMessage>,
    request: ChangeRequest,
    reply: RpcReplyPort<Result<ChangeOutcome, IndexError>>,
) {
    tokio::spawn(async move {
        let _ = reply.send(run(&arguments, &pipeline, &myself, request).await);
    });
}

async fn run(
    arguments: &IndexArguments,
    pipeline: &Arc<Pipeline>,
    myself: &ActorRef<IndexMessage>,
    request: ChangeRequest,
) -> Result<ChangeOutcome, IndexError> {
    // Counted before anything is collected: a filter over millions of
    // items is refused at the cost of a count.
    if let (Target::Filter(filter), false) = (&request.target, request.allow_large) {
        let core = pipeline.core.clone();
        let filter = filter.clone();
        let (_, matching) = tokio::task::spawn_blocking(move || core.count(Some(&filter), &[]))
            .await
            .map_err(|e| IndexError::Internal(e.to_string()))??;
        if matching > request.max_items {
            return Err(ChangeError::TooLarge {
                max: request.max_items,
                got: matching,
            }
            .into());
        }
    }
    let (mut version, mut selected) = select(pipeline, &request.target, None).await?;
    if let Target::One(id) = &request.target {
        if selected.is_empty() {
            return Err(IndexError::ItemNotFound {
                index: pipeline.name.clone(),
                id: id.clone(),
            });
        }
    }
    if selected.len() > request.max_items && !request.allow_large {
        return Err(ChangeError::TooLarge {
            max: request.max_items,
            got: selected.len(),
        }
        .into());
    }
    let matched = selected.len();
    // Every merge is checked before the first group commits: a field one
    // item cannot take refuses the whole change, with nothing written.
    if let ChangeKind::Patch { metadata, .. } = &request.change {
        for (id, entry) in &selected {
            let held = match serde_json::from_str::<Value>(&entry.metadata) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            check(arguments, merged(&held, metadata).0, id)?;
        }
    }
    // A new vector or text is the same for every item: checked, and
    // embedded, once.
    let fresh = fresh_vector(arguments, &request.change).await?;
    let mut changed = 0;
    // After a group has committed, a failure says how much is durable.
    let partly = |changed: usize, err: IndexError| {
        if changed == 0 {
            err
        } else {
            IndexError::PartlyChanged {
                changed,
                source: Box::new(err),
            }
        }
    };
    for _ in 0..TRIES {
        let mut skipped = Vec::new();
        for chunk in selected.chunks(arguments.settings.max_batch.max(1)) {
            let (changes, unreadable) =
                prepare(arguments, pipeline, &request.change, &fresh, chunk)
                    .await
                    .map_err(|err| partly(changed, err))?;
            skipped.extend(unreadable);
            if changes.is_empty() {
                continue;
            }
            let outcome = commit(myself, changes)
                .await
                .map_err(|err| partly(changed, err))?;
            changed += outcome.written;
            version = outcome.version;
            skipped.extend(outcome.skipped);
        }
        if skipped.is_empty() {
            return Ok(ChangeOutcome {
                matched,
                changed,
                lance_version: version.max(pipeline.core.version()),
            });
        }
        // Read again what changed meanwhile: still selected, still there.
        let retry: HashSet<String> = skipped.into_iter().collect();
        (_, selected) = select(pipeline, &request.target, Some(&retry))
            .await
            .map_err(|err| partly(changed, err))?;
        if selected.is_empty() {
            if let (Target::One(id), 0) = (&request.target, changed) {
                // Deleted meanwhile.
                return Err(IndexError::ItemNotFound {
                    index: pipeline.name.clone(),
                    id: id.clone(),
                });
            }
            return Ok(ChangeOutcome {
                matched,
                changed,
                lance_version: pipeline.core.version(),
            });
        }
    }
    Err(ChangeError::Conflict {
        changed,
        left: selected.len(),
    }
    .into())
}

/// The live items `target` selects (of `only`, if given), and the version.
async fn select(
    pipeline: &Arc<Pipeline>,
    target: &Target,
    only: Option<&HashSet<String>>,
) -> Result<(u64, Vec<(String, Entry)>), IndexError> {
    let core = pipeline.core.clone();
    let target = target.clone();
    let only = only.cloned();
    tokio::task::spawn_blocking(move || {
        let (version, mut items) = match &target {
            Target::One(id) => core.select_ids(std::slice::from_ref(id)),
            Target::Ids(ids) => core.select_ids(ids),
            Target::Filter(filter) => core.select(filter)?,
        };
        if let Some(only) = &only {
            items.retain(|(id, _)| only.contains(id));
        }
        Ok((version, items))
    })
    .await
    .map_err(|e| IndexError::Internal(e.to_string()))?
}

/// The vector a patch sets on every item: its own, or its text embedded.
async fn fresh_vector(
    arguments: &IndexArguments,
    change: &ChangeKind,
) -> Result<Option<Vec<f32>>, IndexError> {
    let ChangeKind::Patch { text, vector, .. } = change else {
        return Ok(None);
    };
    let definition = &arguments.definition;
    let raw = match (vector, text) {
        (Some(vector), _) => vector.clone(),
        (None, Some(text)) => embed_texts(arguments, vec![text.clone()])
            .await?
            .pop()
            .ok_or_else(|| IndexError::Internal("embedder returned no vector".into()))?,
        (None, None) => return Ok(None),
    };
    Ok(Some(prepare_vector(
        raw,
        definition.dimension,
        definition.metric,
        "vector",
    )?))
}

/// The conditional writes of one chunk, and the ids whose stored row was
/// gone (superseded meanwhile: read again). An item the change leaves as
/// it is gets no write.
async fn prepare(
    arguments: &IndexArguments,
    pipeline: &Pipeline,
    change: &ChangeKind,
    fresh: &Option<Vec<f32>>,
    chunk: &[(String, Entry)],
) -> Result<(Vec<Change>, Vec<String>), IndexError> {
    let (metadata, text) = match change {
        ChangeKind::Delete => {
            let deletes = chunk
                .iter()
                .map(|(id, entry)| Change::Delete {
                    id: id.clone(),
                    expected_seq: entry.seq,
                })
                .collect();
            return Ok((deletes, Vec::new()));
        }
        ChangeKind::Patch { metadata, text, .. } => (metadata, text),
    };
    let mut merges = Vec::with_capacity(chunk.len());
    for (id, entry) in chunk {
        let held = match serde_json::from_str::<Value>(&entry.metadata) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let (fields, fields_changed) = merged(&held, metadata);
        if !fields_changed && fresh.is_none() && text.is_none() {
            continue;
        }
        let fields = check(arguments, fields, id)?;
        merges.push((id, entry.seq, fields));
    }
    // What stays as stored is read back: the vector (unless a new one
    // comes), the text (unless a new one comes).
    let needs_rows = fresh.is_none() || text.is_none();
    let stored = if needs_rows && !merges.is_empty() {
        let dataset = pipeline.writer.lock().await.store.snapshot();
        let seqs: Vec<u64> = merges.iter().map(|(_, seq, _)| *seq).collect();
        store::rows_at(&dataset, &seqs, arguments.definition.dimension).await?
    } else {
        Default::default()
    };
    let mut changes = Vec::with_capacity(merges.len());
    let mut gone = Vec::new();
    for (id, seq, fields) in merges {
        let row = stored.get(&seq);
        if needs_rows && row.is_none() {
            gone.push(id.clone());
            continue;
        }
        let vector = match (fresh, row) {
            (Some(vector), _) => vector.clone(),
            (None, Some(row)) => row.vector.clone(),
            (None, None) => unreachable!("rows were read when no vector is given"),
        };
        let text = match (text, row) {
            (Some(text), _) => Some(Arc::from(text.as_str())),
            (None, row) => row.and_then(|r| r.text.clone()),
        };
        changes.push(Change::Upsert(Reembedded {
            id: id.clone(),
            expected_seq: seq,
            vector,
            metadata: Value::Object(fields).to_string().into(),
            text,
        }));
    }
    Ok((changes, gone))
}

/// Checks merged metadata as an add would: an object within the size, a
/// readable `location`, and in `workers` the typed worker fields.
fn check(
    arguments: &IndexArguments,
    fields: Map<String, Value>,
    id: &str,
) -> Result<Map<String, Value>, IndexError> {
    let field = format!("items[{}].metadata", crate::domain::shown(id, 64));
    let fields = prepare_metadata(
        Some(Value::Object(fields)),
        arguments.settings.max_metadata_bytes,
        &field,
    )?;
    if arguments.definition.name == crate::actors::matrix::WORKERS {
        crate::domain::workers::check_fields(&fields).map_err(|(name, reason)| {
            ValidationError::InvalidMetadata {
                field: format!("{field}.{name}"),
                reason,
            }
        })?;
    }
    Ok(fields)
}

/// Queues conditional writes for the group commit and waits until durable.
async fn commit(
    myself: &ActorRef<IndexMessage>,
    changes: Vec<Change>,
) -> Result<Conditional, IndexError> {
    let (port, written) = ractor::concurrency::oneshot();
    myself
        .send_message(IndexMessage::Enqueue(Batch::conditional(
            changes,
            port.into(),
        )))
        .map_err(|_| IndexError::Unavailable)?;
    written.await.map_err(|_| IndexError::Unavailable)?
}
