//! Loading an index from storage: Lance is the truth, the faiss snapshot a
//! shortcut that is used only when it covers nothing Lance does not hold.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use ractor::ActorRef;

use super::write::Writer;
use super::{upkeep::Upkeep, IndexArguments, IndexMessage, Pipeline, Stats};
use crate::actors::vectors::core::{Core, Entry};
use crate::actors::vectors::hnsw::{Hnsw, HnswError};
use crate::actors::vectors::keyword::{stored, KeywordIndex};
use crate::actors::vectors::snapshot::{self, Covering, SnapshotPaths};
use crate::actors::vectors::store::{StoreError, VectorStore};

/// Why an index could not be loaded: the actor fails with this reason
/// (shown in `/v1/supervision`), and the supervisor tries again.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("building the graph: {0}")]
    Graph(#[from] HnswError),
    #[error("a loading task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Builds the index from storage. Returns the pipeline and whether a
/// snapshot should be written soon (none was usable).
pub(super) async fn load(
    arguments: &IndexArguments,
    actor: ActorRef<IndexMessage>,
) -> Result<(Pipeline, bool), LoadError> {
    let definition = arguments.definition.clone();
    let name = definition.name.clone();
    let fence = arguments.fence.clone();
    if let Some(delay) = fence.take_slow_load() {
        tracing::warn!(index = %name, delay_ms = delay.as_millis() as u64, "slow load (injected fault)");
        tokio::time::sleep(delay).await;
    }
    // Held for the whole load: a commit still running from a dead
    // incarnation finishes first, and none can start until Lance is read.
    let mut writer_lock = fence.writer.lock().await;
    let generation = fence.advance(&mut writer_lock).await;
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
    let reading_keywords = {
        let path = snapshot_paths.keywords.clone();
        let analysis = definition.analysis;
        tokio::task::spawn_blocking(move || stored::read(&path, analysis))
    };

    let dataset = arguments.dir.join(format!("{name}.lance"));
    let quarantine = arguments.dir.join(format!("{name}.quarantine"));
    let (store, recovery) = VectorStore::open_or_create(
        &dataset,
        definition.dimension,
        arguments.durability,
        &quarantine,
        &arguments.lance,
    )
    .await?;
    if let Some(recovery) = recovery {
        tracing::warn!(
            index = %name,
            torn_version = recovery.torn_version,
            opened_version = recovery.opened_version,
            evidence = %recovery.evidence,
            quarantined = %recovery.quarantined.display(),
            "the newest manifest was torn: set it aside and opened the version before it"
        );
        arguments
            .metrics
            .vector_manifest_recoveries
            .with_label_values(&[&name])
            .inc();
    }

    // The live state: per id, the row with the largest seq.
    let mut metas = store.scan_meta().await?;
    metas.sort_by_key(|m| m.seq);
    let max_seq = metas.last().map_or(0, |m| m.seq);
    let mut rows: HashMap<String, Entry> = HashMap::with_capacity(metas.len());
    let mut texts: HashMap<u64, Arc<str>> = HashMap::new();
    let mut superseded = Vec::new();
    for meta in metas {
        if let Some(old) = rows.remove(&meta.id) {
            texts.remove(&old.seq);
            superseded.push(old.seq);
        }
        if meta.deleted {
            superseded.push(meta.seq);
        } else {
            let metadata = meta.metadata.unwrap_or_else(|| Arc::from("{}"));
            if let Some(text) = meta.text {
                texts.insert(meta.seq, text);
            }
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
    // The keyword index: the stored one reconciled with the live texts, or
    // built from them. Off the runtime, like the graph, and while the
    // graph's snapshot is still being read.
    let analysis = definition.analysis;
    let stored_keywords = reading_keywords.await?.and_then(|(index, meta)| {
        if meta.lance_version > covering.lance_version || meta.max_seq > covering.lance_max_seq {
            return Err(stored::StoredError::Corrupt(
                "it covers writes Lance does not have",
            ));
        }
        Ok(index)
    });
    let keyword_path = snapshot_paths.keywords.clone();
    let index_name = name.clone();
    let keyword_loads = arguments.metrics.keyword_index_loads.clone();
    let indexing = tokio::task::spawn_blocking(move || match stored_keywords {
        Ok(mut index) => {
            let outcome = index.reconcile(&texts);
            tracing::info!(
                index = %index_name,
                kept = outcome.kept,
                dropped = outcome.dropped,
                analysed = outcome.analysed,
                "keyword index read from its snapshot"
            );
            keyword_loads
                .with_label_values(&[&index_name, "snapshot"])
                .inc();
            (index, false)
        }
        Err(reason) => {
            if !texts.is_empty() {
                tracing::info!(index = %index_name, %reason, "keyword index built from the texts");
            }
            // Like a rejected graph snapshot: never trusted later.
            if !matches!(reason, stored::StoredError::Missing(_)) {
                let _ = std::fs::remove_file(&keyword_path);
            }
            let analysed = !texts.is_empty();
            if analysed {
                keyword_loads
                    .with_label_values(&[&index_name, "texts"])
                    .inc();
            }
            let index = KeywordIndex::of_texts(&texts.into_iter().collect::<Vec<_>>(), analysis);
            (index, analysed)
        }
    });
    let loaded = reading.await?.and_then(|(hnsw, meta)| {
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
            (Hnsw::new(&definition)?, None, None)
        }
    };
    let snapshot_ms = started.elapsed().as_millis() as u64;
    let core = Arc::new(Core::new(
        definition.clone(),
        hnsw,
        arguments.settings.result_cache_entries,
        arguments.settings.result_cache_bytes,
        arguments.hot_fields.clone(),
    ));

    // Replay (or rebuild): live rows the graph does not have yet.
    let live: HashSet<u64> = rows.values().map(|e| e.seq).collect();
    let mut replayed = 0usize;
    let mut stream = store.scan_vectors(after_seq).await?;
    while let Some((seqs, vectors)) = stream.try_next().await? {
        let (seqs, vectors) = keep_live(&live, seqs, vectors, definition.dimension);
        if seqs.is_empty() {
            continue;
        }
        replayed += seqs.len();
        let core = core.clone();
        tokio::task::spawn_blocking(move || core.add_vectors(&vectors, &seqs)).await??;
    }
    drop(stream);
    let (keywords, keywords_analysed) = indexing.await?;
    let installing = core.clone();
    let version = store.version();
    tokio::task::spawn_blocking(move || {
        installing.install_indexed(rows, keywords, max_seq, version)
    })
    .await?;
    let replayed_ms = started.elapsed().as_millis() as u64;
    // The lookups filtered searches used before a restart, built now rather
    // than by the first search after it.
    let prepared = core.clone();
    tokio::task::spawn_blocking(move || prepared.prepare_filters()).await??;
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
    stats
        .snapshot_seq
        .store(after_seq.unwrap_or(0), Ordering::Relaxed);
    // Anything replayed (or analysed) would be again at the next start:
    // snapshot it.
    let snapshot_due = replayed > 0 || keywords_analysed;
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
        fence: fence.clone(),
        generation,
        alive: AtomicBool::new(true),
        poisoned: AtomicBool::new(false),
        upkeep: Upkeep::default(),
        snapshot_paths,
        settings: arguments.settings.clone(),
        stats,
        metrics,
        actor,
        reindex: parking_lot::Mutex::new(None),
        synonyms: crate::domain::keyword::Synonyms::new(
            arguments
                .settings
                .synonyms
                .iter()
                .chain(&definition.synonyms),
            definition.analysis,
        ),
    };
    drop(writer_lock);
    Ok((pipeline, snapshot_due))
}

fn keep_live(
    live: &HashSet<u64>,
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
