//! The `matrix` actor: semantic retrieval over the `workers` index and the
//! playbook learning loop over `playbook_memory`.
//!
//! It holds no data of its own — workers and recordings live in their
//! index actors (Lance-backed, supervised) — so each request runs as its
//! own task: the mailbox only dispatches, and many searches proceed at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Map, Value};

use crate::actors::embed::{self, EmbedError};
use crate::actors::vectors::catalog::{self, VectorCatalogMessage};
use crate::actors::vectors::index::{self, actor_name, IndexMessage};
use crate::actors::vectors::IndexError;
use crate::codes::{ErrorCode, HasCode};
use crate::config::MatrixSettings;
use crate::domain::geo::{Point, KM_PER_MILE};
use crate::domain::keyword::SearchMode;
use crate::domain::matrix::{
    apply_playbook, Degraded, MatrixExplain, MatrixHit, MatrixInvalid, MatrixResults, MatrixSearch,
    Near, Playbook, PlaybookEntry, PlaybookRecord, Recorded, Recording,
};
use crate::domain::vectors::{
    CreateIndex, Hit, HnswOverrides, IndexKind, ItemInput, SearchRequest,
};
use crate::supervision::{CallError, Directory, Fault};

pub const NAME: &str = "matrix";
/// The index of workers (written by `lakehouse seed`).
pub const WORKERS: &str = "workers";
/// The index of playbook recordings (created on first use).
pub const PLAYBOOK: &str = "playbook_memory";

/// Upserts of one recording: a first one that creates the playbook, and
/// ones that go to the playbook's next incarnation when its last ended
/// before writing the batch.
const MAX_RECORD_ATTEMPTS: usize = 4;

pub struct MatrixActor;

pub struct MatrixArguments {
    pub directory: Directory,
    pub settings: MatrixSettings,
    pub call_timeout: Duration,
    /// Whose turn it is to update each playbook entry (shared by every
    /// incarnation).
    pub turns: Arc<Turns>,
    /// An entry's metadata must fit the playbook index's
    /// `vectors.max_metadata_bytes`.
    pub max_entry_bytes: usize,
}

pub enum MatrixMessage {
    Search {
        request: MatrixSearch,
        reply: RpcReplyPort<Result<MatrixResults, MatrixError>>,
    },
    Record {
        request: PlaybookRecord,
        reply: RpcReplyPort<Result<Recorded, MatrixError>>,
    },
    /// Takes one recording back out of its playbook entry.
    Withdraw {
        recording_id: String,
        reply: RpcReplyPort<Result<crate::domain::matrix::Withdrawn, MatrixError>>,
    },
    Fault(Fault),
}

