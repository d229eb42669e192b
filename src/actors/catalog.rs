//! The `catalog` actor: every dataset's manifest (name, Lance URI, schema,
//! rows, version, times, ingests), persisted atomically in
//! `data.dir/catalog/catalog.json`.
//!
//! On every start the catalog is reconciled with the Lance datasets under
//! `data.dir/datasets/`: a dataset whose commit landed but whose manifest
//! update did not (a crash in between) gets its version and row count from
//! Lance, and a dataset missing from the file is rebuilt from Lance, so after
//! a process restart every dataset is queryable again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use lance::deps::arrow_schema::Schema;
use lance::Dataset;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::domain::datasets::{Column, DatasetManifest};
use crate::supervision::Fault;

pub const NAME: &str = "catalog";

pub struct CatalogActor;

pub struct CatalogArguments {
    pub data_dir: PathBuf,
    /// `fsync`: the catalog file is synced before a change is acknowledged.
    pub durability: crate::config::Durability,
}

pub enum CatalogMessage {
    Get {
        name: String,
        reply: RpcReplyPort<Option<DatasetManifest>>,
    },
    List {
        reply: RpcReplyPort<Vec<DatasetManifest>>,
    },
    /// Records a manifest (after a successful ingest commit).
    Put {
        manifest: DatasetManifest,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Forgets a dataset (its files are the caller's to remove).
    Remove {
        name: String,
        reply: RpcReplyPort<Result<(), String>>,
    },
    Fault(Fault),
}

impl From<Fault> for CatalogMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct CatalogFile {
    datasets: BTreeMap<String, DatasetManifest>,
}

pub struct CatalogState {
    file: PathBuf,
    datasets: BTreeMap<String, DatasetManifest>,
    durability: crate::config::Durability,
}

/// `data.dir/datasets/<name>.lance`
pub fn dataset_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(dataset_uri(name))
}

/// A dataset's place relative to `data.dir` (`datasets/<name>.lance`):
/// what the catalog records and shows, so no answer names the host's
/// directories.
pub fn dataset_uri(name: &str) -> String {
    format!("datasets/{name}.lance")
}

/// The catalog's view of an Arrow schema.
pub fn columns(schema: &Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

impl Actor for CatalogActor {
    type Msg = CatalogMessage;
    type State = CatalogState;
    type Arguments = CatalogArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CatalogArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let dir = args.data_dir.join("catalog");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(args.data_dir.join("datasets"))?;
        let file = dir.join("catalog.json");
        let mut datasets = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<CatalogFile>(&bytes)
                .map(|f| f.datasets)
                .unwrap_or_else(|err| {
                    tracing::error!(%err, "catalog.json is unreadable; rebuilding it from the datasets");
                    BTreeMap::new()
                }),
            Err(_) => BTreeMap::new(),
        };
        reconcile(&args.data_dir, &mut datasets).await;
        let state = CatalogState {
            file,
            datasets,
            durability: args.durability,
        };
        state.persist()?;
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CatalogMessage::Get { name, reply } => {
                let _ = reply.send(state.datasets.get(&name).cloned());
            }
            CatalogMessage::List { reply } => {
                let _ = reply.send(state.datasets.values().cloned().collect());
            }
            CatalogMessage::Put { manifest, reply } => {
                let previous = state
                    .datasets
                    .insert(manifest.name.clone(), manifest.clone());
                let result = state.persist().map_err(|e| e.to_string());
                if result.is_err() {
                    // Keep memory and disk in agreement.
                    match previous {
                        Some(previous) => state.datasets.insert(manifest.name.clone(), previous),
                        None => state.datasets.remove(&manifest.name),
                    };
                }
                let _ = reply.send(result);
            }
            CatalogMessage::Remove { name, reply } => {
                let previous = state.datasets.remove(&name);
                let result = state.persist().map_err(|e| e.to_string());
                if let (Err(_), Some(previous)) = (&result, previous) {
                    state.datasets.insert(name, previous);
                }
                let _ = reply.send(result);
            }
            CatalogMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

impl CatalogState {
    fn persist(&self) -> std::io::Result<()> {
        let file = CatalogFile {
            datasets: self.datasets.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        crate::durability::write_atomically(&self.file, &json, self.durability)
    }
}

/// Brings the manifests in line with the Lance datasets on disk.
async fn reconcile(data_dir: &Path, datasets: &mut BTreeMap<String, DatasetManifest>) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("datasets")) else {
        return;
    };
    let mut on_disk = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lance"))
        else {
            continue;
        };
        on_disk.push(name.to_string());
        let dataset = match Dataset::open(&path.display().to_string()).await {
            Ok(dataset) => dataset,
            Err(err) => {
                tracing::error!(dataset = %name, %err, "dataset cannot be opened; left out of the catalog");
                datasets.remove(name);
                continue;
            }
        };
        let rows = dataset.count_rows(None).await.unwrap_or(0) as u64;
        let version = dataset.version_id();
        let schema = columns(&Schema::from(dataset.schema()));
        let now = Utc::now();
        let manifest = datasets.entry(name.to_string()).or_insert_with(|| {
            tracing::warn!(dataset = %name, "dataset missing from the catalog; rebuilt from Lance");
            DatasetManifest {
                name: name.to_string(),
                uri: dataset_uri(name),
                schema: schema.clone(),
                row_count: rows,
                version,
                created_at: now,
                updated_at: now,
                ingests: Vec::new(),
            }
        });
        // Catalogs written before URIs were relative named the host's path.
        manifest.uri = dataset_uri(name);
        if manifest.version != version || manifest.row_count != rows {
            tracing::warn!(dataset = %name, catalog = manifest.version, lance = version, "catalog refreshed from Lance");
            manifest.version = version;
            manifest.row_count = rows;
            manifest.schema = schema;
            manifest.updated_at = now;
            // Ingests the catalog recorded past what Lance has never landed.
            manifest.ingests.retain(|i| i.version <= version);
        }
    }
    datasets.retain(|name, _| on_disk.contains(name));
}
