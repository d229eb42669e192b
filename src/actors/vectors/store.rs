//! The source of truth of one vector index: a Lance dataset
//! `vectors/<name>.lance` holding an append-only log of writes.
//!
//! Every row is one write: `(id, seq, vector, metadata, deleted)`. An
//! upsert appends a row with a new `seq`; a delete appends a row with
//! `deleted = true` and no vector. The live state is, per id, the row with
//! the largest `seq` (if it is not a delete). Superseded rows are removed
//! later ([`VectorStore::delete_seqs`]) and fragments compacted
//! ([`prepare_compaction`] + [`VectorStore::commit_compaction`]), so the log
//! stays close to the live size.
//!
//! **One committer.** Every commit of the dataset — appends, deletes of
//! superseded rows, compactions — goes through the one [`VectorStore`]
//! handle its index's commit path owns, one after the other, so Lance never
//! sees two writers race (a race is a `CommitConflict`, which Lance retries
//! after a random back-off of up to three commit times). Compaction's slow
//! part, rewriting fragments, runs beside the commits on a read-only handle
//! and only its short commit takes a turn on the commit path.
//!
//! **Durability.** A write is acknowledged after Lance has written the data
//! files and committed the manifest (a put-if-not-exists of the next
//! version). Lance's local store does not fsync: in the `process` mode this
//! survives any crash of the process (the page cache does); in the `fsync`
//! mode the dataset is opened through [`crate::durability`]'s syncing
//! object store, so every file is on disk before the commit returns and the
//! write survives a host power loss too.
//!
//! **Torn manifests.** A host power loss without `fsync` can leave the
//! newest manifest empty or cut short. Opening falls back by evidence only:
//! if, and only if, the newest manifest is demonstrably torn (see
//! [`torn_manifest`]) it is moved to a quarantine folder and the previous
//! version is opened. Any other open error fails the index with its reason
//! and moves nothing: an error that is not about the manifest's bytes (a
//! format mismatch after an upgrade, a permission, a Lance bug) must never
//! silently roll acknowledged writes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::index::DatasetIndexRemapperOptions;
use lance::dataset::optimize::{
    commit_compaction, plan_compaction, CompactionOptions, RewriteResult,
};
use lance::dataset::{NewColumnTransform, WriteMode, WriteParams};
use lance::deps::arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch,
    RecordBatchIterator, StringArray, UInt64Array,
};
use lance::deps::arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use lance::Dataset;
use prost::Message;

use lance::io::ObjectStoreParams;

use crate::config::Durability;
use crate::durability;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lance: {0}")]
    Lance(#[from] lance::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The dataset exists but cannot be opened, and its newest manifest is
    /// not torn: nothing was moved, the index must not start.
    #[error("cannot open {uri}: {source}")]
    Open {
        uri: String,
        #[source]
        source: lance::Error,
    },
    /// The newest manifest was torn and set aside, and the version before
    /// it does not open either.
    #[error("cannot open {uri} after setting its torn newest manifest aside: {source}")]
    OpenAfterRecovery {
        uri: String,
        #[source]
        source: lance::Error,
    },
    #[error("dataset {uri} does not have column '{column}' of type {expected}")]
    Schema {
        uri: String,
        column: String,
        expected: DataType,
    },
    #[error("column '{0}' missing or of the wrong type")]
    Column(&'static str),
    #[error("retention out of range: {0}")]
    Retention(String),
}

impl StoreError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
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

/// How far ahead of its reader one scan of a vector dataset may read.
/// Lance's default is 2 GiB per scan, which a load of a 100k × 768 index
/// (300 MB of vectors) fills: a start-up of two indexes peaked at 4.7 GB
/// of RSS. A few batches ahead keep the disk busy just as well.
const SCAN_IO_BUFFER_BYTES: u64 = 64 << 20;

/// A scan of `dataset` with its read-ahead bounded.
fn scan(dataset: &Dataset) -> lance::dataset::scanner::Scanner {
    let mut scanner = dataset.scan();
    scanner.io_buffer_size(SCAN_IO_BUFFER_BYTES);
    scanner
}

/// One write, as stored.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub id: String,
    pub seq: u64,
    /// `None` for a delete.
    pub vector: Option<Vec<f32>>,
    /// The metadata object, serialised.
    pub metadata: Option<Arc<str>>,
    /// The text the item was added with (keyword search reads it).
    pub text: Option<Arc<str>>,
}

