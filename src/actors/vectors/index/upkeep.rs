//! Upkeep of an index: after each commit, on the commit path, and in the
//! background.
//!
//! On the commit path, under the index's writer lock (so every Lance commit
//! of the dataset is made by one handle, one after another): the commit of
//! a compaction prepared in the background, the graph rebuild that drops
//! tombstones, the copy of the graph for a snapshot, and the deletes of
//! superseded rows.
//!
//! In the background, beside the commits: writing snapshot files,
//! rewriting small fragments for a compaction (only its commit takes a
//! turn on the commit path), and removing old Lance versions. That work
//! belongs to its incarnation. It holds the fence's `files` lock (shared)
//! while it touches files and checks the generation under it, so a new
//! incarnation — or a drop — which bumps the generation and then takes the
//! lock exclusively, waits for it to end and is never touched by it
//! afterwards; compaction and version removal are also aborted when their
//! incarnation ends. A snapshot is written into temporary files named
//! after its generation and installed only if that generation is current.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::task::AbortHandle;

use super::write::{observe_commit, Writer};
use super::{IndexMessage, Pipeline};
use crate::actors::vectors::hnsw::Hnsw;
use crate::actors::vectors::keyword::stored::StoredMeta;
use crate::actors::vectors::snapshot::{self, SnapshotError};
use crate::actors::vectors::store::{self, PreparedCompaction};

/// Graphs whose vectors take more than this are snapshotted in place
/// rather than copied and written in the background.
const SNAPSHOT_COPY_LIMIT_BYTES: usize = 256 << 20;

/// The upkeep state of one incarnation.
#[derive(Default)]
pub(super) struct Upkeep {
    /// Background tasks that touch files (compaction's rewrite, old-version
    /// removal): aborted when the incarnation ends.
    tasks: Mutex<Vec<AbortHandle>>,
    /// A compaction is being prepared or waits for its commit. No deletes
    /// of superseded rows meanwhile: a delete of a fragment the compaction
    /// rewrites would make its commit conflict.
    compaction_in_flight: AtomicBool,
    /// The prepared compaction, waiting for the commit path.
    prepared: Mutex<Option<PreparedCompaction>>,
    /// Old versions are being removed.
    removal_running: AtomicBool,
}

impl Upkeep {
    /// Whether a prepared compaction waits for its commit.
    pub(super) fn compaction_ready(&self) -> bool {
        self.prepared.lock().is_some()
    }

