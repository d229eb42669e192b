//! The `embed` actor: texts to unit vectors, with an LRU cache.
//!
//! The mailbox only validates, consults the cache and hands the misses to a
//! task, which replies directly: hashing a batch is CPU work (done on the
//! blocking pool) and an Ollama call is I/O; doing either inside the handler
//! would serialise every caller behind one request.
//!
//! Providers: `hash` (built in, needs nothing) and `ollama` (through
//! ollama-rs, `POST /api/embed`). Both return L2-normalised vectors.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use crate::codes::{ErrorCode, HasCode};
use crate::config::{EmbedProvider, EmbedSettings};
use crate::domain::analysis::Analysis;
use crate::domain::embedding::HashEmbedder;
use crate::supervision::Fault;
use crate::telemetry::Metrics;

/// The tree name of the embed actor.
pub const NAME: &str = "embed";

pub struct EmbedActor;

pub struct EmbedArguments {
    pub settings: EmbedSettings,
    pub metrics: Arc<Metrics>,
}

pub enum EmbedMessage {
    /// Embed every text, in order.
    Embed {
        texts: Vec<String>,
        /// A model this embedder serves (`None`: see `analysis`).
        model: Option<String>,
        /// The analysis of the index the texts are stored or searched in:
        /// with no `model`, the built-in provider embeds with it (`None`:
        /// the current one). Other providers have one model and ignore it.
        analysis: Option<Analysis>,
        reply: RpcReplyPort<Result<Embeddings, EmbedError>>,
    },
    Fault(Fault),
}

impl From<Fault> for EmbedMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

/// The reply to [`EmbedMessage::Embed`] (also the HTTP response body).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Embeddings {
    pub model: String,
    pub dimension: usize,
    /// One L2-normalised vector per text, in order.
    #[schema(value_type = Vec<Vec<f32>>)]
    pub vectors: Vec<Arc<[f32]>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("texts must not be empty")]
    EmptyBatch,
    #[error("at most {max} texts per request, got {got}")]
    TooManyTexts { max: usize, got: usize },
    #[error("text {index} is empty")]
    EmptyText { index: usize },
    #[error("text {index} has {got} characters, at most {max} are allowed")]
    TextTooLong {
        index: usize,
        max: usize,
        got: usize,
    },
    #[error("unknown model '{requested}'; this embedder serves '{available}'")]
    UnknownModel {
        requested: String,
        available: String,
    },
    #[error("the embedder at {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("the embedder returned an unusable answer: {0}")]
    BadResponse(String),
    #[error("embedding failed: {0}")]
    Internal(String),
}

impl HasCode for EmbedError {
    fn code(&self) -> ErrorCode {
        match self {
            EmbedError::EmptyBatch => ErrorCode::EmptyBatch,
            EmbedError::TooManyTexts { .. } => ErrorCode::TooManyTexts,
            EmbedError::EmptyText { .. } => ErrorCode::EmptyText,
            EmbedError::TextTooLong { .. } => ErrorCode::TextTooLong,
            EmbedError::UnknownModel { .. } => ErrorCode::UnknownModel,
            EmbedError::Unavailable { .. } => ErrorCode::EmbedderUnavailable,
            EmbedError::BadResponse(_) => ErrorCode::EmbedderBadResponse,
            EmbedError::Internal(_) => ErrorCode::EmbedFailed,
        }
    }
}

type Cache = Mutex<LruCache<(String, String), Arc<[f32]>>>;

pub struct EmbedState {
    provider: Provider,
    settings: EmbedSettings,
    /// `None` when `embed.cache_capacity = 0`. A std-style mutex: lookups
    /// are short and never held across an `.await`.
    cache: Option<Arc<Cache>>,
    metrics: Arc<Metrics>,
}

/// Where vectors come from. The built-in provider serves one model per
/// analysis (`lakehouse-hash-v1`, `lakehouse-hash-v2`): an index keeps
/// being embedded with the analysis it was built with until reindexed.
#[derive(Clone)]
enum Provider {
    Hash { dimension: usize },
    Ollama(Arc<OllamaEmbedder>),
}

