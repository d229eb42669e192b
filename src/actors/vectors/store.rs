//! The source of truth of one vector index: a Lance dataset
//! `vectors/<name>.lance` holding an append-only log of writes.
//!
//! Every row is one write: `(id, seq, vector, metadata, deleted)`. An
//! upsert appends a row with a new `seq`; a delete appends a row with
//! `deleted = true` and no vector. The live state is, per id, the row with
//! the largest `seq` (if it is not a delete). Superseded rows are removed
//! later ([`VectorStore::delete_seqs`]) and fragments compacted
//! ([`VectorStore::compact`]), so the log stays close to the live size.
//!
//! Durability: a write is acknowledged after `append` returns, i.e. after
//! Lance has written the data files and committed the manifest
//! (put-if-not-exists of the next version). Lance's local object store does
//! not fsync, so this survives a process crash (the page cache does) but not
//! a host power loss; on open, an unreadable newest manifest is moved aside
//! and the newest readable version is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::optimize::{compact_files, CompactionOptions};
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch,
    RecordBatchIterator, StringArray, UInt64Array,
};
use lance::deps::arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use lance::Dataset;

#[derive(Debug, thiserror::Error)]
#[error("lance: {0}")]
pub struct StoreError(pub String);

impl From<lance::Error> for StoreError {
    fn from(err: lance::Error) -> Self {
        Self(err.to_string())
    }
}

impl From<ArrowError> for StoreError {
    fn from(err: ArrowError) -> Self {
        Self(err.to_string())
    }
}

/// Routine compaction merges the small appends into fragments of this many
/// rows: small, so one compaction rewrites at most a few thousand rows
/// (a few ms) and never the bulk of the log.
pub const COMPACT_TARGET_ROWS: usize = 2_048;
/// When an index has more fragments than [`MAX_FRAGMENTS_TOTAL`] (about
/// half a million rows written), the routine fragments are merged into
/// ones of this many rows. Rare, and slower.
pub const MERGE_TARGET_ROWS: usize = 65_536;
pub const MAX_FRAGMENTS_TOTAL: usize = 256;

/// One write, as stored.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub id: String,
    pub seq: u64,
    /// `None` for a delete.
    pub vector: Option<Vec<f32>>,
    /// The metadata object, serialised.
    pub metadata: Option<Arc<str>>,
}

/// A row without its vector (what a load needs for every row).
#[derive(Debug, Clone)]
pub struct MetaRow {
    pub id: String,
    pub seq: u64,
    pub metadata: Option<Arc<str>>,
    pub deleted: bool,
}

pub struct VectorStore {
    uri: String,
    dataset: Dataset,
    schema: SchemaRef,
    dimension: usize,
}

fn schema(dimension: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                dimension as i32,
            ),
            true,
        ),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("deleted", DataType::Boolean, false),
    ]))
}

impl VectorStore {
    /// Opens the dataset at `path`, creating it empty if absent. The second
    /// value describes a fallback to an older version, if one was needed.
    pub async fn open_or_create(
        path: &Path,
        dimension: usize,
    ) -> Result<(Self, Option<String>), StoreError> {
        let uri = path
            .to_str()
            .ok_or_else(|| StoreError(format!("path {} is not UTF-8", path.display())))?
            .to_string();
        let schema = schema(dimension);
        let versions_dir = path.join("_versions");
        let io = |e: std::io::Error| StoreError(format!("{}: {e}", path.display()));
        let (dataset, fallback) = if !versions_dir.try_exists().map_err(io)? {
            if path.try_exists().map_err(io)? {
                // A create that died before its first commit left data files
                // but no manifest: nothing was ever acknowledged from it.
                std::fs::remove_dir_all(path).map_err(|e| StoreError(e.to_string()))?;
            }
            let empty = RecordBatchIterator::new(
                Vec::<Result<RecordBatch, ArrowError>>::new(),
                schema.clone(),
            );
            let params = WriteParams {
                mode: WriteMode::Create,
                ..WriteParams::default()
            };
            (
                Dataset::write(empty, uri.as_str(), Some(params)).await?,
                None,
            )
        } else {
            match open_with_retry(&uri).await {
                Ok(dataset) => (dataset, None),
                Err(err) => open_newest_readable(&uri, &versions_dir, &err.to_string()).await?,
            }
        };
        let store = Self {
            uri,
            dataset,
            schema,
            dimension,
        };
        store.check_schema()?;
        Ok((store, fallback))
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = Schema::from(self.dataset.schema());
        for field in self.schema.fields() {
            let matches = found
                .field_with_name(field.name())
                .map(|f| f.data_type() == field.data_type())
                .unwrap_or(false);
            if !matches {
                return Err(StoreError(format!(
                    "dataset {} does not have column '{}' of type {}",
                    self.uri,
                    field.name(),
                    field.data_type()
                )));
            }
        }
        Ok(())
    }

