//! The `vector_catalog` actor: creates, lists and drops indexes. Its
//! mailbox serialises those changes, so two creates of one name cannot race.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::index::{actor_name, IndexMessage};
use super::snapshot::SnapshotPaths;
use super::supervisor::read_definition;
use super::{IndexError, VectorsContext, SUPERVISOR};
use crate::domain::analysis::Analysis;
use crate::domain::vectors::{validate_name, CreateIndex, IndexDefinition, IndexSummary, Reindex};
use crate::durability::write_atomically;
use crate::supervision::{ChildStatus, Fault, SupervisorError, SupervisorMessage};

/// Tree name of the catalog.
pub const NAME: &str = "vector_catalog";

/// How long a `List` waits for each index's count.
const COUNT_TIMEOUT: Duration = Duration::from_millis(500);

pub struct VectorCatalogActor;

pub enum VectorCatalogMessage {
    Create {
        request: CreateIndex,
        reply: RpcReplyPort<Result<IndexDefinition, IndexError>>,
    },
    List {
        reply: RpcReplyPort<Vec<IndexSummary>>,
    },
    Drop {
        name: String,
        reply: RpcReplyPort<Result<(), IndexError>>,
    },
    /// Moves an index to the current analysis (see `index::reindex`):
    /// records the move in its definition and restarts it, which starts
    /// the pass. Nothing happens to an index already moved or moving.
    Reindex {
        name: String,
        reply: RpcReplyPort<Result<ReindexStarted, IndexError>>,
    },
    /// The pass of index `name` has ended: the record goes.
    ReindexDone {
        name: String,
        reply: RpcReplyPort<Result<(), IndexError>>,
    },
    Fault(Fault),
}

/// What a reindex request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReindexStarted {
    /// The index was moved from `from`, and restarted to run the pass.
    Started { from: Analysis },
    /// A move from `from` was already under way.
    Running { from: Analysis },
    /// The index already has the current analysis.
    Current,
}

impl From<Fault> for VectorCatalogMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

impl Actor for VectorCatalogActor {
    type Msg = VectorCatalogMessage;
    type State = VectorsContext;
    type Arguments = VectorsContext;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        context: VectorsContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        std::fs::create_dir_all(&context.dir)?;
        Ok(context)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        context: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            VectorCatalogMessage::Create { request, reply } => {
                let _ = reply.send(create(context, request).await);
            }
            VectorCatalogMessage::List { reply } => {
                let _ = reply.send(list(context).await);
            }
            VectorCatalogMessage::Drop { name, reply } => {
                let _ = reply.send(drop_index(context, &name).await);
            }
            VectorCatalogMessage::Reindex { name, reply } => {
                let _ = reply.send(reindex(context, &name).await);
            }
            VectorCatalogMessage::ReindexDone { name, reply } => {
                let _ = reply.send(reindex_done(context, &name));
            }
            VectorCatalogMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

fn exists(context: &VectorsContext, name: &str) -> bool {
    context.definition_path(name).exists() || context.board.status(&actor_name(name)).is_some()
}

async fn create(
    context: &VectorsContext,
    request: CreateIndex,
) -> Result<IndexDefinition, IndexError> {
    let definition =
        request.into_definition(context.hnsw_defaults(), context.settings.vectors.storage)?;
    let name = definition.name.clone();
    if exists(context, &name) {
        return Err(IndexError::AlreadyExists(name));
    }
    // Leftovers of a drop interrupted by a crash belong to no index.
    remove_data(context, &name).await;
    write_definition(context, &definition)?;

    let spec = context.index_spec(definition.clone());
    let started = context
        .directory
        .call(
            SUPERVISOR,
            |reply| SupervisorMessage::StartChild(spec, reply),
            context.settings.request_timeout(),
        )
        .await;
    match started {
        // Started meanwhile by a restart of the supervisor, from the definition.
        Ok(Ok(())) | Ok(Err(SupervisorError::DuplicateChild(_))) => {
            // `201` means usable: wait for the (empty, so quick) load, so a
            // client's first write is not a `503 index_loading`.
            let actor = actor_name(&name);
            let loaded = context
                .board
                .wait_for(&actor, context.settings.request_timeout(), |status| {
                    !matches!(
                        status,
                        Some(ChildStatus::Starting | ChildStatus::Restarting)
                    )
                })
                .await;
            match loaded {
                Ok(Some(ChildStatus::Running)) => {
                    tracing::info!(index = %name, dimension = definition.dimension, "index created");
                    Ok(definition)
                }
                Ok(status) | Err(status) => Err(IndexError::Internal(format!(
                    "index '{name}' was created but is not running ({status:?})"
                ))),
            }
        }
        Ok(Err(err)) => {
            let _ = std::fs::remove_file(context.definition_path(&name));
            Err(IndexError::Internal(err.to_string()))
        }
        Err(err) => {
            // The supervisor may still start it; the definition stays so a
            // restart brings the index up either way.
            Err(IndexError::Internal(format!(
                "starting the index actor: {err}"
            )))
        }
    }
}

/// Persists `definition` (atomically, as durable as the data).
fn write_definition(
    context: &VectorsContext,
    definition: &IndexDefinition,
) -> Result<(), IndexError> {
    let json =
        serde_json::to_vec_pretty(definition).map_err(|e| IndexError::Internal(e.to_string()))?;
    let path = context.definition_path(&definition.name);
    write_atomically(&path, &json, context.settings.data.durability).map_err(|source| {
        super::store::StoreError::Io {
            action: "write",
            path: path.clone(),
            source,
        }
    })?;
    Ok(())
}

/// The definition of an existing index, as persisted.
fn persisted(context: &VectorsContext, name: &str) -> Result<IndexDefinition, IndexError> {
    let path = context.definition_path(name);
    if validate_name(name).is_err() || !path.exists() {
        return Err(IndexError::NotFound(name.to_string()));
    }
    read_definition(&path)
        .map_err(|e| IndexError::Internal(format!("reading the definition of '{name}': {e}")))
}

async fn reindex(context: &VectorsContext, name: &str) -> Result<ReindexStarted, IndexError> {
    let mut definition = persisted(context, name)?;
    if let Some(record) = definition.reindex {
        return Ok(ReindexStarted::Running { from: record.from });
    }
    if definition.analysis == Analysis::CURRENT {
        return Ok(ReindexStarted::Current);
    }
    let from = definition.analysis;
    definition.analysis = Analysis::CURRENT;
    definition.reindex = Some(Reindex {
        from,
        started_at: chrono::Utc::now(),
    });
    // Recorded first: from here on every load of the index — this
    // restart, or any after a crash — runs (or resumes) the pass.
    write_definition(context, &definition)?;
    let restarted = context
        .directory
        .call(
            SUPERVISOR,
            |reply| SupervisorMessage::RestartChild(actor_name(name), reply),
            context.settings.request_timeout() * 4,
        )
        .await;
    match restarted {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(index = %name, %err, "restarting for the reindex; its next start runs it")
        }
        Err(err) => {
            tracing::warn!(index = %name, %err, "restarting for the reindex; its next start runs it")
        }
    }
    tracing::info!(index = %name, from = ?from, to = ?Analysis::CURRENT, "reindex started");
    Ok(ReindexStarted::Started { from })
}