impl From<Fault> for MatrixMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Invalid(#[from] MatrixInvalid),
    #[error("the '{WORKERS}' index does not exist yet: run `lakehouse seed --workers N` first")]
    NoWorkers,
    /// `workers` or `playbook_memory` exists with a definition the
    /// matrix cannot use (created by hand before the service did).
    #[error("index '{index}' is reserved for the matrix, which needs cosine vectors of the embedder's dimension {needed}; it is {found}: drop it (admin) and seed again")]
    Misdefined {
        index: &'static str,
        needed: usize,
        found: String,
    },
    #[error("no recording '{0}' in the playbook")]
    RecordingNotFound(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Call(#[from] CallError),
}

impl From<crate::domain::matrix::SearchRefused> for MatrixError {
    fn from(refused: crate::domain::matrix::SearchRefused) -> Self {
        use crate::domain::matrix::SearchRefused;
        match refused {
            SearchRefused::Invalid(invalid) => MatrixError::Invalid(invalid),
            SearchRefused::Filter(err) => MatrixError::Index(IndexError::Invalid(
                crate::domain::vectors::ValidationError::Filter(err),
            )),
        }
    }
}

impl HasCode for MatrixError {
    fn code(&self) -> ErrorCode {
        match self {
            MatrixError::Invalid(invalid) => match invalid {
                MatrixInvalid::EmptyQuery => ErrorCode::EmptyQuery,
                MatrixInvalid::InvalidParameter { .. } => ErrorCode::InvalidBody,
                MatrixInvalid::QueryTooLong { .. } => ErrorCode::QueryTooLong,
                MatrixInvalid::InvalidK(_) => ErrorCode::InvalidK,
                MatrixInvalid::EmptyRole => ErrorCode::EmptyRole,
                MatrixInvalid::InvalidScore(_) => ErrorCode::InvalidScore,
                MatrixInvalid::InvalidWorkerIds => ErrorCode::InvalidWorkerIds,
                MatrixInvalid::UnknownWorkers(_) => ErrorCode::UnknownWorkers,
                MatrixInvalid::UnknownCity(_) => ErrorCode::UnknownCity,
                MatrixInvalid::InvalidWindow(_) => ErrorCode::InvalidWindow,
            },
            MatrixError::NoWorkers => ErrorCode::NoWorkers,
            MatrixError::RecordingNotFound(_) => ErrorCode::RecordingNotFound,
            MatrixError::Misdefined { .. } => ErrorCode::ReservedIndex,
            MatrixError::Index(err) => err.code(),
            MatrixError::Embed(err) => err.code(),
            MatrixError::Call(err) => err.code(),
        }
    }
}

/// What a request task needs.
pub struct Context {
    directory: Directory,
    settings: MatrixSettings,
    timeout: Duration,
    turns: Arc<Turns>,
    max_entry_bytes: usize,
}

/// One turn at a time per key (a read-modify-write of one entry); keys
/// nobody waits for are forgotten.
#[derive(Default)]
pub struct Turns(parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct Turn<'a> {
    turns: &'a Turns,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    async fn take(&self, key: &str) -> Turn<'_> {
        let lock = self.0.lock().entry(key.to_string()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        Turn {
            turns: self,
            key: key.to_string(),
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = self.turns.0.lock();
        // The map's and ours: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            turns.remove(&self.key);
        }
    }
}

impl Actor for MatrixActor {
    type Msg = MatrixMessage;
    type State = Arc<Context>;
    type Arguments = MatrixArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: MatrixArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Arc::new(Context {
            directory: args.directory,
            settings: args.settings,
            timeout: args.call_timeout,
            turns: args.turns,
            max_entry_bytes: args.max_entry_bytes,
        }))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        context: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MatrixMessage::Search { request, reply } => {
                let context = context.clone();
                tokio::spawn(async move {
                    let _ = reply.send(context.search(request).await);
                });
            }
            MatrixMessage::Record { request, reply } => {
                let context = context.clone();
                tokio::spawn(async move {
                    let _ = reply.send(context.record(request).await);
                });
            }
            MatrixMessage::Withdraw {
                recording_id,
                reply,
            } => {
                let context = context.clone();
                tokio::spawn(async move {
                    let _ = reply.send(context.withdraw(recording_id).await);
                });
            }
            MatrixMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

impl Context {
    /// A query's vector, embedded with the `workers` index's analysis:
    /// the one vector matches workers and playbook entries, and entries
    /// were recorded with the same analysis.
    async fn embed(&self, text: &str) -> Result<Vec<f32>, MatrixError> {
        let analysis = crate::actors::vectors::index::reader(&self.directory, WORKERS)
            .map(|reader| reader.definition().analysis);
        Ok(embed::embed_one(&self.directory, text, analysis, self.timeout).await??)
    }

    /// One call to an index actor; `Ok(None)` when the index does not exist.
    async fn index_call<T: Send + 'static>(
        &self,
        index: &str,
        build: impl Fn(RpcReplyPort<T>) -> IndexMessage,
    ) -> Result<Option<T>, MatrixError> {
        let actor = actor_name(index);
        // Every index request the matrix makes is a read or an upsert by
        // id: a restart of the index is waited out, not reported.
        match self
            .directory
            .call_idempotent(&actor, build, self.timeout)
            .await
        {
            Ok(reply) => Ok(Some(reply)),
            Err(CallError::Unavailable { .. }) if !self.index_exists(index) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// A search of `index`: through its published reader when it is loaded
    /// (no mailbox; the scoring on the blocking pool), else through its
    /// mailbox (which waits out a restart).
    async fn index_search(
        &self,
        index: &'static str,
        request: SearchRequest,
    ) -> Result<Option<Result<Vec<Hit>, IndexError>>, MatrixError> {
        if let Some(reader) = index::reader(&self.directory, index) {
            // The playbook of another embedder's dimension is tolerated (it
            // just cannot match); the workers index of one is not.
            let vector = request.vector.as_deref().filter(|_| index == WORKERS);
            check_definition(index, reader.definition(), vector)?;
            return Ok(Some(reader.search_off_runtime(request).await));
        }
        self.index_call(index, |reply| IndexMessage::Search {
            request: request.clone(),
            reply,
        })
        .await
    }

    /// The metadata of those of `ids` that exist in `index` (`None`: no
    /// such index): from its published reader, else through its mailbox.
    async fn index_lookup(
        &self,
        index: &str,
        ids: Vec<String>,
    ) -> Result<Option<HashMap<String, Value>>, MatrixError> {
        if let Some(reader) = index::reader(&self.directory, index) {
            return Ok(Some(reader.lookup(ids)));
        }
        self.index_call(index, |reply| IndexMessage::Lookup {
            ids: ids.clone(),
            reply,
        })
        .await
    }

    /// Whether the index is part of the tree (running or restarting).
    fn index_exists(&self, index: &str) -> bool {
        self.directory.known(&actor_name(index))
    }

    async fn search(&self, request: MatrixSearch) -> Result<MatrixResults, MatrixError> {
        // Checked once: by the use case that sent it, else here.
        let prepared = match &request.prepared {
            Some(prepared) => prepared.clone(),
            None => request.prepare()?,
        };
        let mut mode = request.mode.unwrap_or(self.settings.default_mode);
        let mut playbook_role = match (&request.role, request.use_playbook) {
            (Some(role), true) => Some(role.clone()),
            // The role gate: without a role, no recording can apply.
            _ => None,
        };
        // The playbook matches recordings by the query's vector, so a
        // keyword search embeds only when it consults the playbook.
        let mut degraded = None;
        let vector = if mode.uses_vectors() || playbook_role.is_some() {
            match self.embed(&request.query).await {
                Ok(vector) => Some(vector),
                // Without the query's vector the keyword side still
                // answers; the playbook (matched by vector) cannot.
                Err(err) if embedder_down(&err) => {
                    tracing::warn!(error = %err, "matrix search degraded to keywords");
                    degraded = Some(Degraded::EmbedderUnavailable);
                    mode = SearchMode::Keyword;
                    playbook_role = None;
                    None
                }
                Err(err) => return Err(err),
            }
        } else {
            None
        };
        let mut exclude = request.exclude_ids.clone().unwrap_or_default();
        // The statuses a search leaves out by default, by their workers'
        // ids (see `PreparedSearch::hidden_statuses`).
        if !prepared.hidden_statuses.is_empty() {
            if let Some(reader) = index::reader(&self.directory, WORKERS) {
                let names = prepared
                    .hidden_statuses
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect();
                exclude.extend(reader.ids_with("status", names).await?);
            }
        }

        let playbook = match (&playbook_role, &vector) {
            (Some(role), Some(vector)) => Playbook::weighed(
                self.recordings(vector, role).await?,
                self.settings.playbook_weights(),
            ),
            _ => Playbook::default(),
        };
        // Recorded workers are scored by the index even below the top k
        // (and only if they pass the filter), so a boost can bring them in.
        let include_ids: Vec<String> = playbook
            .boosted()
            .filter(|id| !exclude.contains(id))
            .cloned()
            .collect();
        let search = SearchRequest {
            vector: vector.filter(|_| mode.uses_vectors()),
            text: mode.uses_keywords().then(|| request.query.clone()),
            k: request.k,
            filter: None,
            exclude_ids: (!exclude.is_empty()).then(|| exclude.clone()),
            ef_search: None,
            mode: Some(mode),
            keyword_weight: request.keyword_weight,
            explain: request.explain,
            facets: None,
            include_ids,
            prepared: Some(prepared.filter.clone()),
        };
        let hits = self
            .index_search(WORKERS, search)
            .await?
            .ok_or(MatrixError::NoWorkers)??;
        // The included ids that ranked below the top k are injected.
        let hits: Vec<MatrixHit> = hits
            .into_iter()
            .map(|hit| {
                let injected = hit.beyond_k;
                to_matrix_hit(hit, injected)
            })
            .collect();
        let mut results = apply_playbook(hits, &playbook, request.k);
        results.excluded_statuses = prepared.excluded_statuses.clone();
        if degraded.is_some() {
            results.degraded = degraded;
            for explain in results.hits.iter_mut().filter_map(|h| h.explain.as_mut()) {
                explain.degraded = degraded;
            }
        }
        if let Some(Ok((centre, _))) = request.near.as_ref().map(Near::resolve) {
            for hit in &mut results.hits {
                let place = hit
                    .worker
                    .get("location")
                    .and_then(|l| Point::parse(l).ok());
                if let (Some(explain), Some(place)) = (hit.explain.as_mut(), place) {
                    explain.distance_miles = Some(centre.distance_km(&place) / KM_PER_MILE);
                }
            }
        }
        Ok(results)
    }

    /// Recordings of `role` whose query is within the configured distance.
    async fn recordings(&self, vector: &[f32], role: &str) -> Result<Vec<Recording>, MatrixError> {
        let (weights, now) = (self.settings.playbook_weights(), chrono::Utc::now());
        let mut filter = Map::new();
        filter.insert("role".into(), Value::String(role.to_string()));
        let search = SearchRequest {
            filter: Some(filter),
            ..SearchRequest::for_vector(vector.to_vec(), self.settings.playbook_candidates)
        };
        let hits = match self.index_search(PLAYBOOK, search).await? {
            None => return Ok(Vec::new()),
            // A playbook with a different dimension (another embedder) cannot match.
            Some(Err(IndexError::Invalid(_))) => return Ok(Vec::new()),
            Some(result) => result?,
        };
        Ok(hits
            .into_iter()
            .filter(|hit| hit.distance <= self.settings.playbook_max_distance)
            .flat_map(|hit| recordings_of(hit, &weights, now))
            .collect())
    }

    /// Records a placement: folds it into its query's playbook entry and
    /// upserts the entry, at most [`MAX_RECORD_ATTEMPTS`] times.
    async fn record(&self, request: PlaybookRecord) -> Result<Recorded, MatrixError> {
        request.check()?;
        let known = self
            .index_lookup(WORKERS, request.worker_ids.clone())
            .await?
            .ok_or(MatrixError::NoWorkers)?;
        let unknown: Vec<String> = request
            .worker_ids
            .iter()
            .filter(|id| !known.contains_key(*id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(MatrixInvalid::UnknownWorkers(unknown).into());
        }
        let vector = self.embed(&request.query).await?;
        let recording_id = uuid::Uuid::new_v4().simple().to_string();
        // The recording is folded into its query's entry: one turn at a
        // time per entry, so concurrent recordings of one query all count.
        let entry_id = PlaybookEntry::id(&request.role, &request.query);
        // Bounded like any call: a caller that gave up must not find its
        // recording applied later.
        let _turn = tokio::time::timeout(self.timeout, self.turns.take(&entry_id))
            .await
            .map_err(|_| CallError::Timeout {
                actor: actor_name(PLAYBOOK),
                timeout_ms: self.timeout.as_millis() as u64,
            })?;
        let now = chrono::Utc::now();
        let mut entry = self
            .playbook_entry(&entry_id)
            .await?
            .unwrap_or_else(|| PlaybookEntry::new(&request.query, &request.role, now));
        entry.add_by(
            &recording_id,
            &request.worker_ids,
            request.score,
            request.outcome.unwrap_or_default(),
            now,
            request.recorded_by.as_deref(),
        );
        entry.fit(self.max_entry_bytes, &request.worker_ids);
        let metadata = serde_json::to_value(&entry)
            .map_err(|e| MatrixError::Index(IndexError::Internal(e.to_string())))?;
        let item = ItemInput {
            id: entry_id.clone(),
            vector: Some(vector.clone()),
            text: None,
            metadata: Some(metadata),
        };
        let mut created = false;
        for _ in 0..MAX_RECORD_ATTEMPTS {
            let items = vec![item.clone()];
            match self
                .index_call(PLAYBOOK, |reply| IndexMessage::Upsert {
                    items: items.clone(),
                    reply,
                })
                .await?
            {
                // The playbook's incarnation ended before this batch was
                // written (a panic between enqueue and commit): nothing of
                // it is in Lance, and this entry's turn is still ours, so
                // the same upsert goes to the next incarnation.
                Some(Err(IndexError::Unavailable)) => continue,
                Some(result) => {
                    result?;
                    return Ok(Recorded {
                        recording_id,
                        entry_id,
                        recordings: entry.recordings,
                        workers: request.worker_ids.len(),
                    });
                }
                None if !created => {
                    self.create_playbook(vector.len()).await?;
                    created = true;
                }
                None => break,
            }
        }
        Err(CallError::Unavailable {
            actor: actor_name(PLAYBOOK),
        }
        .into())
    }

    /// Takes recording `recording_id` out of its entry, in the entry's
    /// turn like a recording: the entry is read again, the recording
    /// removed from every worker it named (a worker it was the only
    /// recording of goes), and the entry written back through a change of
    /// its fields (its vector stays). An entry left with no worker is
    /// deleted, as is an item of one recording from before entries.
    async fn withdraw(
        &self,
        recording_id: String,
    ) -> Result<crate::domain::matrix::Withdrawn, MatrixError> {
        use crate::actors::vectors::index::{ChangeKind, ChangeRequest, Target};
        let not_found = || MatrixError::RecordingNotFound(crate::domain::shown(&recording_id, 64));
        crate::domain::vectors::validate_id(&recording_id, "recording_id")
            .map_err(IndexError::from)?;
        let entry_id = self.entry_of(&recording_id).await?.ok_or_else(not_found)?;
        let _turn = tokio::time::timeout(self.timeout, self.turns.take(&entry_id))
            .await
            .map_err(|_| CallError::Timeout {
                actor: actor_name(PLAYBOOK),
                timeout_ms: self.timeout.as_millis() as u64,
            })?;
        let entry = self.playbook_entry(&entry_id).await?;
        let (change, left) = match entry {
            // An item of one recording, from before entries (never an
            // entry's own id).
            None if entry_id == recording_id && !recording_id.starts_with("pb-") => {
                (ChangeKind::Delete, 0)
            }
            None => return Err(not_found()),
            Some(mut entry) => {
                if !entry.withdraw(&recording_id) {
                    return Err(not_found());
                }
                if entry.workers.is_empty() {
                    (ChangeKind::Delete, 0)
                } else {
                    let fields = match serde_json::to_value(&entry) {
                        Ok(Value::Object(fields)) => fields,
                        _ => {
                            return Err(IndexError::Internal(
                                "an entry that is not an object".into(),
                            )
                            .into())
                        }
                    };
                    (
                        ChangeKind::Patch {
                            metadata: fields,
                            text: None,
                            vector: None,
                        },
                        entry.recordings,
                    )
                }
            }
        };
        let request = ChangeRequest {
            target: Target::One(entry_id.clone()),
            change,
            allow_large: false,
            max_items: 1,
        };
        self.index_call(PLAYBOOK, |reply| IndexMessage::Change {
            request: request.clone(),
            reply,
        })
        .await?
        .ok_or_else(not_found)??;
        Ok(crate::domain::matrix::Withdrawn {
            recording_id,
            entry_id,
            recordings: left,
        })
    }

    /// The playbook item holding recording `recording_id`: a page of
    /// entries at a time (the playbook holds one per query and role).
    async fn entry_of(&self, recording_id: &str) -> Result<Option<String>, MatrixError> {
        use crate::actors::vectors::index::ScrollQuery;
        use crate::domain::items::Cursor;
        let mut cursor: Option<Cursor> = None;
        loop {
            let query = ScrollQuery {
                filter: None,
                cursor: cursor.clone(),
                limit: crate::domain::items::MAX_SCROLL_LIMIT,
                with_vectors: false,
            };
            let Some(page) = self
                .index_call(PLAYBOOK, |reply| IndexMessage::Scroll {
                    query: query.clone(),
                    reply,
                })
                .await?
            else {
                return Ok(None);
            };
            let page = page?;
            for item in &page.items {
                if item.id == recording_id {
                    return Ok(Some(item.id.clone()));
                }
                let held = serde_json::from_value::<PlaybookEntry>(item.metadata.clone())
                    .is_ok_and(|entry| entry.holds(recording_id));
                if held {
                    return Ok(Some(item.id.clone()));
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(Cursor::decode(&next).map_err(IndexError::from)?),
                None => return Ok(None),
            }
        }
    }

    /// The playbook entry `id`, if the playbook and the entry exist (an
    /// entry that does not parse is started afresh).
    async fn playbook_entry(&self, id: &str) -> Result<Option<PlaybookEntry>, MatrixError> {
        let Some(found) = self.index_lookup(PLAYBOOK, vec![id.to_string()]).await? else {
            return Ok(None);
        };
        Ok(found
            .get(id)
            .and_then(|metadata| serde_json::from_value(metadata.clone()).ok()))
    }

    /// Creates `playbook_memory` on first use (a concurrent creator's 409 is fine).
    ///
    /// Flat: the playbook is only ever searched with a role filter, which
    /// scans the role's entries exactly, so a graph would buy nothing and
    /// cost a graph insert per recording (and, as re-recorded entries
    /// leave tombstones, a graph rebuild every ~1,000 recordings). A
    /// playbook created before this keeps its graph.
    async fn create_playbook(&self, dimension: usize) -> Result<(), MatrixError> {
        let request = CreateIndex {
            name: PLAYBOOK.to_string(),
            dimension,
            metric: None,
            hnsw: Some(HnswOverrides {
                m: Some(self.settings.playbook_hnsw.m),
                ef_construction: Some(self.settings.playbook_hnsw.ef_construction),
                ef_search: Some(self.settings.playbook_hnsw.ef_search),
            }),
            kind: Some(IndexKind::Flat),
            storage: None,
            synonyms: None,
        };
        let created = self
            .directory
            .call(
                catalog::NAME,
                |reply| VectorCatalogMessage::Create { request, reply },
                self.timeout,
            )
            .await?;
        match created {
            Ok(_) | Err(IndexError::AlreadyExists(_)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Whether embedding failed because the embedder cannot answer now (not
/// because the query is bad or the embedder answered nonsense): the
/// search can then fall back to its keyword side. Every call error of
/// [`Context::embed`] is one to the embedder.
fn embedder_down(err: &MatrixError) -> bool {
    matches!(
        err,
        MatrixError::Embed(EmbedError::Unavailable { .. })
            | MatrixError::Call(
                CallError::Unavailable { .. }
                    | CallError::Timeout { .. }
                    | CallError::Failed { .. }
            )
    )
}

/// A worker hit from the index, not boosted yet.
pub(crate) fn to_matrix_hit(hit: Hit, injected: bool) -> MatrixHit {
    MatrixHit {
        worker_id: hit.id,
        distance: hit.distance,
        boosted: false,
        demoted: false,
        injected,
        worker: hit.metadata,
        explain: hit.explain.map(|ranking| MatrixExplain {
            ranking,
            boost_factor: 1.0,
            playbook: None,
            degraded: None,
            distance_miles: None,
        }),
    }
}

/// The recordings a playbook hit holds: an entry's (one per query and
/// role), or the one recording of an item written before entries existed
/// (none if its metadata is neither).
pub(crate) fn recordings_of(
    hit: Hit,
    weights: &crate::domain::matrix::PlaybookWeights,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Recording> {
    if hit.metadata.get("workers").is_some_and(Value::is_object) {
        return serde_json::from_value::<PlaybookEntry>(hit.metadata)
            .map(|entry| entry.recordings(hit.distance, weights, now))
            .unwrap_or_default();
    }
    legacy_recording(hit).into_iter().collect()
}

/// An item of one recording, as the playbook stored them before entries.
fn legacy_recording(hit: Hit) -> Option<Recording> {
    let worker_ids = hit
        .metadata
        .get("worker_ids")?
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Some(Recording {
        score: hit.metadata.get("score")?.as_f64()?,
        recording_id: hit.id,
        worker_ids,
        query_distance: hit.distance,
        outcome: crate::domain::matrix::Outcome::Good,
        recorded_at: None,
        recorded_by: None,
    })
}

/// The matrix's own indexes must be what it made them: cosine, and (when
/// the search carries a vector) of the embedder's dimension.
fn check_definition(
    index: &'static str,
    definition: &crate::domain::vectors::IndexDefinition,
    vector: Option<&[f32]>,
) -> Result<(), MatrixError> {
    use crate::domain::vectors::Metric;
    let wrong_dimension = vector.is_some_and(|v| v.len() != definition.dimension);
    if definition.metric != Metric::Cosine || wrong_dimension {
        return Err(MatrixError::Misdefined {
            index,
            needed: vector.map_or(definition.dimension, <[f32]>::len),
            found: format!(
                "{:?} of dimension {}",
                definition.metric, definition.dimension
            ),
        });
    }
    Ok(())
}
