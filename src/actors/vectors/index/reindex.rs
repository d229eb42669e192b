//! Moving an index to the current analysis in place
//! (`POST /v1/admin/indexes/{name}/reindex`).
//!
//! The catalog records the move in the index's definition — `analysis`
//! becomes the current one, `reindex` says which it was — and restarts the
//! index. From that load on, the keyword index (rebuilt from the texts in
//! Lance at every load), the queries and every new write use the new
//! analysis. What is left are the vectors the built-in model of the old
//! analysis made from the items' texts. Each incarnation that loads an
//! index whose definition still records the move runs one pass over its
//! live items:
//!
//! - an item whose vector is, within rounding, the old built-in model's
//!   embedding of its text is embedded again (by the embedder, with the new
//!   analysis) and written back with its text and metadata unchanged;
//! - any other vector (one a client gave, one Ollama made) stays.
//!
//! A write back goes through the group commit like any write, so it is
//! durable before it counts, but only if the item's live row is still the
//! one the pass read: a client's write meanwhile wins. The pass is
//! therefore idempotent — an incarnation that dies midway (a panic, a kill)
//! leaves the next one the items still left — and never overwrites an
//! acknowledged write. When it ends, the catalog clears the record.

use std::sync::Arc;

use ractor::ActorRef;

use super::write::{embed_texts, Batch, Reembedded};
use super::{IndexArguments, IndexMessage, Pipeline};
use crate::actors::vectors::catalog::{self, VectorCatalogMessage};
use crate::actors::vectors::store;
use crate::actors::vectors::IndexError;
use crate::domain::embedding::HashEmbedder;
use crate::domain::vectors::{prepare_vector, Reindex, ReindexProgress, ReindexState};

/// The cosine above which a stored vector is taken for the old model's
/// embedding of its text (fp16 storage rounds to about 0.99999).
const SAME_VECTOR: f32 = 0.999;

/// Runs this incarnation's pass and reports it in the pipeline's progress.
pub(super) async fn run(
    arguments: Arc<IndexArguments>,
    pipeline: Arc<Pipeline>,
    myself: ActorRef<IndexMessage>,
    record: Reindex,
) {
    let name = pipeline.name.clone();
    *pipeline.reindex.lock() = Some(ReindexProgress {
        from: record.from,
        to: arguments.definition.analysis,
        state: ReindexState::Running,
        started_at: record.started_at,
        to_reembed: 0,
        reembedded: 0,
        skipped: 0,
        error: None,
    });
    let outcome = pass(&arguments, &pipeline, &myself, record).await;
    let cleared = match &outcome {
        Ok(()) => arguments
            .directory
            .call(
                catalog::NAME,
                |reply| VectorCatalogMessage::ReindexDone {
                    name: name.clone(),
                    reply,
                },
                arguments.call_timeout,
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|cleared| cleared.map_err(|e| e.to_string())),
        Err(_) => Ok(()),
    };
    let mut progress = pipeline.reindex.lock();
    let Some(progress) = progress.as_mut() else {
        return;
    };
    match (outcome, cleared) {
        (Ok(()), Ok(())) => {
            progress.state = ReindexState::Done;
            tracing::info!(index = %name, reembedded = progress.reembedded, skipped = progress.skipped, "reindex done");
        }
        (Err(err), _) | (Ok(()), Err(err)) => {
            progress.state = ReindexState::Failed;
            tracing::warn!(index = %name, %err, "reindex pass stopped; the next load of the index resumes it");
            progress.error = Some(err);
        }
    }
}

/// Rounds until no write back was skipped: an item a client wrote while a
/// round ran is looked at again — a patch of its metadata keeps the old
/// model's vector, which the next round re-embeds (at most three rounds;
/// a load resumes whatever is left).
async fn pass(
    arguments: &Arc<IndexArguments>,
    pipeline: &Arc<Pipeline>,
    myself: &ActorRef<IndexMessage>,
    record: Reindex,
) -> Result<(), String> {
    for _ in 0..3 {
        if round(arguments, pipeline, myself, record).await? == 0 {
            return Ok(());
        }
    }
    Err("items kept changing while they were re-embedded; the next load goes on".into())
}

/// One round: find the items the old model embedded, re-embed them in
/// chunks, write each chunk back conditionally. Returns how many write
/// backs were skipped (the item changed since it was read).
async fn round(
    arguments: &Arc<IndexArguments>,
    pipeline: &Arc<Pipeline>,
    myself: &ActorRef<IndexMessage>,
    record: Reindex,
) -> Result<usize, String> {
    let dataset = pipeline.writer.lock().await.store.snapshot();
    let rows = store::scan_meta(&dataset)
        .await
        .map_err(|e| format!("reading the items: {e}"))?;
    let finding = {
        let pipeline = pipeline.clone();
        let dimension = arguments.definition.dimension;
        tokio::task::spawn_blocking(move || {
            let old = HashEmbedder::new(dimension, record.from);
            rows.into_iter()
                .filter(|row| !row.deleted)
                .filter_map(|row| {
                    let text = row.text?;
                    let entry = pipeline.core.get(&row.id)?;
                    if entry.seq != row.seq {
                        return None; // superseded by a later row
                    }
                    let vector = pipeline.core.vector(entry.seq).ok()?;
                    (cosine(&vector, &old.embed(&text)) >= SAME_VECTOR).then(|| Reembedded {
                        id: row.id,
                        expected_seq: entry.seq,
                        vector: Vec::new(),
                        metadata: entry.metadata,
                        text: Some(text),
                    })
                })
                .collect::<Vec<_>>()
        })
    };
    let found = finding
        .await
        .map_err(|e| format!("finding the items: {e}"))?;
    if let Some(progress) = pipeline.reindex.lock().as_mut() {
        progress.to_reembed = progress.reembedded + found.len();
    }
    let mut skipped = 0;
    let chunk = arguments
        .embed_chunk
        .min(arguments.settings.max_batch)
        .max(1);
    let mut found = found.into_iter().peekable();
    while found.peek().is_some() {
        if !pipeline.current() {
            return Err("the incarnation ended".into());
        }
        let mut items: Vec<Reembedded> = found.by_ref().take(chunk).collect();
        let texts = items
            .iter()
            .map(|item| item.text.as_deref().unwrap_or_default().to_string())
            .collect();
        let vectors = embed_texts(arguments, texts)
            .await
            .map_err(|e| format!("embedding: {e}"))?;
        let definition = &arguments.definition;
        for (item, vector) in items.iter_mut().zip(vectors) {
            item.vector = prepare_vector(vector, definition.dimension, definition.metric, "vector")
                .map_err(|e| format!("embedding: {e}"))?;
        }
        let asked = items.len();
        let (port, written) = ractor::concurrency::oneshot();
        myself
            .send_message(IndexMessage::Enqueue(Batch::reembed(items, port.into())))
            .map_err(|_| "the incarnation ended".to_string())?;
        let outcome = written
            .await
            .map_err(|_| "the incarnation ended before the commit".to_string())?
            .map_err(|e: IndexError| format!("writing back: {e}"))?;
        skipped += asked - outcome.updated;
        if let Some(progress) = pipeline.reindex.lock().as_mut() {
            progress.reembedded += outcome.updated;
            progress.skipped += asked - outcome.updated;
        }
    }
    Ok(skipped)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms > 0.0 {
        dot / norms
    } else {
        0.0
    }
}
