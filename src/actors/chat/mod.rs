//! The `chat` actor: retrieve → bundle → chat → validate, and the replay
//! log of such runs.
//!
//! - [`retrieve`]: exact reads of pinned Lance versions (workers and the
//!   playbook, or any vector index); the records pass the PII guard.
//! - [`provider`]: the built-in extractive template, or Ollama.
//! - [`replay`]: runs appended to the Lance dataset `replay_runs`.
//!
//! Like the matrix, the actor holds no data: each request runs on its own
//! task and sends its answer as [`Event`]s down a channel — the HTTP edge
//! streams them (SSE) or gathers them (JSON). When the receiver goes away
//! (the client disconnected) the task stops, and with it the upstream
//! generation.

pub mod provider;
pub mod replay;
pub mod retrieve;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use crate::actors::embed::EmbedError;
use crate::actors::vectors::IndexError;
use crate::codes::{ErrorCode, HasCode};
use crate::config::{ChatSettings, Durability, MatrixSettings};
use crate::domain::chat::{
    context_message, Changes, ChatInvalid, ChatRequest, Citation, Message, ReplayRequest,
    ReplayRun, RerunReport, RerunSide, Role, Usage, REPLAY_SCHEMA,
};
use crate::domain::validate::{validate_draft, Verdict};
use crate::supervision::{CallError, Directory, Fault};
use crate::telemetry::Metrics;
use provider::Provider;
use replay::ReplayLog;

pub const NAME: &str = "chat";

/// Events of one answer, in order: `Citations` first (the records are
/// known before a token is written), then `Token`s, then `Done` — or an
/// `Error` at any point.
#[derive(Debug)]
pub enum Event {
    Citations(Vec<Citation>),
    Token(String),
    Done(Box<Finished>),
    Error(ChatError),
}

