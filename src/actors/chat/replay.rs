//! The replay log: every replay run appended to the Lance dataset
//! `replay_runs` (schema `replay_run.v1`), catalogued like an ingested
//! dataset so `/v1/sql` reads it. Nested values (citations, versions, the
//! verdict) are JSON text columns.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchIterator, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use lance::deps::arrow_schema::{DataType, Field, Schema, TimeUnit};
use lance::Dataset;

use super::ChatError;
use crate::actors::catalog::{self, columns, dataset_path, CatalogMessage};
use crate::config::Durability;
use crate::domain::chat::ReplayRun;
use crate::domain::datasets::DatasetManifest;
use crate::supervision::Directory;

pub const DATASET: &str = "replay_runs";

pub struct ReplayLog {
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub directory: Directory,
    pub call_timeout: Duration,
    /// One appender at a time: one committer for the dataset.
    pub lock: tokio::sync::Mutex<()>,
}

fn schema() -> Arc<Schema> {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        text("run_id", false),
        text("schema", false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("query", false),
        text("role", true),
        count("k"),
        text("provider", false),
        text("model", false),
        text("retrieved_ids", false),
        text("citations", false),
        text("versions", false),
        text("prompt", false),
        text("answer", false),
        text("validate", true),
        Field::new("verdict_valid", DataType::Boolean, true),
        text("verdict", true),
        count("retrieve_ms"),
        count("chat_ms"),
        count("prompt_tokens"),
        count("completion_tokens"),
    ]))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, ChatError> {
    serde_json::to_string(value).map_err(|e| ChatError::Internal(e.to_string()))
}

fn to_batch(run: &ReplayRun) -> Result<RecordBatch, ChatError> {
    let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let maybe = |v: Option<String>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let count = |v: u64| Arc::new(UInt64Array::from(vec![v])) as ArrayRef;
    let ids: Vec<&str> = run.citations.iter().map(|c| c.id.as_str()).collect();
    let columns: Vec<ArrayRef> = vec![
        text(&run.run_id),
        text(&run.schema),
        Arc::new(
            TimestampMicrosecondArray::from(vec![run.at.timestamp_micros()]).with_timezone("UTC"),
        ),
        text(&run.query),
        maybe(run.role.clone()),
        count(run.k as u64),
        text(&run.provider),
        text(&run.model),
        text(&json(&ids)?),
        text(&json(&run.citations)?),
        text(&json(&run.versions)?),
        text(&run.prompt),
        text(&run.answer),
        maybe(run.validate.map(|v| v.as_str().to_string())),
        Arc::new(BooleanArray::from(vec![run
            .verdict
            .as_ref()
            .map(|v| v.valid)])),
        maybe(run.verdict.as_ref().map(json).transpose()?),
        count(run.retrieve_ms),
        count(run.chat_ms),
        count(run.prompt_tokens),
        count(run.completion_tokens),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| ChatError::Storage(e.to_string()))
}

impl ReplayLog {
    fn path(&self) -> PathBuf {
        dataset_path(&self.data_dir, DATASET)
    }

