//! Who writes the answer: the built-in extractive template, or a model on
//! Ollama through ollama-rs's chat API. Both send the answer as it comes,
//! a piece at a time, and stop as soon as nobody listens.

use std::time::Instant;

use futures::StreamExt;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::chat::ChatMessage as OllamaMessage;
use ollama_rs::generation::parameters::{KeepAlive, TimeUnit};
use ollama_rs::models::ModelOptions;
use tokio::sync::mpsc;

use super::{ChatError, Event};
use crate::config::{ChatProvider, ChatSettings};
use crate::domain::chat::{estimate_tokens, extractive_answer, Message, Record, Role};

/// What a provider produced.
pub struct Generated {
    pub content: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Since the request began, when the first piece was sent.
    pub first_token: Option<Instant>,
}

pub enum Provider {
    Extractive,
    Ollama(OllamaChat),
}

impl Provider {
    pub fn new(settings: &ChatSettings) -> Result<Self, ChatError> {
        Ok(match settings.provider {
            ChatProvider::Extractive => Provider::Extractive,
            ChatProvider::Ollama => Provider::Ollama(OllamaChat::new(settings)?),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Provider::Extractive => "extractive",
            Provider::Ollama(_) => "ollama",
        }
    }

    /// The model a request names, or the default.
    pub fn model(&self, requested: Option<&str>) -> String {
        match self {
            Provider::Extractive => "extractive".into(),
            Provider::Ollama(ollama) => requested.unwrap_or(&ollama.model).to_string(),
        }
    }

    /// Writes the answer to `messages` (the context already in them),
    /// sending each piece to `events`. `question` and `records` are what
    /// the extractive template answers from.
    pub async fn generate(
        &self,
        model: &str,
        messages: &[Message],
        question: &str,
        records: &[Record],
        stream: bool,
        events: &mpsc::Sender<Event>,
    ) -> Result<Generated, ChatError> {
        match self {
            Provider::Extractive => {
                let answer = extractive_answer(question, records);
                let mut first_token = None;
                // Word by word, so a stream looks like any other.
                for piece in answer.split_inclusive(' ') {
                    if events.send(Event::Token(piece.to_string())).await.is_err() {
                        return Err(ChatError::Cancelled);
                    }
                    first_token.get_or_insert_with(Instant::now);
                }
                let prompt: String = messages.iter().map(|m| m.content.as_str()).collect();
                Ok(Generated {
                    prompt_tokens: estimate_tokens(&prompt),
                    completion_tokens: estimate_tokens(&answer),
                    content: answer,
                    first_token,
                })
            }
            Provider::Ollama(ollama) if stream => ollama.generate(model, messages, events).await,
            Provider::Ollama(ollama) => ollama.generate_whole(model, messages, events).await,
        }
    }
}

/// Ollama's `/api/chat`, streamed (NDJSON), through ollama-rs.
pub struct OllamaChat {
    client: ollama_rs::Ollama,
    url: String,
    model: String,
    keep_alive_secs: u64,
    max_tokens: u32,
}

impl OllamaChat {
    pub fn new(settings: &ChatSettings) -> Result<Self, ChatError> {
        let ollama = &settings.ollama;
        let unavailable = |reason: String| ChatError::Unavailable {
            url: ollama.url.clone(),
            reason,
        };
        // The chat's own deadline bounds the whole exchange; this one stops
        // a connection that hangs past it.
        let timeout = std::time::Duration::from_millis(settings.timeout_ms);
        Ok(Self {
            client: crate::actors::embed::ollama_client(&ollama.url, timeout)
                .map_err(unavailable)?,
            url: ollama.url.clone(),
            model: ollama.model.clone(),
            keep_alive_secs: ollama.keep_alive_secs,
            max_tokens: ollama.max_tokens,
        })
    }

