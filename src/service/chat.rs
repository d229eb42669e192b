//! The chat use cases: a question answered from retrieved records (whole,
//! or as a stream of events for the HTTP door's SSE), a logged replay run,
//! and a rerun of one.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::actors::chat::{ChatMessage, Event, Finished, NAME};
use crate::domain::chat::{
    ChatRequest, ChatResponse, Citation, Message, ReplayRequest, ReplayRun, RerunReport, Role,
};

use super::limits::check_filter;
use super::{ApiError, Context};

/// A started chat: its first event (a token, or `done`), the citations
/// seen before it, and the rest of its events.
pub struct Started {
    pub first: Event,
    pub citations: Vec<Citation>,
    pub events: mpsc::Receiver<Event>,
}

/// A whole (not streamed) answer, as `/v1/chat` gives it without `stream`.
pub async fn ask(context: &Context, request: ChatRequest) -> Result<ChatResponse, ApiError> {
    let Started {
        first,
        citations,
        events,
    } = start(context, request).await?;
    gather(first, citations, events).await
}

/// Starts a chat and waits for its first token: everything before it
/// (retrieval, the model's first answer) fails as a plain HTTP error.
pub async fn start(context: &Context, request: ChatRequest) -> Result<Started, ApiError> {
    if let Some(filter) = request.context.as_ref().and_then(|c| c.filter.as_ref()) {
        check_filter(context, Some(filter))?;
    }
    let mut events = context
        .call(NAME, |reply| ChatMessage::Chat { request, reply })
        .await??;
    let mut citations = Vec::new();
    loop {
        match events.recv().await {
            Some(Event::Citations(found)) => citations = found,
            Some(Event::Error(err)) => return Err(err.into()),
            Some(first) => {
                return Ok(Started {
                    first,
                    citations,
                    events,
                })
            }
            None => {
                return Err(ApiError::Internal(
                    "the chat ended without an answer".into(),
                ))
            }
        }
    }
}

/// Gathers the rest of an answer after its first event.
pub async fn gather(
    first: Event,
    mut citations: Vec<Citation>,
    mut events: mpsc::Receiver<Event>,
) -> Result<ChatResponse, ApiError> {
    let mut answer = String::new();
    let mut event = Some(first);
    loop {
        match event {
            Some(Event::Token(piece)) => answer.push_str(&piece),
            Some(Event::Citations(found)) => citations = found,
            Some(Event::Done(finished)) => {
                let Finished {
                    provider,
                    model,
                    usage,
                    verdict,
                    ..
                } = *finished;
                return Ok(ChatResponse {
                    provider,
                    model,
                    message: Message {
                        role: Role::Assistant,
                        content: answer,
                    },
                    citations,
                    usage,
                    verdict,
                });
            }
            Some(Event::Error(err)) => return Err(err.into()),
            None => {
                return Err(ApiError::Internal(
                    "the chat ended without an answer".into(),
                ))
            }
        }
        event = events.recv().await;
    }
}

/// One logged run: retrieve → bundle → chat → validate, appended to the
/// Lance dataset `replay_runs`.
pub async fn replay(context: &Context, request: ReplayRequest) -> Result<ReplayRun, ApiError> {
    let timeout = context.timeout() + Duration::from_millis(context.settings.chat.timeout_ms);
    Ok(context
        .call_with(
            NAME,
            |reply| ChatMessage::Replay { request, reply },
            timeout,
        )
        .await??)
}

/// A logged run repeated at the versions it cited and now.
pub async fn rerun(context: &Context, run_id: String) -> Result<RerunReport, ApiError> {
    let timeout = context.timeout() + Duration::from_millis(2 * context.settings.chat.timeout_ms);
    Ok(context
        .call_with(NAME, |reply| ChatMessage::Rerun { run_id, reply }, timeout)
        .await??)
}