    pub fn version(&self) -> u64 {
        self.dataset.version_id()
    }

    pub fn fragments(&self) -> usize {
        self.dataset.count_fragments()
    }

    /// Fragments below `target_rows` (those a compaction to it merges).
    pub fn fragments_below(&self, target_rows: usize) -> usize {
        self.dataset
            .fragments()
            .iter()
            .filter(|f| f.physical_rows.is_none_or(|rows| rows < target_rows))
            .count()
    }

    /// A handle on the current version, for work that runs beside the
    /// writer (removing old versions).
    pub fn dataset(&self) -> Dataset {
        self.dataset.clone()
    }

    /// Appends `rows` in one Lance commit; returns the new version.
    pub async fn append(&mut self, rows: &[LogRow]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(self.version());
        }
        let batch = self.to_batch(rows)?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], self.schema.clone());
        self.dataset.append(reader, None).await?;
        Ok(self.version())
    }

    fn to_batch(&self, rows: &[LogRow]) -> Result<RecordBatch, StoreError> {
        let ids = StringArray::from_iter_values(rows.iter().map(|r| r.id.as_str()));
        let seqs = UInt64Array::from_iter_values(rows.iter().map(|r| r.seq));
        let mut values = Vec::with_capacity(rows.len() * self.dimension);
        let mut validity = Vec::with_capacity(rows.len());
        for row in rows {
            match &row.vector {
                Some(v) => {
                    values.extend_from_slice(v);
                    validity.push(true);
                }
                None => {
                    values.extend(std::iter::repeat_n(0f32, self.dimension));
                    validity.push(false);
                }
            }
        }
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::try_new(
            item,
            self.dimension as i32,
            Arc::new(Float32Array::from(values)),
            Some(validity.into()),
        )?;
        let metadata = StringArray::from_iter(rows.iter().map(|r| r.metadata.as_deref()));
        let deleted = BooleanArray::from_iter(rows.iter().map(|r| Some(r.vector.is_none())));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(seqs),
            Arc::new(vectors),
            Arc::new(metadata),
            Arc::new(deleted),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Every row without its vector.
    pub async fn scan_meta(&self) -> Result<Vec<MetaRow>, StoreError> {
        let mut scanner = self.dataset.scan();
        scanner.project(&["id", "seq", "metadata", "deleted"])?;
        let mut stream = scanner.try_into_stream().await?;
        let mut out = Vec::new();
        while let Some(batch) = stream.try_next().await? {
            let ids = column::<StringArray>(&batch, "id")?;
            let seqs = column::<UInt64Array>(&batch, "seq")?;
            let metadata = column::<StringArray>(&batch, "metadata")?;
            let deleted = column::<BooleanArray>(&batch, "deleted")?;
            for i in 0..batch.num_rows() {
                out.push(MetaRow {
                    id: ids.value(i).to_string(),
                    seq: seqs.value(i),
                    metadata: (!metadata.is_null(i)).then(|| Arc::from(metadata.value(i))),
                    deleted: deleted.value(i),
                });
            }
        }
        Ok(out)
    }

    /// The vectors of live-looking rows (not delete markers), with
    /// `seq > after_seq` if given, one Lance batch at a time so memory stays
    /// bounded: `(seqs, row-major vectors)`.
    pub async fn scan_vectors(
        &self,
        after_seq: Option<u64>,
    ) -> Result<BoxStream<'static, Result<(Vec<u64>, Vec<f32>), StoreError>>, StoreError> {
        let mut scanner = self.dataset.scan();
        scanner.project(&["seq", "vector"])?;
        let mut filter = "deleted = false".to_string();
        if let Some(after) = after_seq {
            filter.push_str(&format!(" AND seq > {after}"));
        }
        scanner.filter(&filter)?;
        let stream = scanner.try_into_stream().await?;
        let dimension = self.dimension;
        Ok(stream
            .map_err(StoreError::from)
            .and_then(move |batch| futures::future::ready(vectors_of(&batch, dimension)))
            .boxed())
    }

    /// Removes rows by `seq` (superseded writes), in one commit per chunk.
    pub async fn delete_seqs(&mut self, seqs: &[u64]) -> Result<usize, StoreError> {
        let mut commits = 0;
        for chunk in seqs.chunks(2000) {
            let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
            self.dataset
                .delete(&format!("seq IN ({})", list.join(",")))
                .await?;
            commits += 1;
        }
        Ok(commits)
    }
}