    /// Aborts the background tasks (the incarnation has ended).
    pub(super) fn abort_background(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(work).abort_handle();
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
}

/// The upkeep step after a commit, on the commit path. Failures are
/// logged; the data stays correct.
pub(super) async fn after_commit(pipeline: &Arc<Pipeline>, writer: &mut Writer, idle: bool) {
    commit_prepared_compaction(pipeline, writer).await;
    rebuild_if_tombstoned(pipeline, writer).await;
    snapshot_if_due(pipeline, writer, idle).await;
    delete_superseded(pipeline, writer).await;
    compact_if_due(pipeline, writer, idle);
}

/// Commits a compaction the background prepared, on this (the only)
/// committing handle, then starts removing the versions it superseded.
async fn commit_prepared_compaction(pipeline: &Arc<Pipeline>, writer: &mut Writer) {
    let Some(prepared) = pipeline.upkeep.prepared.lock().take() else {
        return;
    };
    let started = Instant::now();
    let rows = prepared.rows;
    match writer.store.commit_compaction(prepared).await {
        Ok(()) => {
            pipeline
                .metrics
                .lance_commits
                .with_label_values(&[&format!("vectors/{}", pipeline.name)])
                .inc();
            tracing::debug!(index = %pipeline.name, rows, "compaction committed");
            start_version_removal(pipeline, writer.store.snapshot());
        }
        // Its new files stay unreferenced; old-version removal deletes
        // such files once they are older than Lance's safety window.
        Err(err) => tracing::warn!(index = %pipeline.name, %err, "committing a compaction failed"),
    }
    observe_commit(pipeline, "compaction_commit", started);
    pipeline
        .upkeep
        .compaction_in_flight
        .store(false, Ordering::SeqCst);
}

/// Rebuilds the graph without its tombstones (HNSW cannot remove) once
/// they pass the configured share.
async fn rebuild_if_tombstoned(pipeline: &Arc<Pipeline>, writer: &mut Writer) {
    let settings = &pipeline.settings;
    let (graph, tombstones) = pipeline.core.graph_size();
    if tombstones < settings.rebuild_min_tombstones as u64
        || tombstones as f64 <= settings.rebuild_tombstone_share * graph as f64
    {
        return;
    }
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

/// Replaying what a snapshot misses costs ~0.3 ms a row at restart, so
/// small indexes snapshot often (cheap) and large ones every tenth of
/// their size, at most every `snapshot_every` rows; an idle index
/// snapshots whatever is left. A graph small enough to be copied costs
/// the writer only the copy, so it snapshots every fortieth of its size
/// (a restart of a 50k-row index replays at most ~1,250 rows).
async fn snapshot_if_due(pipeline: &Arc<Pipeline>, writer: &mut Writer, idle: bool) {
    let settings = &pipeline.settings;
    if pipeline.stats.snapshot_failed.swap(false, Ordering::SeqCst) {
        writer.force_snapshot = true;
    }
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
    if !due || pipeline.stats.snapshot_running.swap(true, Ordering::SeqCst) {
        return;
    }
    let version = writer.store.version();
    let outcome = if copyable {
        let started = Instant::now();
        let started_copy = start_snapshot_copy(pipeline, version).await;
        observe_maintenance(pipeline, "snapshot_copy", started);
        started_copy
    } else {
        // Too big to copy (the copy would double the index's memory): write
        // it here, holding up this index's commits but not its searches.
        let started = Instant::now();
        let written = write_snapshot_in_place(pipeline, version).await;
        pipeline
            .stats
            .snapshot_running
            .store(false, Ordering::SeqCst);
        observe_maintenance(pipeline, "snapshot_write", started);
        written
    };
    match outcome {
        Ok(()) => {
            writer.rows_since_snapshot = 0;
            writer.force_snapshot = false;
        }
        Err(err) => {
            if copyable {
                pipeline
                    .stats
                    .snapshot_running
                    .store(false, Ordering::SeqCst);
            }
            tracing::warn!(index = %pipeline.name, %err, "snapshot failed");
        }
    }
}

/// Deletes superseded rows from Lance once enough have piled up (not while
/// a compaction is in flight).
async fn delete_superseded(pipeline: &Arc<Pipeline>, writer: &mut Writer) {
    if writer.superseded.len() < pipeline.settings.cleanup_superseded
        || pipeline.upkeep.compaction_in_flight.load(Ordering::SeqCst)
    {
        return;
    }
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

/// Starts a compaction beside the commits when small fragments pile up,
/// and once more when an index has stopped being written and its last
/// versions have aged past the retention (so they can be removed).
fn compact_if_due(pipeline: &Arc<Pipeline>, writer: &mut Writer, idle: bool) {
    let settings = &pipeline.settings;
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
    let Some(target) = target.or((idle && aged_out).then_some(store::COMPACT_TARGET_ROWS)) else {
        return;
    };
    if pipeline
        .upkeep
        .compaction_in_flight
        .swap(true, Ordering::SeqCst)
    {
        return;
    }
    writer.last_upkeep = Some(Instant::now());
    let dataset = writer.store.snapshot();
    let task_pipeline = pipeline.clone();
    pipeline.upkeep.spawn(async move {
        prepare_compaction(task_pipeline, dataset, target).await;
    });
}

/// Rewrites small fragments into new files (no commit), then hands the
/// result to the commit path; with nothing to compact, goes on to remove
/// old versions.
async fn prepare_compaction(pipeline: Arc<Pipeline>, dataset: lance::Dataset, target: usize) {
    let files = pipeline.fence.files.read().await;
    if !pipeline.current() {
        return;
    }
    let started = Instant::now();
    let prepared = store::prepare_compaction(&dataset, target).await;
    observe_maintenance(&pipeline, "compact", started);
    drop(files);
    match prepared {
        Ok(Some(prepared)) => {
            *pipeline.upkeep.prepared.lock() = Some(prepared);
            let _ = pipeline.actor.send_message(IndexMessage::CompactionReady);
        }
        Ok(None) => {
            pipeline
                .upkeep
                .compaction_in_flight
                .store(false, Ordering::SeqCst);
            remove_old_versions(&pipeline, dataset).await;
        }
        Err(err) => {
            pipeline
                .upkeep
                .compaction_in_flight
                .store(false, Ordering::SeqCst);
            tracing::warn!(index = %pipeline.name, %err, "preparing a compaction failed");
        }
    }
}

fn start_version_removal(pipeline: &Arc<Pipeline>, dataset: lance::Dataset) {
    let task_pipeline = pipeline.clone();
    pipeline.upkeep.spawn(async move {
        remove_old_versions(&task_pipeline, dataset).await;
    });
}

/// Removes the Lance versions older than the retention, one run at a time.
async fn remove_old_versions(pipeline: &Arc<Pipeline>, dataset: lance::Dataset) {
    if pipeline.upkeep.removal_running.swap(true, Ordering::SeqCst) {
        return;
    }
    let files = pipeline.fence.files.read().await;
    if pipeline.current() {
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
        observe_maintenance(pipeline, "remove_old_versions", started);
    }
    drop(files);
    pipeline
        .upkeep
        .removal_running
        .store(false, Ordering::SeqCst);
}

/// Copies the graph (the caller holds the writer lock, so it is exactly
/// the committed state up to `lance_version`) and writes the copy in the
/// background. Commits go on meanwhile.
async fn start_snapshot_copy(
    pipeline: &Arc<Pipeline>,
    lance_version: u64,
) -> Result<(), SnapshotError> {
    let core = pipeline.core.clone();
    let (copy, keywords, max_seq) = tokio::task::spawn_blocking(move || {
        core.with_graph(|hnsw, keywords, max_seq| {
            let keywords = keywords.encode(StoredMeta {
                lance_version,
                max_seq,
            });
            hnsw.try_clone().map(|copy| (copy, keywords, max_seq))
        })
    })
    .await
    .map_err(|e| SnapshotError::Io {
        action: "copying the graph for",
        path: pipeline.snapshot_paths.index.clone(),
        source: std::io::Error::other(e),
    })??;
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        if let Err(err) =
            write_snapshot_copy(&pipeline, copy, keywords, lance_version, max_seq).await
        {
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

/// Writes the copy into temporary files named after this incarnation's
/// generation, then installs them if the incarnation is still current.
async fn write_snapshot_copy(
    pipeline: &Pipeline,
    copy: Hnsw,
    keywords: Vec<u8>,
    lance_version: u64,
    max_seq: u64,
) -> Result<(), SnapshotError> {
    let paths = pipeline.snapshot_paths.clone();
    let definition = pipeline.core.definition.clone();
    let tag = pipeline.generation;
    let prepared = tokio::task::spawn_blocking(move || {
        snapshot::prepare(
            &paths,
            tag,
            &copy,
            &keywords,
            &definition,
            lance_version,
            max_seq,
        )
    })
    .await
    .map_err(|e| SnapshotError::Io {
        action: "writing",
        path: pipeline.snapshot_paths.index.clone(),
        source: std::io::Error::other(e),
    })??;
    let files = pipeline.fence.files.read().await;
    if !pipeline.current() || pipeline.poisoned.load(Ordering::SeqCst) {
        // A newer incarnation owns the files now.
        prepared.discard();
        return Ok(());
    }
    let meta = prepared.install(&pipeline.snapshot_paths)?;
    drop(files);
    *pipeline.stats.snapshot_at.lock() = Some(meta.written_at);
    pipeline
        .stats
        .snapshot_seq
        .store(meta.max_seq, Ordering::Relaxed);
    tracing::info!(
        index = %pipeline.name,
        vectors = meta.ntotal,
        lance_version = meta.lance_version,
        "snapshot written"
    );
    Ok(())
}

/// Writes a snapshot of the live graph in the foreground (graphs too big
/// to copy, and a graceful stop). The caller holds the writer lock.
async fn write_snapshot_in_place(
    pipeline: &Arc<Pipeline>,
    lance_version: u64,
) -> Result<(), SnapshotError> {
    let files = pipeline.fence.files.read().await;
    if !pipeline.current() {
        return Ok(());
    }
    let core = pipeline.core.clone();
    let paths = pipeline.snapshot_paths.clone();
    let meta = tokio::task::spawn_blocking(move || {
        core.with_graph(|hnsw, keywords, max_seq| {
            let keywords = keywords.encode(StoredMeta {
                lance_version,
                max_seq,
            });
            snapshot::write(
                &paths,
                hnsw,
                &keywords,
                &core.definition,
                lance_version,
                max_seq,
            )
        })
    })
    .await
    .map_err(|e| SnapshotError::Io {
        action: "writing",
        path: pipeline.snapshot_paths.index.clone(),
        source: std::io::Error::other(e),
    })??;
    drop(files);
    *pipeline.stats.snapshot_at.lock() = Some(meta.written_at);
    pipeline
        .stats
        .snapshot_seq
        .store(meta.max_seq, Ordering::Relaxed);
    Ok(())
}

/// At a graceful stop: let a background snapshot finish (bounded), then
/// write one covering everything committed, so the next start is fast.
pub(super) async fn snapshot_at_stop(pipeline: &Arc<Pipeline>) {
    for _ in 0..100 {
        if !pipeline.stats.snapshot_running.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fence = pipeline.fence.writer.lock().await;
    let writer = pipeline.writer.lock().await;
    let current = pipeline.fence.generation() == pipeline.generation
        && !pipeline.poisoned.load(Ordering::SeqCst);
    if current && writer.rows_since_snapshot > 0 {
        let version = writer.store.version();
        if let Err(err) = write_snapshot_in_place(pipeline, version).await {
            tracing::warn!(index = %pipeline.name, %err, "snapshot at shutdown failed");
        }
    }
    drop(writer);
    drop(fence);
}

pub(super) fn observe_maintenance(pipeline: &Pipeline, step: &str, started: Instant) {
    pipeline
        .metrics
        .vector_maintenance_duration
        .with_label_values(&[&pipeline.name, step])
        .observe(started.elapsed().as_secs_f64());
}