/// A row without its vector (what a load needs for every row).
#[derive(Debug, Clone)]
pub struct MetaRow {
    pub id: String,
    pub seq: u64,
    pub metadata: Option<Arc<str>>,
    pub text: Option<Arc<str>>,
    pub deleted: bool,
}

/// A torn newest manifest that was set aside at open.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The version whose manifest was torn.
    pub torn_version: u64,
    /// What made it torn (empty, cut short, unparseable).
    pub evidence: String,
    /// Where it was moved.
    pub quarantined: PathBuf,
    /// The version opened instead.
    pub opened_version: u64,
}

/// The dataset handle the commit path owns.
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
        text_field(),
    ]))
}

/// Added after the first release: datasets written before it gain the
/// column, all null, when opened (a metadata-only Lance commit).
fn text_field() -> Field {
    Field::new("text", DataType::Utf8, true)
}

impl VectorStore {
    /// Opens the dataset at `path`, creating it empty if absent. A torn
    /// newest manifest is moved into `quarantine` and the version before it
    /// opened (reported as a [`Recovery`]); any other failure is an error.
    pub async fn open_or_create(
        path: &Path,
        dimension: usize,
        durability: Durability,
        quarantine: &Path,
        session: &Arc<lance::session::Session>,
    ) -> Result<(Self, Option<Recovery>), StoreError> {
        let uri =
            durability::dataset_uri(path, durability).map_err(StoreError::io("naming", path))?;
        let store_params = durability::store_params(durability);
        let schema = schema(dimension);
        let versions_dir = path.join("_versions");
        let exists = versions_dir
            .try_exists()
            .map_err(StoreError::io("checking", &versions_dir))?;
        let (dataset, recovery) = if !exists {
            if path
                .try_exists()
                .map_err(StoreError::io("checking", path))?
            {
                // A create that died before its first commit left data files
                // but no manifest: nothing was ever acknowledged from it.
                std::fs::remove_dir_all(path).map_err(StoreError::io("removing", path))?;
            }
            let empty = RecordBatchIterator::new(
                Vec::<Result<RecordBatch, ArrowError>>::new(),
                schema.clone(),
            );
            let params = WriteParams {
                mode: WriteMode::Create,
                store_params: Some(store_params),
                session: Some(session.clone()),
                ..WriteParams::default()
            };
            let dataset = Dataset::write(empty, uri.as_str(), Some(params)).await?;
            (dataset, None)
        } else {
            open_by_evidence(&uri, &store_params, &versions_dir, quarantine, session).await?
        };
        let mut store = Self {
            uri,
            dataset,
            schema,
            dimension,
        };
        store.add_text_column().await?;
        store.check_schema()?;
        Ok((store, recovery))
    }