/// Embeds one text through the `embed` actor (waiting out a restart),
/// within `timeout`: what the matrix and the chat embed their queries with.
pub async fn embed_one(
    directory: &crate::supervision::Directory,
    text: &str,
    analysis: Option<Analysis>,
    timeout: std::time::Duration,
) -> Result<Result<Vec<f32>, EmbedError>, crate::supervision::CallError> {
    let texts = vec![text.to_string()];
    let embedded = directory
        .call_idempotent(
            NAME,
            |reply| EmbedMessage::Embed {
                texts: texts.clone(),
                model: None,
                analysis,
                reply,
            },
            timeout,
        )
        .await?;
    Ok(embedded.and_then(|e| {
        e.vectors
            .first()
            .map(|v| v.to_vec())
            .ok_or_else(|| EmbedError::Internal("the embedder returned no vector".into()))
    }))
}

/// An ollama-rs client for `url` whose requests end after `timeout`
/// (embeddings and chat build theirs with it).
pub fn ollama_client(url: &str, timeout: std::time::Duration) -> Result<ollama_rs::Ollama, String> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let url = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    Ok(ollama_rs::Ollama::builder()
        .url(url)
        .reqwest_client(http)
        .build())
}

/// Ollama through ollama-rs: batches of `batch_size` texts per request,
/// answers checked against the configured dimension and normalised.
pub struct OllamaEmbedder {
    client: ollama_rs::Ollama,
    url: String,
    model: String,
    dimension: usize,
    batch_size: usize,
}

impl OllamaEmbedder {
    pub fn new(settings: &EmbedSettings) -> Result<Self, EmbedError> {
        let ollama = &settings.ollama;
        let unavailable = |reason: String| EmbedError::Unavailable {
            url: ollama.url.clone(),
            reason,
        };
        Ok(Self {
            client: ollama_client(
                &ollama.url,
                std::time::Duration::from_millis(ollama.timeout_ms),
            )
            .map_err(unavailable)?,
            url: ollama.url.clone(),
            model: ollama.model.clone(),
            dimension: settings.dimension,
            batch_size: ollama.batch_size,
        })
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        use ollama_rs::generation::embeddings::request::{
            EmbeddingsInput, GenerateEmbeddingsRequest,
        };
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size.max(1)) {
            let request = GenerateEmbeddingsRequest::new(
                self.model.clone(),
                EmbeddingsInput::Multiple(chunk.to_vec()),
            );
            let response = self
                .client
                .generate_embeddings(request)
                .await
                .map_err(|e| self.classify(e))?;
            if response.embeddings.len() != chunk.len() {
                return Err(EmbedError::BadResponse(format!(
                    "{} vectors for {} texts",
                    response.embeddings.len(),
                    chunk.len()
                )));
            }
            for mut vector in response.embeddings {
                if vector.len() != self.dimension {
                    return Err(EmbedError::BadResponse(format!(
                        "model '{}' gives dimension {}, embed.dimension is {}",
                        self.model,
                        vector.len(),
                        self.dimension
                    )));
                }
                if vector.iter().any(|x| !x.is_finite()) {
                    return Err(EmbedError::BadResponse(
                        "a vector has non-finite components".into(),
                    ));
                }
                crate::domain::embedding::normalise(&mut vector);
                vectors.push(vector);
            }
        }
        Ok(vectors)
    }

    fn classify(&self, err: ollama_rs::error::OllamaError) -> EmbedError {
        match err {
            ollama_rs::error::OllamaError::ReqwestError(e) => EmbedError::Unavailable {
                url: self.url.clone(),
                reason: e.to_string(),
            },
            other => EmbedError::BadResponse(other.to_string()),
        }
    }

    /// A cheap reachability check for `lakehouse doctor`.
    pub async fn ping(&self) -> Result<(), EmbedError> {
        self.embed(vec!["lakehouse doctor".to_string()])
            .await
            .map(|_| ())
    }
}

/// The models an embedder built from `settings` serves, the default
/// first: what a request's `model` may name (the contract lists them as an
/// enum).
pub fn served_models(settings: &EmbedSettings) -> Vec<&str> {
    match settings.provider {
        EmbedProvider::Hash => vec![Analysis::CURRENT.hash_model(), Analysis::V1.hash_model()],
        EmbedProvider::Ollama => vec![&settings.ollama.model],
    }
}

