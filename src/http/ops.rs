//! Operations: liveness, readiness, metrics, the supervision tree and its
//! event stream, and alarms.

use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::alarms::Alarm;
use crate::supervision::{ChildStatus, NodeView, SupervisionEventView};

/// A comment line this often keeps idle event streams (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Routes outside `/v1`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(ready).service(metrics);
}

/// Routes under `/v1`.
pub fn configure_v1(cfg: &mut ServiceConfig) {
    cfg.service(supervision)
        .service(supervision_events)
        .service(list_alarms);
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    status: &'static str,
    /// Vector indexes left failed after a crash loop: they answer 503
    /// `index_failed`, everything else serves (and a node is not taken out
    /// of rotation for one bad index).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_indexes: Vec<String>,
    /// Alarms set that are not critical (critical ones make this a 503).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alarms: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlarmList {
    /// Active alarms, most severe first.
    alarms: Vec<Alarm>,
}

/// Liveness: the edge answers. Always open.
#[utoipa::path(tag = "ops", responses((status = 200, description = "The edge answers", body = Health)))]
#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: every actor in the tree is running (or was stopped on
/// purpose) and no critical alarm is set; anything starting, restarting or
/// failed, or a critical alarm, makes this a 503 naming it — except a
/// vector index left failed, which is listed but does not make the node
/// unready.
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, description = "Every actor is running", body = Readiness),
        (status = 503, description = "`not_ready`: names what is starting, restarting or failed", body = super::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
#[get("/ready")]
async fn ready(context: web::Data<ApiContext>) -> Result<HttpResponse, ApiError> {
    let nodes = context.board.flatten();
    let failed_indexes: Vec<String> = nodes
        .iter()
        .filter(|(name, status)| {
            *status == ChildStatus::Failed && crate::domain::vectors::index_of(name).is_some()
        })
        .map(|(name, _)| name.clone())
        .collect();
    let waiting: Vec<String> = nodes
        .into_iter()
        .filter(|(name, status)| match status {
            ChildStatus::Starting | ChildStatus::Restarting => true,
            ChildStatus::Failed => !failed_indexes.contains(name),
            ChildStatus::Running | ChildStatus::Stopped => false,
        })
        .map(|(name, status)| format!("{name} ({})", status_word(status)))
        .collect();
    let critical: Vec<String> = context
        .alarms
        .critical()
        .iter()
        .map(|a| format!("{}: {}", a.id, a.message))
        .collect();
    match (waiting.is_empty(), critical.is_empty()) {
        (true, true) => Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            failed_indexes,
            alarms: context.alarms.list().into_iter().map(|a| a.id).collect(),
        })),
        (false, _) => Err(ApiError::NotReady(format!(
            "waiting for {}",
            waiting.join(", ")
        ))),
        (true, false) => Err(ApiError::NotReady(format!(
            "critical alarm: {}",
            critical.join("; ")
        ))),
    }
}

fn status_word(status: ChildStatus) -> &'static str {
    match status {
        ChildStatus::Starting => "starting",
        ChildStatus::Running => "running",
        ChildStatus::Restarting => "restarting",
        ChildStatus::Stopped => "stopped",
        ChildStatus::Failed => "failed",
    }
}

/// Prometheus text exposition.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")),
    security((), ("bearer" = []))
)]
#[get("/metrics")]
async fn metrics(context: web::Data<ApiContext>) -> Result<HttpResponse, ApiError> {
    let body = context
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("static mime"),
        ))
        .body(body))
}