    /// Gives a dataset from before item texts were stored its `text`
    /// column (null for the rows it holds: they have no keyword text until
    /// they are written again).
    async fn add_text_column(&mut self) -> Result<(), StoreError> {
        if self.dataset.schema().field("text").is_some() {
            return Ok(());
        }
        let column = Arc::new(Schema::new(vec![text_field()]));
        self.dataset
            .add_columns(NewColumnTransform::AllNulls(column), None, None)
            .await?;
        tracing::info!(uri = %self.uri, version = self.version(), "added the text column");
        Ok(())
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = Schema::from(self.dataset.schema());
        for field in self.schema.fields() {
            let matches = found
                .field_with_name(field.name())
                .map(|f| f.data_type() == field.data_type())
                .unwrap_or(false);
            if !matches {
                return Err(StoreError::Schema {
                    uri: self.uri.clone(),
                    column: field.name().clone(),
                    expected: field.data_type().clone(),
                });
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

    /// A read-only handle on the current version, for work beside the
    /// commit path (compaction's rewrite, removing old versions). Nothing
    /// may commit through it.
    pub fn snapshot(&self) -> Dataset {
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

    /// Commits a compaction prepared beside the commit path. Lance rebases
    /// it over the appends committed since it was planned (a rewrite and an
    /// append touch different fragments); the caller makes sure no delete
    /// of the rewritten fragments was committed meanwhile.
    pub async fn commit_compaction(
        &mut self,
        prepared: PreparedCompaction,
    ) -> Result<(), StoreError> {
        commit_compaction(
            &mut self.dataset,
            prepared.results,
            Arc::new(DatasetIndexRemapperOptions::default()),
            &prepared.options,
        )
        .await?;
        Ok(())
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
        let texts = StringArray::from_iter(rows.iter().map(|r| r.text.as_deref()));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(seqs),
            Arc::new(vectors),
            Arc::new(metadata),
            Arc::new(deleted),
            Arc::new(texts),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Every row without its vector.
    pub async fn scan_meta(&self) -> Result<Vec<MetaRow>, StoreError> {
        scan_meta(&self.dataset).await
    }

    /// The vectors of live-looking rows (not delete markers), with
    /// `seq > after_seq` if given, one Lance batch at a time so memory stays
    /// bounded: `(seqs, row-major vectors)`.
    pub async fn scan_vectors(
        &self,
        after_seq: Option<u64>,
    ) -> Result<BoxStream<'static, Result<(Vec<u64>, Vec<f32>), StoreError>>, StoreError> {
        let mut scanner = scan(&self.dataset);
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
}

/// Every row of `dataset` (one version) without its vector.
pub async fn scan_meta(dataset: &Dataset) -> Result<Vec<MetaRow>, StoreError> {
    let mut scanner = scan(dataset);
    scanner.project(&["id", "seq", "metadata", "deleted", "text"])?;
    let mut stream = scanner.try_into_stream().await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        let ids = column::<StringArray>(&batch, "id")?;
        let seqs = column::<UInt64Array>(&batch, "seq")?;
        let metadata = column::<StringArray>(&batch, "metadata")?;
        let deleted = column::<BooleanArray>(&batch, "deleted")?;
        let texts = column::<StringArray>(&batch, "text")?;
        for i in 0..batch.num_rows() {
            out.push(MetaRow {
                id: ids.value(i).to_string(),
                seq: seqs.value(i),
                metadata: (!metadata.is_null(i)).then(|| Arc::from(metadata.value(i))),
                text: (!texts.is_null(i)).then(|| Arc::from(texts.value(i))),
                deleted: deleted.value(i),
            });
        }
    }
    Ok(out)
}

/// A stored row's vector and text.
pub struct StoredRow {
    pub vector: Vec<f32>,
    pub text: Option<Arc<str>>,
}

/// The vectors and texts of the rows `seqs` of `dataset` (one version),
/// by seq; a seq the version does not hold (removed as superseded) is
/// absent. Reads only the matching rows' vectors and texts.
pub async fn rows_at(
    dataset: &Dataset,
    seqs: &[u64],
    dimension: usize,
) -> Result<std::collections::HashMap<u64, StoredRow>, StoreError> {
    let mut out = std::collections::HashMap::with_capacity(seqs.len());
    // An IN list per scan of at most this many seqs.
    for chunk in seqs.chunks(1024) {
        let mut scanner = scan(dataset);
        scanner.project(&["seq", "vector", "text"])?;
        let list = chunk
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        scanner.filter(&format!("deleted = false AND seq IN ({list})"))?;
        let mut stream = scanner.try_into_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            let seqs = column::<UInt64Array>(&batch, "seq")?;
            let texts = column::<StringArray>(&batch, "text")?;
            let vectors = column::<FixedSizeListArray>(&batch, "vector")?;
            let values = vectors
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or(StoreError::Column("vector"))?;
            for i in (0..batch.num_rows()).filter(|&i| !vectors.is_null(i)) {
                let start = vectors.value_offset(i) as usize;
                let vector = values
                    .values()
                    .get(start..start + dimension)
                    .ok_or(StoreError::Column("vector"))?
                    .to_vec();
                let text = (!texts.is_null(i)).then(|| Arc::from(texts.value(i)));
                out.insert(seqs.value(i), StoredRow { vector, text });
            }
        }
    }
    Ok(out)
}

/// One version of the dataset at `path`, as it was committed; gone once
/// retention removed it.
pub async fn open_at(path: &Path, version: u64) -> Result<Dataset, PinnedMiss> {
    let store = |e: lance::Error| PinnedMiss::Store(StoreError::Lance(e));
    let latest = Dataset::open(&path.to_string_lossy())
        .await
        .map_err(store)?;
    // No such version yet (or ever: versions start at 1).
    if version == 0 || version > latest.version().version {
        return Err(PinnedMiss::VersionGone);
    }
    match latest.checkout_version(version).await {
        Ok(dataset) => Ok(dataset),
        Err(lance::Error::VersionNotFound { .. }) | Err(lance::Error::NotFound { .. }) => {
            Err(PinnedMiss::VersionGone)
        }
        Err(err) => Err(store(err)),
    }
}

/// A live item of one version: its id, the seq of its row, its metadata.
pub struct LiveRow {
    pub id: String,
    pub seq: u64,
    pub metadata: Option<Arc<str>>,
}

/// The live items of `dataset` (its one version) in id order: per id the
/// newest row, unless that is a delete marker.
pub async fn live_rows(dataset: &Dataset) -> Result<Vec<LiveRow>, StoreError> {
    let mut newest: std::collections::HashMap<String, MetaRow> = std::collections::HashMap::new();
    for row in scan_meta(dataset).await? {
        if newest.get(&row.id).is_none_or(|known| known.seq < row.seq) {
            newest.insert(row.id.clone(), row);
        }
    }
    let mut live: Vec<LiveRow> = newest
        .into_values()
        .filter(|row| !row.deleted)
        .map(|row| LiveRow {
            id: row.id,
            seq: row.seq,
            metadata: row.metadata,
        })
        .collect();
    live.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    Ok(live)
}

/// The seqs of the live rows of `dataset` (its one version), reading only
/// ids, seqs and delete marks.
async fn live_seqs(dataset: &Dataset) -> Result<std::collections::HashSet<u64>, StoreError> {
    let mut scanner = scan(dataset);
    scanner.project(&["id", "seq", "deleted"])?;
    let mut stream = scanner.try_into_stream().await?;
    let mut newest: std::collections::HashMap<String, (u64, bool)> =
        std::collections::HashMap::new();
    while let Some(batch) = stream.try_next().await? {
        let ids = column::<StringArray>(&batch, "id")?;
        let seqs = column::<UInt64Array>(&batch, "seq")?;
        let deleted = column::<BooleanArray>(&batch, "deleted")?;
        for i in 0..batch.num_rows() {
            let (seq, gone) = (seqs.value(i), deleted.value(i));
            match newest.get_mut(ids.value(i)) {
                Some(known) if known.0 >= seq => {}
                Some(known) => *known = (seq, gone),
                None => {
                    newest.insert(ids.value(i).to_string(), (seq, gone));
                }
            }
        }
    }
    Ok(newest
        .into_values()
        .filter(|(_, gone)| !gone)
        .map(|(seq, _)| seq)
        .collect())
}

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line: `{"id", "vector", "metadata", "text"}`.
    Jsonl,
    /// An Arrow IPC stream of batches with the columns `id`, `vector`,
    /// `metadata` (JSON text) and `text`.
    Arrow,
}

/// Every live item of `dataset` (one version), streamed in `format`, one
/// Lance batch at a time: memory stays at a batch, whatever the size.
pub async fn export(
    dataset: Dataset,
    format: ExportFormat,
) -> Result<BoxStream<'static, Result<bytes::Bytes, StoreError>>, StoreError> {
    use lance::deps::datafusion::arrow::compute::filter_record_batch;
    use lance::deps::datafusion::arrow::ipc::writer::StreamWriter;
    let live = live_seqs(&dataset).await?;
    let mut scanner = scan(&dataset);
    scanner.project(&["id", "seq", "vector", "metadata", "text"])?;
    scanner.filter("deleted = false")?;
    let batches = scanner.try_into_stream().await?.map_err(StoreError::from);
    let exported = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("vector", dataset_vector_type(&dataset)?, true),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
    ]));
    let writer = match format {
        ExportFormat::Arrow => {
            Some(StreamWriter::try_new(Vec::new(), &exported).map_err(StoreError::Arrow)?)
        }
        ExportFormat::Jsonl => None,
    };
    let state = (batches.boxed(), writer, live, exported, false);
    Ok(futures::stream::try_unfold(
        state,
        |(mut batches, mut writer, live, schema, done)| async move {
            if done {
                return Ok(None);
            }
            let Some(batch) = batches.try_next().await? else {
                // The end: an Arrow stream's end-of-stream marker.
                let tail = match writer.as_mut() {
                    Some(w) => {
                        w.finish().map_err(StoreError::Arrow)?;
                        std::mem::take(w.get_mut())
                    }
                    None => Vec::new(),
                };
                return Ok(Some((
                    bytes::Bytes::from(tail),
                    (batches, writer, live, schema, true),
                )));
            };
            let seqs = column::<UInt64Array>(&batch, "seq")?;
            let keep = BooleanArray::from_iter(
                (0..batch.num_rows()).map(|i| Some(live.contains(&seqs.value(i)))),
            );
            let batch = filter_record_batch(&batch, &keep).map_err(StoreError::Arrow)?;
            let out = match writer.as_mut() {
                Some(w) => {
                    let columns = ["id", "vector", "metadata", "text"]
                        .iter()
                        .map(|name| {
                            batch
                                .column_by_name(name)
                                .cloned()
                                .ok_or(StoreError::Column("export"))
                        })
                        .collect::<Result<Vec<ArrayRef>, _>>()?;
                    let projected =
                        RecordBatch::try_new(schema.clone(), columns).map_err(StoreError::Arrow)?;
                    w.write(&projected).map_err(StoreError::Arrow)?;
                    std::mem::take(w.get_mut())
                }
                None => json_lines(&batch)?,
            };
            Ok(Some((
                bytes::Bytes::from(out),
                (batches, writer, live, schema, false),
            )))
        },
    )
    .boxed())
}