/// The last event of an answer.
#[derive(Debug, Clone)]
pub struct Finished {
    pub provider: String,
    pub model: String,
    pub answer: String,
    pub prompt: String,
    pub usage: Usage,
    pub verdict: Option<Verdict>,
    pub versions: BTreeMap<String, u64>,
    pub retrieve_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Invalid(#[from] ChatInvalid),
    #[error("the 'workers' index does not exist yet: run `lakehouse seed --workers N` first")]
    NoWorkers,
    #[error("model '{model}' is not available on Ollama at {url}: run `ollama pull {model}`")]
    ModelNotFound { model: String, url: String },
    #[error("Ollama at {url} cannot be reached: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("the chat did not finish within chat.timeout_ms")]
    Timeout,
    #[error("Ollama answered unexpectedly: {0}")]
    BadResponse(String),
    #[error("no replay run '{0}'")]
    RunNotFound(String),
    #[error("{0} chats are running (chat.max_concurrent); retry shortly")]
    Busy(usize),
    /// The client went away; nobody hears this one.
    #[error("cancelled: the client went away")]
    Cancelled,
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HasCode for ChatError {
    fn code(&self) -> ErrorCode {
        use crate::domain::chat::ChatInvalid;
        use crate::domain::matrix::MatrixInvalid;
        match self {
            ChatError::Invalid(invalid) => match invalid {
                ChatInvalid::Messages(_) | ChatInvalid::Model => ErrorCode::InvalidMessages,
                ChatInvalid::Source(_) | ChatInvalid::PlaybookWithoutRole => {
                    ErrorCode::InvalidContext
                }
                ChatInvalid::K(_) => ErrorCode::InvalidK,
                ChatInvalid::Query(MatrixInvalid::EmptyQuery) => ErrorCode::EmptyQuery,
                ChatInvalid::Query(_) => ErrorCode::QueryTooLong,
            },
            ChatError::NoWorkers => ErrorCode::NoWorkers,
            ChatError::ModelNotFound { .. } => ErrorCode::ModelNotFound,
            ChatError::Unavailable { .. } => ErrorCode::ChatUnavailable,
            ChatError::Timeout => ErrorCode::ChatTimeout,
            ChatError::BadResponse(_) => ErrorCode::ChatBadResponse,
            ChatError::RunNotFound(_) => ErrorCode::RunNotFound,
            ChatError::Busy(_) => ErrorCode::TooManyChats,
            ChatError::Cancelled => ErrorCode::Cancelled,
            ChatError::Index(err) => err.code(),
            ChatError::Embed(err) => err.code(),
            ChatError::Call(err) => err.code(),
            ChatError::Storage(_) => ErrorCode::StorageError,
            ChatError::Internal(_) => ErrorCode::Internal,
        }
    }
}

pub enum ChatMessage {
    /// Starts an answer; its events arrive on the receiver.
    Chat {
        request: ChatRequest,
        reply: RpcReplyPort<Result<mpsc::Receiver<Event>, ChatError>>,
    },
    Replay {
        request: ReplayRequest,
        reply: RpcReplyPort<Result<ReplayRun, ChatError>>,
    },
    Rerun {
        run_id: String,
        reply: RpcReplyPort<Result<RerunReport, ChatError>>,
    },
    Fault(Fault),
}

impl From<Fault> for ChatMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

pub struct ChatArguments {
    pub settings: ChatSettings,
    pub matrix: MatrixSettings,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
    pub data_dir: std::path::PathBuf,
    pub durability: Durability,
    pub call_timeout: Duration,
}

/// What a request task needs.
pub struct ChatContext {
    settings: ChatSettings,
    matrix: MatrixSettings,
    directory: Directory,
    metrics: Arc<Metrics>,
    provider: Provider,
    replay: ReplayLog,
    call_timeout: Duration,
    /// One permit per chat, replay or rerun running (`chat.max_concurrent`).
    permits: Arc<tokio::sync::Semaphore>,
}

pub struct ChatActor;

impl Actor for ChatActor {
    type Msg = ChatMessage;
    type State = Arc<ChatContext>;
    type Arguments = ChatArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ChatArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let provider = Provider::new(&args.settings)?;
        let permits = Arc::new(tokio::sync::Semaphore::new(args.settings.max_concurrent));
        Ok(Arc::new(ChatContext {
            replay: ReplayLog {
                data_dir: args.data_dir,
                durability: args.durability,
                directory: args.directory.clone(),
                call_timeout: args.call_timeout,
                lock: tokio::sync::Mutex::new(()),
            },
            settings: args.settings,
            matrix: args.matrix,
            directory: args.directory,
            metrics: args.metrics,
            provider,
            call_timeout: args.call_timeout,
            permits,
        }))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        context: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ChatMessage::Chat { request, reply } => {
                let _ = reply.send(context.start(request));
            }
            ChatMessage::Replay { request, reply } => {
                let permit = match context.permit() {
                    Ok(permit) => permit,
                    Err(busy) => {
                        let _ = reply.send(Err(busy));
                        return Ok(());
                    }
                };
                let context = context.clone();
                tokio::spawn(async move {
                    let _ = reply.send(context.replay(request).await);
                    drop(permit);
                });
            }
            ChatMessage::Rerun { run_id, reply } => {
                let permit = match context.permit() {
                    Ok(permit) => permit,
                    Err(busy) => {
                        let _ = reply.send(Err(busy));
                        return Ok(());
                    }
                };
                let context = context.clone();
                tokio::spawn(async move {
                    let _ = reply.send(context.rerun(&run_id).await);
                    drop(permit);
                });
            }
            ChatMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

/// A running chat's place, counted in `lakehouse_chats_running`.
struct Place {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Events a slow reader may fall behind by before the writer waits.
const EVENT_BUFFER: usize = 256;

impl ChatContext {
    /// Checks the request and starts its task; the events follow.
    fn start(self: &Arc<Self>, request: ChatRequest) -> Result<mpsc::Receiver<Event>, ChatError> {
        request.check()?;
        let permit = self.permit()?;
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let context = self.clone();
        tokio::spawn(async move {
            context.answer(request, None, events).await;
            drop(permit);
        });
        Ok(receiver)
    }

    /// A place among the `chat.max_concurrent` chats, or `Busy` at once.
    fn permit(&self) -> Result<Place, ChatError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ChatError::Busy(self.settings.max_concurrent))?;
        self.metrics.chats_running.inc();
        Ok(Place {
            _permit: permit,
            gauge: self.metrics.chats_running.clone(),
        })
    }

    /// Runs one chat to its end (or until nobody listens), within
    /// `chat.timeout_ms`, and counts it.
    async fn answer(
        self: Arc<Self>,
        request: ChatRequest,
        versions: Option<BTreeMap<String, u64>>,
        events: mpsc::Sender<Event>,
    ) {
        let provider = self.provider.name();
        // The metric names the configured model, or `other`: a model named
        // in a request must not mint a series.
        let model = self.provider.model(None);
        let model = if self.provider.model(request.model.as_deref()) == model {
            model
        } else {
            "other".to_string()
        };
        let started = Instant::now();
        let deadline = Duration::from_millis(self.settings.timeout_ms);
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(deadline, self.run(&request, versions.as_ref(), &events, started)) => {
                outcome.unwrap_or(Err(ChatError::Timeout))
            }
            _ = events.closed() => Err(ChatError::Cancelled),
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(err) => err.code().as_str(),
        };
        self.metrics
            .chat_requests
            .with_label_values(&[provider, &model, label])
            .inc();
        self.metrics
            .chat_duration
            .with_label_values(&[provider])
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(finished) => {
                let tokens = &self.metrics.chat_tokens;
                tokens
                    .with_label_values(&[provider, "prompt"])
                    .inc_by(finished.usage.prompt_tokens);
                tokens
                    .with_label_values(&[provider, "completion"])
                    .inc_by(finished.usage.completion_tokens);
                let _ = events.send(Event::Done(Box::new(finished))).await;
            }
            Err(ChatError::Cancelled) => {
                tracing::info!(provider, model, "chat cancelled: the client went away");
            }
            Err(err) => {
                let _ = events.send(Event::Error(err)).await;
            }
        }
    }