fn reindex_done(context: &VectorsContext, name: &str) -> Result<(), IndexError> {
    let mut definition = persisted(context, name)?;
    if definition.reindex.take().is_some() {
        write_definition(context, &definition)?;
    }
    Ok(())
}

async fn list(context: &VectorsContext) -> Vec<IndexSummary> {
    let mut summaries = Vec::new();
    for definition in context.definitions() {
        let actor = actor_name(&definition.name);
        let status = match context.board.status(&actor) {
            Some(ChildStatus::Running) => "running",
            Some(ChildStatus::Starting) => "starting",
            Some(ChildStatus::Restarting) => "restarting",
            Some(ChildStatus::Stopped) => "stopped",
            Some(ChildStatus::Failed) => "failed",
            None => "not_started",
        };
        let count = context
            .directory
            .call(&actor, |reply| IndexMessage::Info { reply }, COUNT_TIMEOUT)
            .await
            .ok()
            .map(|info| info.count);
        summaries.push(IndexSummary {
            name: definition.name,
            dimension: definition.dimension,
            metric: definition.metric,
            status: status.to_string(),
            count,
        });
    }
    summaries
}

async fn drop_index(context: &VectorsContext, name: &str) -> Result<(), IndexError> {
    if validate_name(name).is_err() || !exists(context, name) {
        return Err(IndexError::NotFound(name.to_string()));
    }
    // Definition first: from here on no restart brings the index back.
    let _ = std::fs::remove_file(context.definition_path(name));
    let stopped = context
        .directory
        .call(
            SUPERVISOR,
            |reply| SupervisorMessage::TerminateChild(actor_name(name), reply),
            context.settings.request_timeout() * 4,
        )
        .await;
    if let Err(err) = stopped {
        tracing::warn!(index = %name, %err, "stopping the index actor");
    }
    remove_data(context, name).await;
    tracing::info!(index = %name, "index dropped");
    Ok(())
}

/// Deletes an index's data once no commit can be running on it and no
/// background work of it touches its files.
async fn remove_data(context: &VectorsContext, name: &str) {
    let fence = context.fence(name);
    let mut writer = fence.writer.lock().await;
    // Any commit still queued, and any upkeep still running, from the
    // dropped index must not write: a new generation fences them out.
    fence.advance(&mut writer).await;
    let dataset = context.dir.join(format!("{name}.lance"));
    if dataset.exists() {
        if let Err(err) = std::fs::remove_dir_all(&dataset) {
            tracing::warn!(index = %name, %err, "removing the Lance dataset");
        }
    }
    let quarantine = context.dir.join(format!("{name}.quarantine"));
    if quarantine.exists() {
        if let Err(err) = std::fs::remove_dir_all(&quarantine) {
            tracing::warn!(index = %name, %err, "removing the quarantined manifests");
        }
    }
    SnapshotPaths::new(&context.dir, name).remove();
    context.metrics.forget_index(name);
}