/// The vector column's type in `dataset`.
fn dataset_vector_type(dataset: &Dataset) -> Result<DataType, StoreError> {
    let schema: Schema = dataset.schema().into();
    schema
        .field_with_name("vector")
        .map(|f| f.data_type().clone())
        .map_err(StoreError::Arrow)
}

/// A batch's rows as JSON lines.
fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, StoreError> {
    let ids = column::<StringArray>(batch, "id")?;
    let metadata = column::<StringArray>(batch, "metadata")?;
    let texts = column::<StringArray>(batch, "text")?;
    let vectors = column::<FixedSizeListArray>(batch, "vector")?;
    let values = vectors
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or(StoreError::Column("vector"))?;
    let dimension = vectors.value_length() as usize;
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        let start = vectors.value_offset(i) as usize;
        let vector = values
            .values()
            .get(start..start + dimension)
            .unwrap_or_default();
        let metadata: serde_json::Value = (!metadata.is_null(i))
            .then(|| serde_json::from_str(metadata.value(i)).ok())
            .flatten()
            .unwrap_or(serde_json::Value::Null);
        // Serialised as `f32`s (shortest form), as a get answers them.
        #[derive(serde::Serialize)]
        struct Line<'a> {
            id: &'a str,
            vector: &'a [f32],
            metadata: serde_json::Value,
            text: Option<&'a str>,
        }
        let line = Line {
            id: ids.value(i),
            vector,
            metadata,
            text: (!texts.is_null(i)).then(|| texts.value(i)),
        };
        serde_json::to_writer(&mut out, &line).map_err(|_| StoreError::Column("json"))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// A compaction whose new fragments are written, waiting for its commit.