    fn request(&self, model: &str, messages: &[Message]) -> ChatMessageRequest {
        let messages = messages
            .iter()
            .map(|m| match m.role {
                Role::System => OllamaMessage::system(m.content.clone()),
                Role::User => OllamaMessage::user(m.content.clone()),
                Role::Assistant => OllamaMessage::assistant(m.content.clone()),
            })
            .collect();
        ChatMessageRequest::new(model.to_string(), messages)
            .options(ModelOptions::default().num_predict(self.max_tokens as i32))
            .keep_alive(KeepAlive::Until {
                time: self.keep_alive_secs,
                unit: TimeUnit::Seconds,
            })
    }

    /// One request, one answer (`stream: false`): for callers that gather
    /// the answer anyway.
    async fn generate_whole(
        &self,
        model: &str,
        messages: &[Message],
        events: &mpsc::Sender<Event>,
    ) -> Result<Generated, ChatError> {
        let request = self.request(model, messages);
        let response = tokio::select! {
            response = self.client.send_chat_messages(request) => {
                response.map_err(|e| self.classify(e, model))?
            }
            _ = events.closed() => return Err(ChatError::Cancelled),
        };
        let content = response.message.content;
        let first_token = Some(Instant::now());
        if events.send(Event::Token(content.clone())).await.is_err() {
            return Err(ChatError::Cancelled);
        }
        let (prompt_tokens, completion_tokens) = response
            .final_data
            .map_or((0, 0), |d| (d.prompt_eval_count, d.eval_count));
        Ok(Generated {
            content,
            prompt_tokens,
            completion_tokens,
            first_token,
        })
    }

    /// Streamed (`stream: true`, NDJSON): each piece is sent on as it comes.
    async fn generate(
        &self,
        model: &str,
        messages: &[Message],
        events: &mpsc::Sender<Event>,
    ) -> Result<Generated, ChatError> {
        let request = self.request(model, messages);
        let mut stream = self
            .client
            .send_chat_messages_stream(request)
            .await
            .map_err(|e| self.classify(e, model))?;
        let mut generated = Generated {
            content: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            first_token: None,
        };
        loop {
            // Dropping the stream closes the connection: Ollama stops
            // generating for a client that went away.
            let next = tokio::select! {
                next = stream.next() => next,
                _ = events.closed() => return Err(ChatError::Cancelled),
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|()| {
                ChatError::BadResponse(format!("the answer stream from {} broke off", self.url))
            })?;
            let piece = chunk.message.content;
            if !piece.is_empty() {
                generated.content.push_str(&piece);
                generated.first_token.get_or_insert_with(Instant::now);
                if events.send(Event::Token(piece)).await.is_err() {
                    return Err(ChatError::Cancelled);
                }
            }
            if let Some(last) = chunk.final_data {
                generated.prompt_tokens = last.prompt_eval_count;
                generated.completion_tokens = last.eval_count;
            }
            if chunk.done {
                break;
            }
        }
        Ok(generated)
    }

    /// Names the model that is missing, the URL that cannot be reached.
    fn classify(&self, err: ollama_rs::error::OllamaError, model: &str) -> ChatError {
        use ollama_rs::error::OllamaError;
        match err {
            OllamaError::ReqwestError(e) if e.is_timeout() => ChatError::Timeout,
            OllamaError::ReqwestError(e) => ChatError::Unavailable {
                url: self.url.clone(),
                reason: e.to_string(),
            },
            OllamaError::Other(text)
            | OllamaError::InternalError(ollama_rs::error::InternalOllamaError { message: text })
                if text.contains("not found") =>
            {
                ChatError::ModelNotFound {
                    model: model.to_string(),
                    url: self.url.clone(),
                }
            }
            other => ChatError::BadResponse(other.to_string()),
        }
    }

    /// For `lakehouse doctor`: Ollama answers and has the model.
    pub async fn check(&self) -> Result<(), ChatError> {
        let models = self
            .client
            .list_local_models()
            .await
            .map_err(|e| self.classify(e, &self.model))?;
        let pulled = models
            .iter()
            .any(|m| m.name == self.model || m.name == format!("{}:latest", self.model));
        if pulled {
            Ok(())
        } else {
            Err(ChatError::ModelNotFound {
                model: self.model.clone(),
                url: self.url.clone(),
            })
        }
    }
}
