//! The `ingest` actor: CSV or JSON lines into Lance datasets.
//!
//! The HTTP edge streams the body in chunks; a task owned by this actor
//! spools it to a temporary file while hashing it (SHA-256), then:
//! the same file ingested before → `unchanged`; a schema that differs from
//! the dataset's → `schema_drift`, nothing written (unless the ingest
//! replaces the dataset); otherwise the file is decoded in batches (memory
//! does not grow with the file) and written as one Lance commit — created
//! on first ingest, appended or overwritten after — and the manifest
//! recorded in the catalog. JSON lines carry what CSV cannot: lists
//! (`["CDL-A", "OSHA 10"]` becomes a `List(Utf8)` column) and nesting.
//!
//! The task is aborted if the actor dies (its handle lives in the actor's
//! state), so a crash mid-ingest leaves the dataset at its previous version:
//! Lance commits only after every batch is written.
//!
//! Bounded: at most `ingest.max_concurrent` ingests at once (503
//! `too_many_ingests`); at most `ingest.max_columns` columns with names of
//! `ingest.max_column_name_bytes` (422), each name once (400); the data
//! directory's disk keeps `ingest.min_free_bytes` free while the body is
//! spooled (507 `disk_full`); spool files a crash left behind are removed
//! at start. A replace removes the dataset's older versions from disk at
//! once, so data it replaced (a PII column) is really gone; a dataset is
//! dropped whole by [`IngestMessage::Drop`] (admin).

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::arrow_array::RecordBatchIterator;
use lance::deps::arrow_array::RecordBatchReader;
use lance::deps::datafusion::arrow::csv::reader::Format;
use lance::deps::datafusion::arrow::csv::ReaderBuilder;
use lance::deps::datafusion::arrow::json::reader::infer_json_schema_from_seekable;
use lance::deps::datafusion::arrow::json::ReaderBuilder as JsonReaderBuilder;
use lance::Dataset;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actors::catalog::{self, columns, dataset_path, CatalogMessage};
use crate::actors::storage::UploadChunk;
use crate::codes::{ErrorCode, HasCode};
use crate::config::IngestSettings;
use crate::domain::datasets::{
    validate_dataset_name, DatasetManifest, IngestOutcome, IngestRecord, SchemaDrift,
};
use crate::supervision::{CallError, Directory, Fault};
use crate::telemetry::Metrics;