pub struct PreparedCompaction {
    results: Vec<RewriteResult>,
    options: CompactionOptions,
    /// Rows rewritten (for the log).
    pub rows: u64,
}

/// Plans and runs a compaction of the fragments below `target_rows` into
/// fragments of up to `target_rows`, on a read-only handle: the new files
/// are written, nothing is committed. `None` when there is nothing to do.
/// Fragments at the target are left alone: Lance's default target of a
/// million rows would rewrite the whole log below it every time.
pub async fn prepare_compaction(
    dataset: &Dataset,
    target_rows: usize,
) -> Result<Option<PreparedCompaction>, StoreError> {
    let options = CompactionOptions {
        target_rows_per_fragment: target_rows,
        ..CompactionOptions::default()
    };
    let plan = plan_compaction(dataset, &options).await?;
    if plan.num_tasks() == 0 {
        return Ok(None);
    }
    let mut results = Vec::with_capacity(plan.num_tasks());
    for task in plan.compaction_tasks() {
        results.push(task.execute(dataset).await?);
    }
    let rows = results
        .iter()
        .flat_map(|r| &r.new_fragments)
        .filter_map(|f| f.physical_rows)
        .sum::<usize>() as u64;
    Ok(Some(PreparedCompaction {
        results,
        options,
        rows,
    }))
}

