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
use crate::config::IngestSettings;
use crate::domain::datasets::{
    validate_dataset_name, DatasetManifest, IngestOutcome, IngestRecord, SchemaDrift,
};
use crate::supervision::{CallError, Directory, Fault};
use crate::telemetry::Metrics;

pub const NAME: &str = "ingest";

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;
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
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Catalog(#[from] CallError),
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
        std::fs::create_dir_all(args.data_dir.join("tmp"))?;
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

    let uri = dataset_path(&context.data_dir, dataset)
        .display()
        .to_string();
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
    while let Some(chunk) = chunks.recv().await {
        match chunk {
            UploadChunk::Data(bytes) => {
                size += bytes.len() as u64;
                if size > context.settings.max_bytes {
                    return Err(IngestError::TooLarge {
                        limit: context.settings.max_bytes,
                    });
                }
                hasher.update(&bytes);
                file.write_all(&bytes).map_err(storage)?;
            }
            UploadChunk::Abort(reason) => return Err(IngestError::Aborted(reason)),
        }
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
/// malformed input (arrow names the line), the rest as storage failures.
fn classify(err: lance::Error, format: IngestFormat) -> IngestError {
    let message = err.to_string();
    if message.contains("Parser error")
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
