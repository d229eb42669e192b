//! Retrieval for chat: exact reads of pinned Lance versions, so a run's
//! context can be rebuilt later from the versions it cites.
//!
//! - `workers`: the workers index, and with `use_playbook` the playbook's
//!   recordings of the role, boosted with the matrix's arithmetic.
//! - `index:<name>`: any vector index, by the query's embedding.
//!
//! Each read names the version it read; a rerun passes the same versions
//! back and gets the same records.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ChatContext, ChatError};
use crate::actors::embed;
use crate::actors::matrix::{recordings_of, to_matrix_hit};
use crate::actors::matrix::{PLAYBOOK, WORKERS};
use crate::actors::vectors::index::{actor_name, IndexMessage};
use crate::actors::vectors::IndexError;
use crate::domain::chat::{redact_value, Citation, ContextRequest, Record, Source};
use crate::domain::matrix::{apply_playbook, MatrixHit, Playbook};
use crate::domain::vectors::{PinnedHits, PinnedSearch};
use crate::supervision::CallError;

/// What a retrieval read and found.
pub struct Retrieved {
    pub records: Vec<Record>,
    /// Index name → the Lance version read.
    pub versions: BTreeMap<String, u64>,
    /// SSN-shaped values redacted from the records.
    pub redacted: usize,
}

impl ChatContext {
    /// Retrieves `context` for `query`, at `versions` when given (a rerun),
    /// else at each index's newest version.
    pub async fn retrieve(
        &self,
        context: &ContextRequest,
        query: &str,
        versions: Option<&BTreeMap<String, u64>>,
    ) -> Result<Retrieved, ChatError> {
        let source = Source::parse(&context.source)?;
        let vector = self.embed(query).await?;
        let at = |index: &str| versions.and_then(|v| v.get(index).copied());
        let mut read = BTreeMap::new();
        let k = context.k.min(self.settings.max_context_records);
        let hits: Vec<MatrixHit> = match &source {
            Source::Index(name) => {
                let found = self
                    .pinned(name, &vector, k, context.filter.clone(), None, at(name))
                    .await?
                    .ok_or_else(|| IndexError::NotFound(name.clone()))?;
                read.insert(name.clone(), found.version);
                found
                    .hits
                    .into_iter()
                    .map(|h| to_matrix_hit(h, false))
                    .collect()
            }
            Source::Workers => {
                let found = self
                    .pinned(
                        WORKERS,
                        &vector,
                        k,
                        context.filter.clone(),
                        None,
                        at(WORKERS),
                    )
                    .await?
                    .ok_or(ChatError::NoWorkers)?;
                let workers_version = found.version;
                read.insert(WORKERS.to_string(), workers_version);
                let hits: Vec<MatrixHit> = found
                    .hits
                    .into_iter()
                    .map(|h| to_matrix_hit(h, false))
                    .collect();
                let role = context
                    .filter
                    .as_ref()
                    .and_then(|f| f.get("role"))
                    .and_then(Value::as_str);
                match (context.use_playbook, role) {
                    // A rerun of a run that read no playbook reads none.
                    (true, Some(_)) if versions.is_some() && at(PLAYBOOK).is_none() => hits,
                    (true, Some(role)) => {
                        let (playbook, playbook_version) =
                            self.recordings(&vector, role, at(PLAYBOOK)).await?;
                        if let Some(version) = playbook_version {
                            read.insert(PLAYBOOK.to_string(), version);
                        }
                        let missing: Vec<String> = playbook
                            .boosted()
                            .filter(|id| !hits.iter().any(|h| &h.worker_id == *id))
                            .cloned()
                            .collect();
                        let mut injected = Vec::new();
                        if !missing.is_empty() {
                            let extra = self
                                .pinned(
                                    WORKERS,
                                    &vector,
                                    missing.len(),
                                    context.filter.clone(),
                                    Some(missing),
                                    Some(workers_version),
                                )
                                .await?
                                .ok_or(ChatError::NoWorkers)?;
                            injected.extend(extra.hits.into_iter().map(|h| to_matrix_hit(h, true)));
                        }
                        let mut hits = hits;
                        hits.extend(injected);
                        apply_playbook(hits, &playbook, k).hits
                    }
                    _ => hits,
                }
            }
        };
        let label = source.label();
        let lance_version = match &source {
            Source::Index(name) => read[name],
            Source::Workers => read[WORKERS],
        };
        let mut redacted = 0;
        let records = hits
            .into_iter()
            .map(|hit| {
                let mut metadata = hit.worker;
                redacted += redact_value(&mut metadata);
                Record {
                    citation: Citation {
                        source: label.clone(),
                        id: hit.worker_id,
                        lance_version,
                        distance: hit.distance,
                    },
                    metadata,
                }
            })
            .collect();
        Ok(Retrieved {
            records,
            versions: read,
            redacted,
        })
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, ChatError> {
        Ok(embed::embed_one(&self.directory, text, None, self.call_timeout).await??)
    }

    /// One pinned search; `Ok(None)` when the index does not exist.
    async fn pinned(
        &self,
        index: &str,
        vector: &[f32],
        k: usize,
        filter: Option<Map<String, Value>>,
        only_ids: Option<Vec<String>>,
        version: Option<u64>,
    ) -> Result<Option<PinnedHits>, ChatError> {
        let request = PinnedSearch {
            vector: vector.to_vec(),
            k,
            filter,
            exclude_ids: Vec::new(),
            only_ids,
            version,
        };
        let actor = actor_name(index);
        match self
            .directory
            .call_idempotent(
                &actor,
                |reply| IndexMessage::Pinned {
                    request: request.clone(),
                    reply,
                },
                self.call_timeout,
            )
            .await
        {
            Ok(found) => Ok(Some(found?)),
            Err(CallError::Unavailable { .. }) if !self.directory.known(&actor) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The recordings of `role` near the query, and the playbook version
    /// read (`None`: no playbook yet).
    async fn recordings(
        &self,
        vector: &[f32],
        role: &str,
        version: Option<u64>,
    ) -> Result<(Playbook, Option<u64>), ChatError> {
        let mut filter = Map::new();
        filter.insert("role".into(), Value::String(role.to_string()));
        let found = match self
            .pinned(
                PLAYBOOK,
                vector,
                self.matrix.playbook_candidates,
                Some(filter),
                None,
                version,
            )
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => return Ok((Playbook::default(), None)),
            // A playbook of another dimension (another embedder) cannot match.
            Err(ChatError::Index(IndexError::Invalid(_))) => {
                return Ok((Playbook::default(), None))
            }
            Err(err) => return Err(err),
        };
        // Weighed as of the newest recording read, not the clock: a rerun
        // of the same version weighs them alike, however much later.
        let near: Vec<_> = found
            .hits
            .into_iter()
            .filter(|hit| hit.distance <= self.matrix.playbook_max_distance)
            .collect();
        let as_of = near
            .iter()
            .filter_map(|hit| hit.metadata.get("recorded_at"))
            .filter_map(|at| {
                serde_json::from_value::<chrono::DateTime<chrono::Utc>>(at.clone()).ok()
            })
            .max()
            .unwrap_or_else(chrono::Utc::now);
        let weights = self.matrix.playbook_weights();
        let recordings = near
            .into_iter()
            .flat_map(|hit| recordings_of(hit, &weights, as_of))
            .collect();
        Ok((Playbook::weighed(recordings, weights), Some(found.version)))
    }
}