/// Removes the versions older than `retention` and the files only they
/// used. Lance keeps every version otherwise: an index under steady writes
/// grows by a manifest and a data file per commit, and every compaction
/// leaves the rewritten files behind. Not a commit; safe beside the commit
/// path: files no manifest refers to yet (an append in flight) are not
/// touched, and the newest version is always kept.
pub async fn remove_old_versions(
    dataset: &Dataset,
    retention: std::time::Duration,
) -> Result<(u64, u64), StoreError> {
    let retention =
        chrono::Duration::from_std(retention).map_err(|e| StoreError::Retention(e.to_string()))?;
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
        .ok_or(StoreError::Column("vector"))?;
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

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a T, StoreError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or(StoreError::Column(name))
}

/// Opens the newest version — unless the newest manifest is demonstrably
/// torn: then it is moved into `quarantine` first and the version before it
/// opened. The check comes before the open because Lance does not always
/// fail cleanly on a torn manifest (one cut in half made it panic), and a
/// panic inside Lance's open is turned into an error, so either way the
/// index fails with a reason instead of a backtrace.
async fn open_by_evidence(
    uri: &str,
    params: &ObjectStoreParams,
    versions_dir: &Path,
    quarantine: &Path,
    session: &Arc<lance::session::Session>,
) -> Result<(Dataset, Option<Recovery>), StoreError> {
    let open = || async {
        let opening = DatasetBuilder::from_uri(uri)
            .with_store_params(params.clone())
            .with_session(session.clone())
            .load();
        match AssertUnwindSafe(opening).catch_unwind().await {
            Ok(opened) => opened,
            Err(panic) => Err(lance::Error::internal(format!(
                "Lance panicked opening the dataset: {}",
                panic_text(&panic)
            ))),
        }
    };
    let torn = newest_manifest(versions_dir)?
        .and_then(|(version, path)| torn_manifest(&path).map(|evidence| (version, path, evidence)));
    let Some((version, path, evidence)) = torn else {
        let dataset = open().await.map_err(|source| StoreError::Open {
            uri: uri.to_string(),
            source,
        })?;
        return Ok((dataset, None));
    };
    std::fs::create_dir_all(quarantine).map_err(StoreError::io("creating", quarantine))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let quarantined = quarantine.join(format!("{stamp}-v{version}-{file_name}"));
    std::fs::rename(&path, &quarantined).map_err(StoreError::io("quarantining", &path))?;
    let dataset = open()
        .await
        .map_err(|source| StoreError::OpenAfterRecovery {
            uri: uri.to_string(),
            source,
        })?;
    let recovery = Recovery {
        torn_version: version,
        evidence,
        quarantined,
        opened_version: dataset.version_id(),
    };
    Ok((dataset, Some(recovery)))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// The newest manifest in `_versions/`, by version.
fn newest_manifest(versions_dir: &Path) -> Result<Option<(u64, PathBuf)>, StoreError> {
    let entries =
        std::fs::read_dir(versions_dir).map_err(StoreError::io("listing", versions_dir))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            Some((manifest_version(&path)?, path))
        })
        .max_by_key(|(version, _)| *version))
}