    async fn run(
        &self,
        request: &ChatRequest,
        versions: Option<&BTreeMap<String, u64>>,
        events: &mpsc::Sender<Event>,
        started: Instant,
    ) -> Result<Finished, ChatError> {
        let question = request.retrieval_query();
        let (records, read) = match &request.context {
            Some(context) => {
                let retrieved = self.retrieve(context, &question, versions).await?;
                if retrieved.redacted > 0 {
                    tracing::info!(
                        redacted = retrieved.redacted,
                        "PII guard: SSN-shaped values redacted from the context"
                    );
                }
                (retrieved.records, retrieved.versions)
            }
            None => (Vec::new(), BTreeMap::new()),
        };
        let retrieve_ms = started.elapsed().as_millis() as u64;
        let max_chars = self.settings.max_context_tokens * 4;
        let (context_text, used) = context_message(&records, max_chars);
        let records = &records[..used.min(records.len())];
        let citations: Vec<Citation> = records.iter().map(|r| r.citation.clone()).collect();
        if events.send(Event::Citations(citations)).await.is_err() {
            return Err(ChatError::Cancelled);
        }
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if request.context.is_some() {
            messages.push(Message {
                role: Role::System,
                content: context_text,
            });
        }
        messages.extend(request.messages.iter().cloned());
        let model = self.provider.model(request.model.as_deref());
        let generated = self
            .provider
            .generate(
                &model,
                &messages,
                &question,
                records,
                request.stream,
                events,
            )
            .await?;
        if let Some(first) = generated.first_token {
            self.metrics
                .chat_first_token
                .with_label_values(&[self.provider.name()])
                .observe(first.duration_since(started).as_secs_f64());
        }
        let verdict = request.validate.map(|kind| {
            Verdict::from_problems(validate_draft(
                kind == crate::domain::chat::DraftKind::Sms,
                &generated.content,
            ))
        });
        let prompt = messages
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    serde_json::to_value(m.role)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?"),
                    m.content
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok(Finished {
            provider: self.provider.name().to_string(),
            model,
            answer: generated.content,
            prompt,
            usage: Usage {
                prompt_tokens: generated.prompt_tokens,
                completion_tokens: generated.completion_tokens,
                total_ms: started.elapsed().as_millis() as u64,
            },
            verdict,
            versions: read,
            retrieve_ms,
        })
    }