/// The supervision tree: every node's status, restarts and last failure.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "The live tree", body = NodeView)),
    security(("bearer" = ["read"]))
)]
#[get("/supervision")]
async fn supervision(context: web::Data<ApiContext>) -> web::Json<NodeView> {
    web::Json(context.board.view("root", ChildStatus::Running))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Replay the kept events after this `seq` first (the last 256 at
    /// most); a `Last-Event-ID` header wins over it. A `seq` the service
    /// has not reached (it restarted) replays all kept. Default: only new
    /// events. At most 2^63 - 1 (a larger one is 400 `invalid_query`).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    since: Option<u64>,
}

/// The supervision events as Server-Sent Events: `started`, `failed`
/// (with the reason), `restarted`, `gave_up`, `escalated`, `stopped`, each
/// `{seq, at, actor, supervisor, kind, incarnation, reason}` with `id:` =
/// `seq`; `lagged` `{"missed"}` when the listener fell behind; a comment
/// every 15 s keeps the stream open.
#[utoipa::path(
    tag = "ops",
    params(EventsQuery),
    responses(
        (status = 200, description = "`text/event-stream` of supervision events", content_type = "text/event-stream", body = SupervisionEventView),
        (status = 503, description = "`too_many_streams`: limits.max_event_streams are open, or the token holds limits.max_event_streams_per_token", body = super::error::ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/supervision/events")]
async fn supervision_events(
    context: web::Data<ApiContext>,
    query: web::Query<EventsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if query.since.is_some_and(|since| since > i64::MAX as u64) {
        return Err(ApiError::InvalidQuery(
            "since: at most 9223372036854775807".to_string(),
        ));
    }
    let limits = &context.settings.limits;
    let caller = super::caller_name(&request);
    let share = context
        .front
        .share(
            "event_streams",
            &caller,
            limits
                .max_event_streams_per_token
                .min(limits.max_event_streams),
        )
        .ok_or_else(|| {
            ApiError::TooManyStreams(format!(
                "token '{caller}' holds {} event streams (limits.max_event_streams_per_token)",
                limits.max_event_streams_per_token
            ))
        })?;
    let permit = context
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::TooManyStreams(format!(
                "{} event streams are open (limits.max_event_streams)",
                limits.max_event_streams
            ))
        })?;
    let permit = (permit, share);
    let events = context.directory.events();
    let resume = request
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A reconnecting client's Last-Event-ID wins over the `since` of the
    // URL it reconnects to. A seq from before a process restart (the
    // numbering started again) replays what is kept.
    let next = events.next_seq();
    let since = match resume.or(query.since) {
        Some(seq) if seq >= next => 0,
        Some(seq) => seq,
        None => next.saturating_sub(1),
    };
    let (backlog, receiver) = events.subscribe(since);
    let ended = Box::pin(events.ended());
    let start = Bytes::from_static(b": supervision events\n\n");
    let body = futures::stream::unfold(
        (Some(start), backlog.into_iter(), receiver, permit, ended),
        |(first, mut backlog, mut receiver, permit, mut ended)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (None, backlog, receiver, permit, ended)));
            }
            if let Some(event) = backlog.next() {
                let frame = event_frame(&event);
                return Some((Ok(frame), (None, backlog, receiver, permit, ended)));
            }
            let bytes = tokio::select! {
                // The edge is stopping: end, so its graceful stop need not wait.
                _ = &mut ended => return None,
                next = tokio::time::timeout(KEEP_ALIVE, receiver.recv()) => match next {
                    Ok(Ok(event)) => event_frame(&event),
                    Ok(Err(RecvError::Lagged(missed))) => {
                        Bytes::from(format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n"))
                    }
                    Ok(Err(RecvError::Closed)) => return None,
                    Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                },
            };
            Some((
                Ok::<_, actix_web::Error>(bytes),
                (None, backlog, receiver, permit, ended),
            ))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

fn event_frame(event: &SupervisionEventView) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_default();
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Bytes::from(format!(
        "id: {}\nevent: {kind}\ndata: {data}\n\n",
        event.seq
    ))
}

/// The active alarms (set and cleared by the service itself), most
/// severe first: `critical` ones also make `/ready` answer 503.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Active alarms", body = AlarmList)),
    security(("bearer" = ["read"]))
)]
#[get("/alarms")]
async fn list_alarms(context: web::Data<ApiContext>) -> web::Json<AlarmList> {
    web::Json(AlarmList {
        alarms: context.alarms.list(),
    })
}