impl Provider {
    /// The model a request is answered with: `model` when this provider
    /// serves it; with none, the built-in model of `analysis` (or the
    /// current one), or the provider's one model.
    fn resolve(
        &self,
        model: Option<&str>,
        analysis: Option<Analysis>,
    ) -> Result<String, EmbedError> {
        let unknown = |requested: &str, available: String| EmbedError::UnknownModel {
            requested: requested.to_string(),
            available,
        };
        match self {
            Provider::Hash { .. } => match model {
                Some(requested) => Analysis::of_hash_model(requested)
                    .map(|a| a.hash_model().to_string())
                    .ok_or_else(|| {
                        unknown(
                            requested,
                            format!(
                                "{}' or '{}",
                                Analysis::CURRENT.hash_model(),
                                Analysis::V1.hash_model()
                            ),
                        )
                    }),
                None => Ok(analysis
                    .unwrap_or(Analysis::CURRENT)
                    .hash_model()
                    .to_string()),
            },
            Provider::Ollama(ollama) => match model {
                Some(requested) if requested != ollama.model => {
                    Err(unknown(requested, ollama.model.clone()))
                }
                _ => Ok(ollama.model.clone()),
            },
        }
    }

    fn dimension(&self) -> usize {
        match self {
            Provider::Hash { dimension } => *dimension,
            Provider::Ollama(ollama) => ollama.dimension,
        }
    }

    /// Embeds `texts` with `model` (one [`Provider::resolve`] answered).
    async fn embed(&self, model: &str, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Provider::Hash { dimension } => {
                let analysis = Analysis::of_hash_model(model).unwrap_or(Analysis::CURRENT);
                let embedder = HashEmbedder::new(*dimension, analysis);
                tokio::task::spawn_blocking(move || {
                    texts.iter().map(|t| embedder.embed(t)).collect()
                })
                .await
                .map_err(|e| EmbedError::Internal(e.to_string()))
            }
            Provider::Ollama(ollama) => ollama.embed(texts).await,
        }
    }
}