    /// Appends `run` (creating the dataset on first use) and records the
    /// new version in the catalog. Returns the version.
    pub async fn append(&self, run: &ReplayRun) -> Result<u64, ChatError> {
        let storage = |e: lance::Error| ChatError::Storage(format!("{DATASET}: {e}"));
        let _one_committer = self.lock.lock().await;
        let path = self.path();
        let exists = path.join("_versions").exists();
        let uri = crate::durability::dataset_uri(&path, self.durability)
            .map_err(|e| ChatError::Storage(e.to_string()))?;
        let params = WriteParams {
            mode: if exists {
                WriteMode::Append
            } else {
                WriteMode::Create
            },
            store_params: Some(crate::durability::store_params(self.durability)),
            ..WriteParams::default()
        };
        let batch = to_batch(run)?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema());
        let written = Dataset::write(reader, uri.as_str(), Some(params))
            .await
            .map_err(storage)?;
        let rows = written.count_rows(None).await.map_err(storage)? as u64;
        let now = Utc::now();
        let existing = self
            .directory
            .call(
                catalog::NAME,
                |reply| CatalogMessage::Get {
                    name: DATASET.to_string(),
                    reply,
                },
                self.call_timeout,
            )
            .await?;
        let mut manifest = existing.unwrap_or_else(|| DatasetManifest {
            name: DATASET.to_string(),
            uri: catalog::dataset_uri(DATASET),
            schema: columns(&schema()),
            row_count: 0,
            version: 0,
            created_at: now,
            updated_at: now,
            ingests: Vec::new(),
        });
        manifest.row_count = rows;
        manifest.version = written.version_id();
        manifest.updated_at = now;
        self.directory
            .call(
                catalog::NAME,
                |reply| CatalogMessage::Put {
                    manifest: manifest.clone(),
                    reply,
                },
                self.call_timeout,
            )
            .await?
            .map_err(ChatError::Storage)?;
        Ok(manifest.version)
    }

    /// The run `run_id`, if it was logged.
    pub async fn get(&self, run_id: &str) -> Result<Option<ReplayRun>, ChatError> {
        let storage = |e: lance::Error| ChatError::Storage(format!("{DATASET}: {e}"));
        // Run ids are 32 hex digits; anything else cannot be one (and never
        // reaches the filter expression).
        if run_id.len() != 32 || !run_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let path = self.path();
        if !path.join("_versions").exists() {
            return Ok(None);
        }
        let dataset = Dataset::open(&path.to_string_lossy())
            .await
            .map_err(storage)?;
        let mut scanner = dataset.scan();
        scanner
            .filter(&format!("run_id = '{run_id}'"))
            .map_err(storage)?;
        let mut stream = scanner.try_into_stream().await.map_err(storage)?;
        while let Some(batch) = stream.try_next().await.map_err(storage)? {
            if batch.num_rows() > 0 {
                return from_batch(&batch).map(Some);
            }
        }
        Ok(None)
    }
}

fn from_batch(batch: &RecordBatch) -> Result<ReplayRun, ChatError> {
    let bad = |what: &str| ChatError::Storage(format!("{DATASET}: column {what} unreadable"));
    let text = |name: &str| -> Result<Option<String>, ChatError> {
        let column = batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad(name))?;
        Ok((!column.is_null(0)).then(|| column.value(0).to_string()))
    };
    let required = |name: &str| text(name)?.ok_or_else(|| bad(name));
    let count = |name: &str| -> Result<u64, ChatError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .map(|c| c.value(0))
            .ok_or_else(|| bad(name))
    };
    let parse = |name: &str, text: &str| -> Result<serde_json::Value, ChatError> {
        serde_json::from_str(text).map_err(|_| bad(name))
    };
    let at = batch
        .column_by_name("at")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .and_then(|c| chrono::DateTime::from_timestamp_micros(c.value(0)))
        .ok_or_else(|| bad("at"))?;
    let validate = text("validate")?
        .map(|v| serde_json::from_value(serde_json::Value::String(v)))
        .transpose()
        .map_err(|_| bad("validate"))?;
    let verdict = text("verdict")?
        .map(|v| parse("verdict", &v))
        .transpose()?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| bad("verdict"))?;
    Ok(ReplayRun {
        run_id: required("run_id")?,
        schema: required("schema")?,
        at,
        query: required("query")?,
        role: text("role")?,
        k: count("k")? as usize,
        provider: required("provider")?,
        model: required("model")?,
        citations: serde_json::from_value(parse("citations", &required("citations")?)?)
            .map_err(|_| bad("citations"))?,
        versions: serde_json::from_value(parse("versions", &required("versions")?)?)
            .map_err(|_| bad("versions"))?,
        prompt: required("prompt")?,
        answer: required("answer")?,
        validate,
        verdict,
        retrieve_ms: count("retrieve_ms")?,
        chat_ms: count("chat_ms")?,
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
    })
}
