//! `POST /v1/chat`, `POST /v1/replay` and `POST /v1/replay/{run_id}/rerun`.
//!
//! A chat answers as JSON, or (`stream: true`) as `text/event-stream`:
//! `token` events, then always one `citations` event, then `done` with the
//! usage — or `error` with the one error shape if it fails mid-answer. A
//! failure before the first token is a plain HTTP error. A client that
//! disconnects drops the stream, which stops the chat and its upstream
//! generation.

use crate::domain::de::Object;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{post, web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::actors::chat::Event;
use crate::domain::chat::{
    ChatRequest, ChatResponse, Citation, ReplayRequest, ReplayRun, RerunReport,
};
use crate::service;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(chat).service(replay).service(rerun);
}

/// Ask a question over retrieved records. With `context`, the records are
/// retrieved (exactly, at the newest Lance version, which each citation
/// pins), SSN-shaped values are redacted, and the model answers from them.
/// The built-in `extractive` provider answers with a fixed template.
#[utoipa::path(
    tag = "chat",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The answer, as JSON (`ChatResponse`) or, with `stream: true`, as `text/event-stream`: `token` events `{\"content\"}`, then `citations` `{\"citations\"}`, then `done` `{\"model\",\"usage\",\"verdict\"}` (or `error`)",
            content((ChatResponse = "application/json"), (String = "text/event-stream"))),
        (status = 404, description = "`no_workers`, `index_not_found`, `model_not_found` (names the model)", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_messages`, `invalid_context`, `invalid_k`, `empty_query`, `query_too_long`, `invalid_filter`, `too_many_filter_fields`, `dimension_mismatch`", body = super::error::ErrorBody),
        (status = 502, description = "`chat_bad_response`", body = super::error::ErrorBody),
        (status = 503, description = "`chat_unavailable` (names the URL), `index_loading`, `embedder_unavailable`, `too_many_chats` (`chat.max_concurrent` are running)", body = super::error::ErrorBody),
        (status = 504, description = "`chat_timeout`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/chat")]
#[tracing::instrument(skip_all, fields(stream = request.stream, messages = request.messages.len()))]
async fn chat(
    context: web::Data<ApiContext>,
    request: web::Json<Object<ChatRequest>>,
) -> Result<HttpResponse, ApiError> {
    let request = request.into_inner().0;
    let stream = request.stream;
    let started = service::chat::start(&context, request).await?;
    if stream {
        return Ok(sse(started));
    }
    let service::chat::Started {
        first,
        citations,
        events,
    } = started;
    Ok(HttpResponse::Ok().json(service::chat::gather(first, citations, events).await?))
}

fn frame(name: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The SSE body: tokens as they come, the citations after the last one,
/// then `done`. Dropping it (a client that went away) drops the receiver,
/// which stops the chat.
fn sse(started: service::chat::Started) -> HttpResponse {
    let service::chat::Started {
        first,
        citations,
        events,
    } = started;
    let state = (Some(first), events, Some(citations), false);
    let body = futures::stream::unfold(
        state,
        |(pending, mut events, mut citations, ended)| async move {
            if ended {
                return None;
            }
            let event = match pending {
                Some(event) => Some(event),
                None => events.recv().await,
            };
            let (bytes, ended) = match event {
                Some(Event::Token(piece)) => (frame("token", &json!({ "content": piece })), false),
                Some(Event::Citations(found)) => {
                    citations = Some(found);
                    (Bytes::new(), false)
                }
                Some(Event::Done(finished)) => {
                    let mut out = citation_frame(citations.take().unwrap_or_default()).to_vec();
                    out.extend_from_slice(&frame(
                        "done",
                        &json!({
                            "provider": finished.provider,
                            "model": finished.model,
                            "usage": finished.usage,
                            "verdict": finished.verdict,
                        }),
                    ));
                    (Bytes::from(out), true)
                }
                Some(Event::Error(err)) => {
                    let err = ApiError::from(err);
                    let code = err.code().as_str();
                    let mut out = citation_frame(citations.take().unwrap_or_default()).to_vec();
                    out.extend_from_slice(&frame(
                        "error",
                        &json!({"error": {"code": code, "message": err.to_string()}}),
                    ));
                    (Bytes::from(out), true)
                }
                None => (citation_frame(citations.take().unwrap_or_default()), true),
            };
            Some((
                Ok::<_, actix_web::Error>(bytes),
                (None, events, citations, ended),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

fn citation_frame(citations: Vec<Citation>) -> Bytes {
    frame("citations", &json!({ "citations": citations }))
}

/// One logged run: retrieve (workers, with the playbook when a role is
/// given) → bundle → chat → validate, appended to the Lance dataset
/// `replay_runs` (query it with `/v1/sql`). The Lance versions it cites
/// are tagged so a rerun can always read them.
#[utoipa::path(
    tag = "chat",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "The run, as logged", body = ReplayRun),
        (status = 404, description = "`no_workers`, `model_not_found`", body = super::error::ErrorBody),
        (status = 422, description = "`invalid_messages`, `invalid_context`, `invalid_k`, `empty_query`, `query_too_long`", body = super::error::ErrorBody),
        (status = 502, description = "`chat_bad_response`", body = super::error::ErrorBody),
        (status = 503, description = "`chat_unavailable`, `index_loading`, `embedder_unavailable`, `too_many_chats`", body = super::error::ErrorBody),
        (status = 504, description = "`chat_timeout`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/replay")]
#[tracing::instrument(skip_all)]
async fn replay(
    context: web::Data<ApiContext>,
    request: web::Json<Object<ReplayRequest>>,
) -> Result<web::Json<ReplayRun>, ApiError> {
    Ok(web::Json(
        service::chat::replay(&context, request.into_inner().0).await?,
    ))
}

/// Repeat a logged run twice: against the Lance versions it cited (which
/// reproduces its retrieval) and against now; report what changed since
/// — retrieved ids, answer, verdict.
#[utoipa::path(
    tag = "chat",
    params(("run_id" = String, Path, description = "The run's id (32 hex digits)")),
    responses(
        (status = 200, description = "What the run retrieves at its versions and now", body = RerunReport),
        (status = 404, description = "`run_not_found`, `model_not_found`", body = super::error::ErrorBody),
        (status = 410, description = "`version_gone`: a cited version was removed", body = super::error::ErrorBody),
        (status = 502, description = "`chat_bad_response`", body = super::error::ErrorBody),
        (status = 503, description = "`chat_unavailable`, `index_loading`, `embedder_unavailable`, `too_many_chats`", body = super::error::ErrorBody),
        (status = 504, description = "`chat_timeout`", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/replay/{run_id}/rerun")]
#[tracing::instrument(skip_all, fields(run = %run_id))]
async fn rerun(
    context: web::Data<ApiContext>,
    run_id: web::Path<String>,
) -> Result<web::Json<RerunReport>, ApiError> {
    Ok(web::Json(
        service::chat::rerun(&context, run_id.into_inner()).await?,
    ))
}
