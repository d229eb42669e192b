//! The `ingest` actor: CSV into Lance datasets.
//!
//! The HTTP edge streams the body in chunks; a task owned by this actor
//! spools it to a temporary file while hashing it (SHA-256), then:
//! the same file ingested before → `unchanged`; a schema that differs from
//! the dataset's → `schema_drift`, nothing written; otherwise the CSV is
//! decoded in batches (memory does not grow with the file) and written as
//! one Lance commit — created on first ingest, appended after — and the
//! manifest recorded in the catalog.
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
use lance::deps::datafusion::arrow::csv::reader::Format;
use lance::deps::datafusion::arrow::csv::ReaderBuilder;
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
/// Rows read to infer the schema.
const INFER_ROWS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    InvalidName(String),
    #[error("the CSV is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was interrupted: {0}")]
    Aborted(String),
    #[error("malformed CSV: {0}")]
    Malformed(String),
    #[error("the CSV's schema differs from dataset '{dataset}': {drift}")]
    SchemaDrift { dataset: String, drift: SchemaDrift },
    #[error("an ingest into '{0}' is already running; retry when it is done")]
    Busy(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Catalog(#[from] CallError),
}

pub enum IngestMessage {
    Ingest {
        dataset: String,
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
                    let outcome = ingest(&context, &name, chunks).await;
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
    chunks: mpsc::Receiver<UploadChunk>,
) -> Result<IngestOutcome, IngestError> {
    let (file, sha256, bytes) = spool(context, chunks).await?;
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
        if manifest.ingests.iter().any(|i| i.sha256 == sha256) {
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
    let mut source = file
        .reopen()
        .map_err(|e| IngestError::Storage(e.to_string()))?;
    let (schema, _) = Format::default()
        .with_header(true)
        .infer_schema(&mut source, Some(INFER_ROWS))
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    if schema.fields().is_empty() {
        return Err(IngestError::Malformed("no header row".into()));
    }
    let incoming = columns(&schema);
    if let Some(manifest) = &existing {
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
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(BATCH_ROWS)
        .build(source)
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    let batches = RecordBatchIterator::new(reader, schema.clone());
    let mode = if existing.is_some() {
        WriteMode::Append
    } else {
        WriteMode::Create
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
        .map_err(classify)?;
    context
        .metrics
        .lance_commits
        .with_label_values(&[&format!("datasets/{dataset}")])
        .inc();

    let row_count = written.count_rows(None).await.map_err(classify)? as u64;
    let previous_rows = existing.as_ref().map_or(0, |m| m.row_count);
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
        status: if existing.is_some() {
            "appended"
        } else {
            "created"
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
        return Err(IngestError::Malformed(
            "the body is empty; a header row is required".into(),
        ));
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((file, hex, size))
}

/// CSV decoding errors surface from inside the Lance write: report them as
/// malformed input (arrow names the line), the rest as storage failures.
fn classify(err: lance::Error) -> IngestError {
    let message = err.to_string();
    if message.contains("Parser error")
        || message.contains("parsing")
        || message.contains("CSV")
        || message.contains("Csv")
    {
        IngestError::Malformed(message)
    } else {
        IngestError::Storage(message)
    }
}