/// Merges fragments below `target_rows` (and materialises deletions) into
/// fragments of up to `target_rows`. Fragments at the target are left
/// alone: Lance's default target of a million rows would rewrite the whole
/// log below it every time. Runs on its own handle beside the writer: a
/// Rewrite commits alongside concurrent Appends (Lance rebases them); a
/// concurrent Delete of the same fragments makes one of the two fail
/// retryably, and it is tried again later.
pub async fn compact(dataset: &mut Dataset, target_rows: usize) -> Result<(), StoreError> {
    let options = CompactionOptions {
        target_rows_per_fragment: target_rows,
        ..CompactionOptions::default()
    };
    compact_files(dataset, options, None).await?;
    Ok(())
}

/// Removes the versions older than `retention` and the files only they
/// used. Lance keeps every version otherwise: an index under steady writes
/// grows by a manifest and a data file per commit, and every compaction
/// leaves the rewritten files behind. Safe beside a writer: files no
/// manifest refers to yet (an append in flight) are not touched.
pub async fn remove_old_versions(
    dataset: &Dataset,
    retention: std::time::Duration,
) -> Result<(u64, u64), StoreError> {
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| StoreError(format!("retention out of range: {e}")))?;
    let stats = dataset
        .cleanup_old_versions(retention, Some(false), Some(false))
        .await?;
    Ok((stats.old_versions, stats.bytes_removed))
}

fn vectors_of(batch: &RecordBatch, dimension: usize) -> Result<(Vec<u64>, Vec<f32>), StoreError> {
    let seqs = column::<UInt64Array>(batch, "seq")?;
    let vectors = column::<FixedSizeListArray>(batch, "vector")?;
    let values = vectors
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| StoreError("vector values are not f32".into()))?;
    let mut out_seqs = Vec::with_capacity(batch.num_rows());
    let mut out = Vec::with_capacity(batch.num_rows() * dimension);
    for i in 0..batch.num_rows() {
        if vectors.is_null(i) {
            continue;
        }
        let start = vectors.value_offset(i) as usize;
        out_seqs.push(seqs.value(i));
        out.extend_from_slice(&values.values()[start..start + dimension]);
    }
    Ok((out_seqs, out))
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, StoreError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| StoreError(format!("column '{name}' missing or of the wrong type")))
}

/// Opens the latest version, retrying a passing I/O error twice.
async fn open_with_retry(uri: &str) -> Result<Dataset, lance::Error> {
    let mut attempt = 0;
    loop {
        match Dataset::open(uri).await {
            Ok(dataset) => return Ok(dataset),
            Err(err) if attempt < 2 => {
                tracing::warn!(%uri, %err, "opening the dataset failed; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Whether an open failure is the manifest's content (torn, empty) rather
/// than the operating system refusing (permissions, file handles): only the
/// former may be set aside, or a passing error would roll data back.
fn is_corruption(error: &str, manifest: &Path) -> bool {
    let empty = std::fs::metadata(manifest).is_ok_and(|m| m.len() == 0);
    empty || !error.contains("os error")
}

/// The newest manifest could not be read (a torn write after power loss):
/// move unreadable manifests aside, newest first, until one opens.
async fn open_newest_readable(
    uri: &str,
    versions_dir: &Path,
    first_error: &str,
) -> Result<(Dataset, Option<String>), StoreError> {
    let mut manifests: Vec<(u64, PathBuf)> = std::fs::read_dir(versions_dir)
        .map_err(|e| StoreError(e.to_string()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let path = entry.path();
            let version = manifest_version(&path)?;
            Some((version, path))
        })
        .collect();
    manifests.sort_by(|a, b| b.0.cmp(&a.0));
    let mut moved = Vec::new();
    for (version, path) in &manifests {
        let error = match DatasetBuilder::from_uri(uri)
            .with_version(*version)
            .load()
            .await
        {
            Ok(dataset) if moved.is_empty() => return Ok((dataset, None)),
            Ok(dataset) => {
                let note = format!(
                    "newest manifest unreadable ({first_error}); opened version {version}, \
                     moved aside: {}",
                    moved.join(", ")
                );
                return Ok((dataset, Some(note)));
            }
            Err(err) => err.to_string(),
        };
        if !is_corruption(&error, path) {
            return Err(StoreError(format!(
                "cannot open {uri} version {version}: {error}"
            )));
        }
        // Set the unreadable manifest aside so the next commit can reuse
        // its version number.
        let aside = path.with_extension("manifest.unreadable");
        std::fs::rename(path, &aside).map_err(|e| StoreError(e.to_string()))?;
        moved.push(format!("v{version}"));
    }
    Err(StoreError(format!(
        "no readable version of {uri} ({first_error})"
    )))
}

/// Lance names manifests `<u64::MAX - version>.manifest` (V2 scheme) or
/// `<version>.manifest` (V1); both are accepted.
fn manifest_version(path: &Path) -> Option<u64> {
    if path.extension()? != "manifest" {
        return None;
    }
    let stem: u64 = path.file_stem()?.to_str()?.parse().ok()?;
    Some(if stem > u64::MAX / 2 {
        u64::MAX - stem
    } else {
        stem
    })
}