/// The 16-byte footer of a Lance manifest ends with this.
const MANIFEST_MAGIC: &[u8; 4] = b"LANC";

/// Why the manifest at `path` is torn — empty, cut short, or not a
/// readable manifest — or `None` if its bytes are whole (or cannot be read
/// at all: an I/O error is not evidence of a torn write).
///
/// A Lance manifest is `[u32 length][protobuf Manifest][i64 position]
/// [u16 major][u16 minor]["LANC"]`, the position pointing at the length.
/// A write cut short by a power loss loses the end of the file, so its
/// footer no longer parses.
pub fn torn_manifest(path: &Path) -> Option<String> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    if metadata.len() == 0 {
        return Some("the manifest is empty (0 bytes)".into());
    }
    let bytes = std::fs::read(path).ok()?;
    let len = bytes.len();
    if len < 20 {
        return Some(format!(
            "the manifest is {len} bytes, shorter than its framing"
        ));
    }
    if &bytes[len - 4..] != MANIFEST_MAGIC {
        return Some(format!(
            "the manifest ({len} bytes) does not end with Lance's footer: cut short"
        ));
    }
    let position = i64::from_le_bytes(bytes[len - 16..len - 8].try_into().ok()?);
    let Some(position) = usize::try_from(position).ok().filter(|p| p + 4 <= len - 16) else {
        return Some(format!(
            "the manifest's footer points at byte {position}, outside its {len} bytes"
        ));
    };
    let recorded = u32::from_le_bytes(bytes[position..position + 4].try_into().ok()?) as usize;
    let body = &bytes[position + 4..len - 16];
    if body.len() != recorded {
        return Some(format!(
            "the manifest records {recorded} bytes of content but holds {}",
            body.len()
        ));
    }
    match lance_table::format::pb::Manifest::decode(body) {
        Ok(_) => None,
        Err(err) => Some(format!("the manifest does not decode: {err}")),
    }
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

/// An exact search of the index as it was at one Lance version.
pub struct PinnedQuery {
    /// Prepared for the index's metric (normalised for cosine).
    pub vector: Vec<f32>,
    pub metric: crate::domain::vectors::Metric,
    pub k: usize,
    /// As [`crate::domain::vectors::prepare_filter`] gives it.
    pub filter: crate::domain::vectors::PreparedFilter,
    pub exclude: std::collections::HashSet<String>,
    /// When set, only these ids are candidates (how the playbook's
    /// injected workers are scored).
    pub only: Option<std::collections::HashSet<String>>,
}

/// Why a pinned search found no dataset to read.
pub enum PinnedMiss {
    /// The version was removed by `vectors.version_retention_secs` (and no
    /// tag kept it).
    VersionGone,
    Store(StoreError),
}