pub const NAME: &str = "ingest";

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;
/// The disk's free space is checked again after this many spooled bytes.
const DISK_CHECK_EVERY: u64 = 16 << 20;
/// Prefix of a dropped dataset's directory while its files are removed.
const DROPPED: &str = ".dropped-";
/// Rows read to infer a CSV's schema (JSON lines are read whole).
const INFER_ROWS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    InvalidName(String),
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was interrupted: {0}")]
    Aborted(String),
    #[error("malformed {}: {reason}", format.noun())]
    Malformed {
        format: IngestFormat,
        reason: String,
    },
    #[error("the file's schema differs from dataset '{dataset}': {drift} (ingest with ?mode=replace to overwrite it)")]
    SchemaDrift { dataset: String, drift: SchemaDrift },
    #[error("an ingest into '{0}' is already running; retry when it is done")]
    Busy(String),
    #[error("{0} ingests are running (ingest.max_concurrent); retry shortly")]
    TooManyIngests(usize),
    #[error("the header has {got} columns; at most {max} are allowed (ingest.max_columns)")]
    TooManyColumns { max: usize, got: usize },
    #[error(
        "a column name has {got} bytes; at most {max} are allowed (ingest.max_column_name_bytes)"
    )]
    ColumnNameTooLong { max: usize, got: usize },
    #[error("the data directory's disk has {free} bytes free; an ingest keeps at least {min} free (ingest.min_free_bytes)")]
    DiskFull { free: u64, min: u64 },
    #[error("no dataset '{0}'")]
    NotFound(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Catalog(#[from] CallError),
}

impl HasCode for IngestError {
    fn code(&self) -> ErrorCode {
        match self {
            IngestError::InvalidName(_) => ErrorCode::InvalidName,
            IngestError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            IngestError::Aborted(_) => ErrorCode::UploadAborted,
            IngestError::Malformed {
                format: IngestFormat::Csv,
                ..
            } => ErrorCode::MalformedCsv,
            IngestError::Malformed {
                format: IngestFormat::JsonLines,
                ..
            } => ErrorCode::MalformedJsonLines,
            IngestError::SchemaDrift { .. } => ErrorCode::SchemaDrift,
            IngestError::Busy(_) => ErrorCode::IngestInProgress,
            IngestError::TooManyIngests(_) => ErrorCode::TooManyIngests,
            IngestError::TooManyColumns { .. } => ErrorCode::TooManyColumns,
            IngestError::ColumnNameTooLong { .. } => ErrorCode::ColumnNameTooLong,
            IngestError::DiskFull { .. } => ErrorCode::DiskFull,
            IngestError::NotFound(_) => ErrorCode::DatasetNotFound,
            IngestError::Storage(_) => ErrorCode::StorageError,
            IngestError::Catalog(err) => err.code(),
        }
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl IngestFormat {
    pub fn noun(self) -> &'static str {
        match self {
            IngestFormat::Csv => "CSV",
            IngestFormat::JsonLines => "JSON lines",
        }
    }
}

pub enum IngestMessage {
    Ingest {
        dataset: String,
        format: IngestFormat,
        /// Overwrite the dataset (a new Lance version holding only this
        /// file, its schema the file's) instead of appending.
        replace: bool,
        chunks: mpsc::Receiver<UploadChunk>,
        reply: RpcReplyPort<Result<IngestOutcome, IngestError>>,
    },
    /// Removes a dataset: its catalog entry, then its files. Refused
    /// while an ingest into it runs.
    Drop {
        dataset: String,
        reply: RpcReplyPort<Result<(), IngestError>>,
    },
    /// Internal: the ingest into this dataset finished.
    Done(String),
    Fault(Fault),
}

impl From<Fault> for IngestMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

pub struct IngestActor;

pub struct IngestArguments {
    pub data_dir: PathBuf,
    pub settings: IngestSettings,
    /// `fsync`: the dataset is written through the syncing object store.
    pub durability: crate::config::Durability,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
    pub call_timeout: Duration,
}

/// Aborts the task when dropped (with the actor's state).
struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct IngestState {
    context: Arc<IngestArguments>,
    running: HashMap<String, Running>,
}

impl Actor for IngestActor {
    type Msg = IngestMessage;
    type State = IngestState;
    type Arguments = IngestArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: IngestArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let tmp = args.data_dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        // Spool files of ingests a crash interrupted: nothing will finish them.
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        purge_dropped(&args.data_dir);
        Ok(IngestState {
            context: Arc::new(args),
            running: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IngestMessage::Ingest {
                dataset,
                format,
                replace,
                chunks,
                reply,
            } => {
                if let Err(err) = validate_dataset_name(&dataset) {
                    let _ = reply.send(Err(IngestError::InvalidName(err)));
                    return Ok(());
                }
                if state.running.contains_key(&dataset) {
                    let _ = reply.send(Err(IngestError::Busy(dataset)));
                    return Ok(());
                }
                let most = state.context.settings.max_concurrent;
                if state.running.len() >= most {
                    let _ = reply.send(Err(IngestError::TooManyIngests(most)));
                    return Ok(());
                }
                let context = state.context.clone();
                let name = dataset.clone();
                let handle = tokio::spawn(async move {
                    let outcome = ingest(&context, &name, format, replace, chunks).await;
                    if let Err(err) = &outcome {
                        tracing::warn!(dataset = %name, %err, "ingest refused");
                    }
                    // Done goes first: it is queued before the caller can
                    // send its next ingest of this dataset, so that one is
                    // never refused as busy.
                    let _ = myself.send_message(IngestMessage::Done(name));
                    let _ = reply.send(outcome);
                });
                state.running.insert(dataset, Running(handle));
            }
            IngestMessage::Drop { dataset, reply } => {
                if let Err(err) = validate_dataset_name(&dataset) {
                    let _ = reply.send(Err(IngestError::InvalidName(err)));
                    return Ok(());
                }
                if state.running.contains_key(&dataset) {
                    let _ = reply.send(Err(IngestError::Busy(dataset)));
                    return Ok(());
                }
                // Held like an ingest, so none starts until it is gone.
                let context = state.context.clone();
                let name = dataset.clone();
                let handle = tokio::spawn(async move {
                    let outcome = drop_dataset(&context, &name).await;
                    let _ = myself.send_message(IngestMessage::Done(name));
                    let _ = reply.send(outcome);
                });
                state.running.insert(dataset, Running(handle));
            }
            IngestMessage::Done(dataset) => {
                state.running.remove(&dataset);
            }
            IngestMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

async fn ingest(
    context: &IngestArguments,
    dataset: &str,
    format: IngestFormat,
    replace: bool,
    chunks: mpsc::Receiver<UploadChunk>,
) -> Result<IngestOutcome, IngestError> {
    let malformed = |reason: String| IngestError::Malformed { format, reason };
    let (file, sha256, bytes) = spool(context, chunks, format).await?;
    let existing = context
        .directory
        .call(
            catalog::NAME,
            |reply| CatalogMessage::Get {
                name: dataset.to_string(),
                reply,
            },
            context.call_timeout,
        )
        .await?;
    if let Some(manifest) = &existing {
        // Appending a file again changes nothing; replacing with the file
        // the dataset already is changes nothing either.
        // (A replace starts the record afresh, so `ingests` is what the
        // dataset holds now.)
        let same = match replace {
            false => manifest.ingests.iter().any(|i| i.sha256 == sha256),
            true => manifest.ingests.len() == 1 && manifest.ingests[0].sha256 == sha256,
        };
        if same {
            return Ok(IngestOutcome {
                status: "unchanged",
                rows: 0,
                manifest: manifest.clone(),
            });
        }
    }

    let uri = catalog::dataset_uri(dataset);
    let source = std::io::BufReader::new(
        file.reopen()
            .map_err(|e| IngestError::Storage(e.to_string()))?,
    );
    // Reading the file to infer its schema is blocking work (JSON lines
    // are read whole: a key first seen late would otherwise be dropped).
    let (schema, mut source) = tokio::task::spawn_blocking(move || {
        let mut source = source;
        let inferred = match format {
            IngestFormat::Csv => Format::default()
                .with_header(true)
                .infer_schema(&mut source, Some(INFER_ROWS))
                .map(|(schema, _)| schema),
            IngestFormat::JsonLines => {
                infer_json_schema_from_seekable(&mut source, None).map(|(schema, _)| schema)
            }
        };
        inferred.map(|schema| (schema, source))
    })
    .await
    .map_err(|e| IngestError::Storage(e.to_string()))?
    .map_err(|e| malformed(e.to_string()))?;
    if schema.fields().is_empty() {
        return Err(malformed(match format {
            IngestFormat::Csv => "no header row".into(),
            IngestFormat::JsonLines => "no object with a field".into(),
        }));
    }
    check_columns(&context.settings, &schema, format)?;
    let incoming = columns(&schema);
    if let (Some(manifest), false) = (&existing, replace) {
        let drift = SchemaDrift::between(&manifest.schema, &incoming);
        if !drift.is_empty() {
            return Err(IngestError::SchemaDrift {
                dataset: dataset.to_string(),
                drift,
            });
        }
    }
    source
        .seek(SeekFrom::Start(0))
        .map_err(|e| IngestError::Storage(e.to_string()))?;
    let schema = Arc::new(schema);
    let reader: Box<dyn RecordBatchReader + Send> = match format {
        IngestFormat::Csv => Box::new(
            ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build(source)
                .map_err(|e| malformed(e.to_string()))?,
        ),
        IngestFormat::JsonLines => Box::new(
            JsonReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .build(source)
                .map_err(|e| malformed(e.to_string()))?,
        ),
    };
    let batches = RecordBatchIterator::new(reader, schema.clone());
    let mode = match (&existing, replace) {
        (None, _) => WriteMode::Create,
        (Some(_), false) => WriteMode::Append,
        (Some(_), true) => WriteMode::Overwrite,
    };
    let params = WriteParams {
        mode,
        store_params: Some(crate::durability::store_params(context.durability)),
        ..WriteParams::default()
    };
    let write_uri = crate::durability::dataset_uri(
        &dataset_path(&context.data_dir, dataset),
        context.durability,
    )
    .map_err(|e| IngestError::Storage(e.to_string()))?;
    let written = Dataset::write(batches, write_uri.as_str(), Some(params))
        .await
        .map_err(|e| classify(e, format))?;
    if replace {
        // The replaced rows are in the older versions' files: remove them
        // now, not at some later clean-up (a replace is how a column that
        // should never have been ingested is taken out).
        match written
            .cleanup_old_versions(chrono::Duration::zero(), Some(false), Some(false))
            .await
        {
            Ok(stats) => tracing::info!(
                dataset,
                versions = stats.old_versions,
                bytes = stats.bytes_removed,
                "replaced rows removed from disk"
            ),
            Err(err) => tracing::warn!(dataset, %err, "removing the replaced versions failed"),
        }
    }
    context
        .metrics
        .lance_commits
        .with_label_values(&[&format!("datasets/{dataset}")])
        .inc();

    let row_count = written
        .count_rows(None)
        .await
        .map_err(|e| classify(e, format))? as u64;
    let previous_rows = match replace {
        true => 0,
        false => existing.as_ref().map_or(0, |m| m.row_count),
    };
    let now = Utc::now();
    let mut manifest = existing.clone().unwrap_or_else(|| DatasetManifest {
        name: dataset.to_string(),
        uri: uri.clone(),
        schema: incoming.clone(),
        row_count: 0,
        version: 0,
        created_at: now,
        updated_at: now,
        ingests: Vec::new(),
    });
    let rows = row_count.saturating_sub(previous_rows);
    if replace {
        manifest.schema = incoming.clone();
        // The dataset is this file now: earlier files may be appended again.
        manifest.ingests.clear();
    }
    manifest.row_count = row_count;
    manifest.version = written.version_id();
    manifest.updated_at = now;
    manifest.ingests.push(IngestRecord {
        sha256,
        rows,
        version: manifest.version,
        at: now,
    });
    context
        .directory
        .call(
            catalog::NAME,
            |reply| CatalogMessage::Put {
                manifest: manifest.clone(),
                reply,
            },
            context.call_timeout,
        )
        .await?
        .map_err(IngestError::Storage)?;
    tracing::info!(dataset, rows, bytes, version = manifest.version, "ingested");
    Ok(IngestOutcome {
        status: match (existing.is_some(), replace) {
            (false, _) => "created",
            (true, false) => "appended",
            (true, true) => "replaced",
        },
        rows,
        manifest,
    })
}

/// Writes the streamed body to a temporary file (deleted on drop) while
/// hashing it; refuses bodies over the limit.
async fn spool(
    context: &IngestArguments,
    mut chunks: mpsc::Receiver<UploadChunk>,
    format: IngestFormat,
) -> Result<(tempfile::NamedTempFile, String, u64), IngestError> {
    let storage = |e: std::io::Error| IngestError::Storage(e.to_string());
    let mut file =
        tempfile::NamedTempFile::new_in(context.data_dir.join("tmp")).map_err(storage)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut checked_at = 0u64;
    let mut ended = false;
    check_disk(context)?;
    while let Some(chunk) = chunks.recv().await {
        match chunk {
            UploadChunk::Data(bytes) => {
                size += bytes.len() as u64;
                if size > context.settings.max_bytes {
                    return Err(IngestError::TooLarge {
                        limit: context.settings.max_bytes,
                    });
                }
                if size - checked_at >= DISK_CHECK_EVERY {
                    checked_at = size;
                    check_disk(context)?;
                }
                hasher.update(&bytes);
                file.write_all(&bytes).map_err(storage)?;
            }
            UploadChunk::Abort(reason) => return Err(IngestError::Aborted(reason)),
            UploadChunk::End => {
                ended = true;
                break;
            }
        }
    }
    if !ended {
        return Err(IngestError::Aborted(
            "the request ended before its body".into(),
        ));
    }
    file.flush().map_err(storage)?;
    if size == 0 {
        return Err(IngestError::Malformed {
            format,
            reason: "the body is empty".into(),
        });
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((file, hex, size))
}

/// Decoding errors surface from inside the Lance write: report them as
/// malformed input (arrow names the line), and so are schemas Lance will
/// not store; the rest are storage failures.
fn classify(err: lance::Error, format: IngestFormat) -> IngestError {
    let message = err.to_string();
    let client = matches!(
        err,
        lance::Error::Schema { .. }
            | lance::Error::SchemaMismatch { .. }
            | lance::Error::InvalidInput { .. }
            | lance::Error::Arrow { .. }
    );
    if client
        || message.contains("Parser error")
        || message.contains("parsing")
        || message.contains("CSV")
        || message.contains("Csv")
        || message.contains("Json error")
        || message.contains("JSON")
    {
        IngestError::Malformed {
            format,
            reason: message,
        }
    } else {
        IngestError::Storage(message)
    }
}

/// The header's columns within the caps, each name once.
fn check_columns(
    settings: &IngestSettings,
    schema: &lance::deps::arrow_schema::Schema,
    format: IngestFormat,
) -> Result<(), IngestError> {
    let fields = schema.fields();
    if fields.len() > settings.max_columns {
        return Err(IngestError::TooManyColumns {
            max: settings.max_columns,
            got: fields.len(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for field in fields {
        let name = field.name();
        if name.len() > settings.max_column_name_bytes {
            return Err(IngestError::ColumnNameTooLong {
                max: settings.max_column_name_bytes,
                got: name.len(),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(IngestError::Malformed {
                format,
                reason: format!(
                    "column {:?} appears twice in the header",
                    name.chars().take(100).collect::<String>()
                ),
            });
        }
    }
    Ok(())
}

/// Refuses to go on when the data directory's disk is nearly full.
fn check_disk(context: &IngestArguments) -> Result<(), IngestError> {
    let min = context.settings.min_free_bytes;
    match crate::actors::alarms::disk_space(&context.data_dir) {
        Some((free, _)) if free < min => Err(IngestError::DiskFull { free, min }),
        _ => Ok(()),
    }
}

/// Removes `dataset`: renamed aside first (one atomic step: a crash after
/// it leaves nothing the catalog would bring back), then out of the
/// catalog, then its files.
async fn drop_dataset(context: &IngestArguments, dataset: &str) -> Result<(), IngestError> {
    let storage = |e: std::io::Error| IngestError::Storage(e.to_string());
    let path = dataset_path(&context.data_dir, dataset);
    let existing = context
        .directory
        .call(
            catalog::NAME,
            |reply| CatalogMessage::Get {
                name: dataset.to_string(),
                reply,
            },
            context.call_timeout,
        )
        .await?;
    if existing.is_none() && !path.exists() {
        return Err(IngestError::NotFound(dataset.to_string()));
    }
    let aside = context
        .data_dir
        .join("datasets")
        .join(format!("{DROPPED}{}", uuid::Uuid::new_v4().simple()));
    let moved = path.exists();
    if moved {
        std::fs::rename(&path, &aside).map_err(storage)?;
        if matches!(context.durability, crate::config::Durability::Fsync) {
            // The rename must survive a power loss before the catalog
            // forgets the dataset: else a restart would find it again.
            if let Some(parent) = aside.parent() {
                crate::durability::sync_dir(parent).map_err(storage)?;
            }
        }
    }
    let removed = context
        .directory
        .call(
            catalog::NAME,
            |reply| CatalogMessage::Remove {
                name: dataset.to_string(),
                reply,
            },
            context.call_timeout,
        )
        .await
        .map_err(IngestError::from)
        .and_then(|outcome| outcome.map_err(IngestError::Storage));
    if let Err(err) = removed {
        // The catalog still lists it: put the data back where it lists it.
        if moved {
            if let Err(undo) = std::fs::rename(&aside, &path) {
                tracing::error!(dataset, error = %undo, "could not put a dataset back after a failed drop");
            }
        }
        return Err(err);
    }
    if aside.exists() {
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(aside))
            .await
            .map_err(|e| IngestError::Storage(e.to_string()))?
            .map_err(storage)?;
    }
    tracing::info!(dataset, "dataset dropped");
    Ok(())
}

/// Finishes removing datasets a crash interrupted mid-drop.
fn purge_dropped(data_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("datasets")) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(DROPPED) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