impl Actor for EmbedActor {
    type Msg = EmbedMessage;
    type State = EmbedState;
    type Arguments = EmbedArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: EmbedArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let provider = match args.settings.provider {
            EmbedProvider::Hash => Provider::Hash {
                dimension: args.settings.dimension,
            },
            EmbedProvider::Ollama => {
                Provider::Ollama(Arc::new(OllamaEmbedder::new(&args.settings)?))
            }
        };
        let cache = NonZeroUsize::new(args.settings.cache_capacity)
            .map(|capacity| Arc::new(Mutex::new(LruCache::new(capacity))));
        Ok(EmbedState {
            provider,
            settings: args.settings,
            cache,
            metrics: args.metrics,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EmbedMessage::Embed {
                texts,
                model,
                analysis,
                reply,
            } => match state.check(&texts, model.as_deref(), analysis) {
                Ok(model) => state.embed(model, texts, reply),
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            EmbedMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

impl EmbedState {
    /// The request's model, once its texts pass the limits.
    fn check(
        &self,
        texts: &[String],
        model: Option<&str>,
        analysis: Option<Analysis>,
    ) -> Result<String, EmbedError> {
        let model = self.provider.resolve(model, analysis)?;
        if texts.is_empty() {
            return Err(EmbedError::EmptyBatch);
        }
        if texts.len() > self.settings.max_texts {
            return Err(EmbedError::TooManyTexts {
                max: self.settings.max_texts,
                got: texts.len(),
            });
        }
        for (index, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                return Err(EmbedError::EmptyText { index });
            }
            let chars = text.chars().count();
            if chars > self.settings.max_text_chars {
                return Err(EmbedError::TextTooLong {
                    index,
                    max: self.settings.max_text_chars,
                    got: chars,
                });
            }
        }
        Ok(model)
    }

    /// Answers from the cache when it can; computes the misses off the
    /// mailbox and replies from there.
    fn embed(
        &self,
        model: String,
        texts: Vec<String>,
        reply: RpcReplyPort<Result<Embeddings, EmbedError>>,
    ) {
        let dimension = self.provider.dimension();
        let mut vectors: Vec<Option<Arc<[f32]>>> = vec![None; texts.len()];
        let mut misses: Vec<usize> = Vec::new();
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock();
            for (i, text) in texts.iter().enumerate() {
                match cache.get(&(model.clone(), text.clone())) {
                    Some(vector) => vectors[i] = Some(vector.clone()),
                    None => misses.push(i),
                }
            }
        } else {
            misses.extend(0..texts.len());
        }
        self.metrics
            .embed_cache_hits
            .inc_by((texts.len() - misses.len()) as u64);
        self.metrics.embed_cache_misses.inc_by(misses.len() as u64);

        if misses.is_empty() {
            let vectors = vectors.into_iter().flatten().collect();
            let _ = reply.send(Ok(Embeddings {
                model,
                dimension,
                vectors,
            }));
            return;
        }

        let provider = self.provider.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let missing: Vec<String> = misses.iter().map(|&i| texts[i].clone()).collect();
            let result = provider.embed(&model, missing).await.map(|computed| {
                let mut cache = cache.as_ref().map(|c| c.lock());
                for (&i, vector) in misses.iter().zip(computed) {
                    let vector: Arc<[f32]> = vector.into();
                    if let Some(cache) = cache.as_mut() {
                        cache.put((model.clone(), texts[i].clone()), vector.clone());
                    }
                    vectors[i] = Some(vector);
                }
                Embeddings {
                    model,
                    dimension,
                    vectors: vectors.into_iter().flatten().collect(),
                }
            });
            let _ = reply.send(result);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::embedding::dot;

    fn settings() -> EmbedSettings {
        EmbedSettings {
            provider: EmbedProvider::Hash,
            dimension: 64,
            cache_capacity: 16,
            max_texts: 4,
            max_text_chars: 100,
            ollama: crate::config::OllamaSettings {
                url: "http://127.0.0.1:9".into(),
                model: "nomic-embed-text".into(),
                timeout_ms: 1000,
                batch_size: 2,
            },
        }
    }

    async fn spawn() -> (ActorRef<EmbedMessage>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new().unwrap());
        let (actor, _) = Actor::spawn(
            None,
            EmbedActor,
            EmbedArguments {
                settings: settings(),
                metrics: metrics.clone(),
            },
        )
        .await
        .unwrap();
        (actor, metrics)
    }

    async fn embed(
        actor: &ActorRef<EmbedMessage>,
        texts: &[&str],
    ) -> Result<Embeddings, EmbedError> {
        let texts = texts.iter().map(|t| t.to_string()).collect();
        actor
            .call(
                |reply| EmbedMessage::Embed {
                    texts,
                    model: None,
                    analysis: None,
                    reply,
                },
                Some(Duration::from_secs(5)),
            )
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn embeds_in_order_and_serves_repeats_from_the_cache() {
        let (actor, metrics) = spawn().await;
        let first = embed(&actor, &["welder", "forklift driver"]).await.unwrap();
        assert_eq!(first.dimension, 64);
        assert_eq!(first.vectors.len(), 2);
        assert_eq!(metrics.embed_cache_misses.get(), 2);

        let second = embed(&actor, &["forklift driver", "welder"]).await.unwrap();
        assert_eq!(metrics.embed_cache_hits.get(), 2);
        assert_eq!(second.vectors[0], first.vectors[1]);
        assert!((dot(&second.vectors[1], &first.vectors[0]) - 1.0).abs() < 1e-6);
    }

    #[tokio::test]
    async fn rejects_empty_oversized_and_unknown_model_requests() {
        let (actor, _) = spawn().await;
        assert!(matches!(
            embed(&actor, &[]).await,
            Err(EmbedError::EmptyBatch)
        ));
        assert!(matches!(
            embed(&actor, &["a", "  "]).await,
            Err(EmbedError::EmptyText { index: 1 })
        ));
        assert!(matches!(
            embed(&actor, &["a", "b", "c", "d", "e"]).await,
            Err(EmbedError::TooManyTexts { max: 4, got: 5 })
        ));
        let long = "x".repeat(101);
        assert!(matches!(
            embed(&actor, &[&long]).await,
            Err(EmbedError::TextTooLong {
                index: 0,
                max: 100,
                got: 101
            })
        ));
        let reply = actor
            .call(
                |reply| EmbedMessage::Embed {
                    texts: vec!["a".into()],
                    model: Some("gpt-9".into()),
                    analysis: None,
                    reply,
                },
                Some(Duration::from_secs(5)),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(reply, Err(EmbedError::UnknownModel { .. })));
    }
}