/// The exact `k` nearest live items of the dataset at `path` as of
/// `version`: time travel. Reads the rows of that version (the newest row
/// per id wins, delete markers remove), so the same version always gives
/// the same answer — the graph plays no part. Cost: one scan of the
/// version, so for reruns and for chat context, not for hot paths.
pub async fn search_at(
    path: &Path,
    version: u64,
    query: &PinnedQuery,
) -> Result<Vec<crate::domain::vectors::Hit>, PinnedMiss> {
    use std::collections::HashMap;
    let store = |e: lance::Error| PinnedMiss::Store(StoreError::Lance(e));
    let location = path.to_string_lossy();
    let latest = Dataset::open(&location).await.map_err(store)?;
    let dataset = match latest.checkout_version(version).await {
        Ok(dataset) => dataset,
        Err(lance::Error::VersionNotFound { .. }) | Err(lance::Error::NotFound { .. }) => {
            return Err(PinnedMiss::VersionGone)
        }
        Err(err) => return Err(store(err)),
    };
    let mut scanner = scan(&dataset);
    scanner
        .project(&["id", "seq", "vector", "metadata", "deleted"])
        .map_err(store)?;
    let mut stream = scanner.try_into_stream().await.map_err(store)?;
    // id → (seq, distance, metadata); a delete marker keeps its seq with
    // no distance so an older row cannot come back.
    let mut newest: HashMap<String, (u64, Option<f32>, Option<Arc<str>>)> = HashMap::new();
    while let Some(batch) = stream.try_next().await.map_err(store)? {
        let miss = |e: StoreError| PinnedMiss::Store(e);
        let ids = column::<StringArray>(&batch, "id").map_err(miss)?;
        let seqs = column::<UInt64Array>(&batch, "seq").map_err(miss)?;
        let metadata = column::<StringArray>(&batch, "metadata").map_err(miss)?;
        let deleted = column::<BooleanArray>(&batch, "deleted").map_err(miss)?;
        let vectors = column::<FixedSizeListArray>(&batch, "vector").map_err(miss)?;
        let values = vectors
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or(PinnedMiss::Store(StoreError::Column("vector")))?;
        let dimension = query.vector.len();
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            if query.exclude.contains(id) || query.only.as_ref().is_some_and(|o| !o.contains(id)) {
                continue;
            }
            let seq = seqs.value(i);
            if newest.get(id).is_some_and(|(known, _, _)| *known > seq) {
                continue;
            }
            let row = if deleted.value(i) || vectors.is_null(i) {
                (seq, None, None)
            } else {
                let start = vectors.value_offset(i) as usize;
                let Some(vector) = values.values().get(start..start + dimension) else {
                    continue;
                };
                let text = (!metadata.is_null(i)).then(|| Arc::from(metadata.value(i)));
                (seq, Some(query.metric.exact(&query.vector, vector)), text)
            };
            newest.insert(id.to_string(), row);
        }
    }
    let mut hits: Vec<crate::domain::vectors::Hit> = newest
        .into_iter()
        .filter_map(|(id, (_, distance, text))| {
            let distance = distance?;
            let metadata: serde_json::Value = text
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(serde_json::Value::Null);
            let passes = query.filter.equalities.iter().all(|(field, key)| {
                metadata
                    .get(field)
                    .and_then(crate::domain::vectors::filter_key)
                    .as_ref()
                    == Some(key)
            }) && query
                .filter
                .predicate
                .as_ref()
                .is_none_or(|p| p.matches(&metadata));
            passes.then_some(crate::domain::vectors::Hit {
                id,
                distance,
                metadata,
                explain: None,
                beyond_k: false,
            })
        })
        .collect();
    hits.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.id.cmp(&b.id))
    });
    hits.truncate(query.k);
    Ok(hits)
}

/// Tags `version` so that removing old versions keeps it (a replay run
/// cites it). Not a commit: it writes a ref file beside the manifests.
pub async fn tag_version(path: &Path, tag: &str, version: u64) -> Result<(), StoreError> {
    let dataset = Dataset::open(&path.to_string_lossy()).await?;
    dataset.tags().create(tag, version).await?;
    Ok(())
}