    /// Runs a chat to its end and gathers it: the citations and the finish.
    async fn gather(
        self: &Arc<Self>,
        request: ChatRequest,
        versions: Option<BTreeMap<String, u64>>,
    ) -> Result<(Vec<Citation>, Finished), ChatError> {
        request.check()?;
        let (events, mut receiver) = mpsc::channel(EVENT_BUFFER);
        let context = self.clone();
        tokio::spawn(async move { context.answer(request, versions, events).await });
        let mut citations = Vec::new();
        while let Some(event) = receiver.recv().await {
            match event {
                Event::Citations(found) => citations = found,
                Event::Token(_) => {}
                Event::Done(finished) => return Ok((citations, *finished)),
                Event::Error(err) => return Err(err),
            }
        }
        Err(ChatError::Internal(
            "the chat ended without an answer".into(),
        ))
    }

    async fn replay(self: &Arc<Self>, request: ReplayRequest) -> Result<ReplayRun, ChatError> {
        let chat = request.to_chat(self.settings.default_k);
        let k = chat.context.as_ref().map_or(0, |c| c.k);
        let (citations, finished) = self.gather(chat, None).await?;
        let run = ReplayRun {
            run_id: uuid::Uuid::new_v4().simple().to_string(),
            schema: REPLAY_SCHEMA.to_string(),
            at: chrono::Utc::now(),
            query: request.query.clone(),
            role: request.role.clone(),
            k,
            provider: finished.provider,
            model: finished.model,
            citations,
            versions: finished.versions,
            prompt: finished.prompt,
            answer: finished.answer,
            validate: request.validate,
            verdict: finished.verdict,
            retrieve_ms: finished.retrieve_ms,
            chat_ms: finished.usage.total_ms.saturating_sub(finished.retrieve_ms),
            prompt_tokens: finished.usage.prompt_tokens,
            completion_tokens: finished.usage.completion_tokens,
        };
        // Keep the versions the run cites past the retention of old
        // versions, so a rerun can always read them.
        for (index, version) in &run.versions {
            let tag = format!("replay-{}", run.run_id);
            let tagged = self
                .directory
                .call(
                    &crate::actors::vectors::index::actor_name(index),
                    |reply| crate::actors::vectors::index::IndexMessage::Tag {
                        version: *version,
                        tag: tag.clone(),
                        reply,
                    },
                    self.call_timeout,
                )
                .await;
            if let Err(err) = tagged
                .map_err(ChatError::from)
                .and_then(|t| t.map_err(ChatError::from))
            {
                tracing::warn!(index, version, %err, "could not tag a version the replay run cites");
            }
        }
        self.replay.append(&run).await?;
        Ok(run)
    }

    async fn rerun(self: &Arc<Self>, run_id: &str) -> Result<RerunReport, ChatError> {
        let run = self
            .replay
            .get(run_id)
            .await?
            .ok_or_else(|| ChatError::RunNotFound(run_id.to_string()))?;
        let request = ReplayRequest {
            query: run.query.clone(),
            role: run.role.clone(),
            k: Some(run.k),
            model: Some(run.model.clone()).filter(|_| run.provider != "extractive"),
            validate: run.validate,
        };
        let chat = request.to_chat(self.settings.default_k);
        let (pinned_citations, pinned) = self
            .gather(chat.clone(), Some(run.versions.clone()))
            .await?;
        let (current_citations, current) = self.gather(chat, None).await?;
        let ids = |c: &[Citation]| c.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        let original = RerunSide {
            ids: ids(&run.citations),
            versions: run.versions.clone(),
            answer: Some(run.answer.clone()),
            verdict: run.verdict.clone(),
        };
        let pinned = RerunSide {
            ids: ids(&pinned_citations),
            versions: pinned.versions,
            answer: Some(pinned.answer),
            verdict: pinned.verdict,
        };
        let current = RerunSide {
            ids: ids(&current_citations),
            versions: current.versions,
            answer: Some(current.answer),
            verdict: current.verdict,
        };
        Ok(RerunReport {
            run_id: run.run_id,
            pinned_reproduces: pinned.ids == original.ids,
            changes: Changes::between(&original, &current),
            original,
            pinned,
            current,
        })
    }

    /// For `lakehouse doctor`.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }
}
