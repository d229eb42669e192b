//! Self-healing through HTTP: faults injected into actors, the tree and the
//! metrics that show the restart, and the service answering again.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, eventually, metric_value, spawn_app, spawn_app_with};

/// A bound on waits for an event: it only fails a test that would
/// otherwise hang. How fast healing is, is measured in `loadtest/`.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_embed_is_restarted_counted_and_embed_answers_again() {
    let app = spawn_app().await;
    assert_eq!(app.embed(&["before"]).await.status(), StatusCode::OK);

    let response = app.inject_fault("embed", "panic").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    eventually("embed answers 200 again", PATIENCE, || async {
        app.embed(&["after the panic"]).await.status() == StatusCode::OK
            && app
                .node("embed")
                .await
                .is_some_and(|n| n["restarts"] == 1 && n["status"] == "running")
    })
    .await;

    let embed = app.node("embed").await.unwrap();
    assert_eq!(embed["status"], "running");
    assert_eq!(embed["restarts"], 1);
    let reason = embed["last_failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("injected fault"), "{reason}");
    assert!(embed["last_failure"]["at"].is_string());

    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"lakehouse_actor_restarts_total{actor="embed"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, r#"lakehouse_actor_up{actor="embed"}"#),
        Some(1.0)
    );
    assert_eq!(
        app.node("http").await.unwrap()["restarts"],
        0,
        "one_for_one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_returned_by_a_handler_is_a_failure_too() {
    let app = spawn_app().await;
    assert_eq!(
        app.inject_fault("embed", "error").await.status(),
        StatusCode::ACCEPTED
    );
    eventually("embed restarted", PATIENCE, || async {
        app.node("embed")
            .await
            .is_some_and(|n| n["restarts"] == 1 && n["status"] == "running")
    })
    .await;
    assert_eq!(app.embed(&["still works"]).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_actor_answers_503_with_retry_after() {
    // A long backoff holds embed in `restarting` long enough to observe it.
    let app = spawn_app_with(&[
        ("supervision.backoff_initial_ms", "5000"),
        ("supervision.backoff_max_ms", "5000"),
    ])
    .await;
    app.inject_fault("embed", "panic").await;
    eventually("embed is restarting", PATIENCE, || async {
        app.node("embed")
            .await
            .is_some_and(|n| n["status"] == "restarting")
    })
    .await;

    let response = app.embed(&["during the restart"]).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "actor_unavailable",
    )
    .await;
    assert_error(
        app.get("/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;

    eventually("embed is back", PATIENCE, || async {
        app.embed(&["after"]).await.status() == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_actor_gives_504_not_a_hang() {
    let app = spawn_app_with(&[("server.request_timeout_ms", "200")]).await;
    let response = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "embed", "fault": "delay", "delay_ms": 1500}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // The answer is a 504 from the request timeout, not the 200 that
    // would come after the stall.
    let response = app.embed(&["stuck behind the delay"]).await;
    assert_error(response, StatusCode::GATEWAY_TIMEOUT, "actor_timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_edge_itself_restarts_and_serves_again() {
    let app = spawn_app().await;
    app.inject_fault("http", "panic").await;
    eventually("the edge restarted", PATIENCE, || async {
        match app.client.get(app.url("/v1/supervision")).send().await {
            Ok(response) if response.status() == StatusCode::OK => {
                let tree: Value = response.json().await.unwrap();
                let edge = tree["children"]
                    .as_array()
                    .and_then(|c| c.iter().find(|n| n["name"] == "edge").cloned())
                    .unwrap_or_default();
                let http = edge["children"]
                    .as_array()
                    .and_then(|c| c.iter().find(|n| n["name"] == "http").cloned())
                    .unwrap_or_default();
                http["restarts"] == 1 && http["status"] == "running"
            }
            _ => false,
        }
    })
    .await;
    assert_eq!(
        app.embed(&["served by the new edge"]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_404_unless_enabled() {
    let app = spawn_app_with(&[("faults.enabled", "false")]).await;
    let response = app.inject_fault("embed", "panic").await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.node("embed").await.unwrap()["restarts"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fault_requests_are_refused() {
    let app = spawn_app().await;
    assert_error(
        app.inject_fault("nobody", "panic").await,
        StatusCode::NOT_FOUND,
        "unknown_actor",
    )
    .await;
    assert_error(
        app.inject_fault("embed", "explode").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    let no_delay = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "embed", "fault": "delay"}),
        )
        .await;
    assert_error(no_delay, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let huge_delay = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "embed", "fault": "delay", "delay_ms": 3_600_000}),
        )
        .await;
    assert_error(huge_delay, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(app.node("embed").await.unwrap()["restarts"], 0);
}

/// Reads an event stream until `wanted` holds for the frames seen so far.
async fn read_events_until(
    response: reqwest::Response,
    wanted: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut frames: Vec<(String, Value)> = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(event), Some(data)) = (event, data) {
                    frames.push((event.to_string(), serde_json::from_str(data).unwrap()));
                }
            }
            if wanted(&frames) {
                return;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the events came");
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_a_failure_and_the_restart_and_the_tree_keeps_the_history() {
    let app = spawn_app().await;
    let response = app.get("/v1/supervision/events").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert_eq!(
        app.inject_fault("embed", "panic").await.status(),
        StatusCode::ACCEPTED
    );
    let frames = read_events_until(response, |frames| {
        frames
            .iter()
            .any(|(kind, e)| kind == "restarted" && e["actor"] == "embed")
    })
    .await;
    let about_embed: Vec<&(String, Value)> = frames
        .iter()
        .filter(|(_, e)| e["actor"] == "embed")
        .collect();
    let (kind, failed) = about_embed[0];
    assert_eq!(kind, "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("injected fault"),
        "{failed}"
    );
    assert_eq!(failed["supervisor"], "retrieval");
    assert_eq!(failed["incarnation"], 1);
    let (_, restarted) = about_embed.last().unwrap();
    assert_eq!(restarted["incarnation"], 2);
    assert!(restarted["seq"].as_u64() > failed["seq"].as_u64());

    // The same two events are in the node's history, and a late listener
    // can replay them with ?since=.
    let embed = app.node("embed").await.unwrap();
    let kinds: Vec<&str> = embed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["started", "failed", "restarted"]);
    assert_eq!(embed["incarnation"], 2);
    let since = failed["seq"].as_u64().unwrap() - 1;
    let replay = app
        .get(&format!("/v1/supervision/events?since={since}"))
        .await;
    let frames = read_events_until(replay, |frames| {
        frames
            .iter()
            .any(|(kind, e)| kind == "restarted" && e["actor"] == "embed")
    })
    .await;
    assert_eq!(frames[0].1["seq"], failed["seq"]);

    assert_error(
        app.get("/v1/supervision/events?since=yesterday").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    // The documented maximum holds both ways: 2^63 - 1 is a seq the
    // service has not reached (everything kept is replayed), 2^63 is
    // refused.
    let edge = app
        .get("/v1/supervision/events?since=9223372036854775807")
        .await;
    assert_eq!(edge.status(), StatusCode::OK);
    drop(edge);
    assert_error(
        app.get("/v1/supervision/events?since=9223372036854775808")
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded() {
    let app = spawn_app_with(&[("limits.max_event_streams", "2")]).await;
    let first = app.get("/v1/supervision/events").await;
    let second = app.get("/v1/supervision/events").await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_error(
        app.get("/v1/supervision/events").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_streams",
    )
    .await;
    drop(first);
    eventually("a closed stream frees its place", PATIENCE, || async {
        app.get("/v1/supervision/events").await.status() == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_alarm_is_listed_counted_and_makes_the_node_unready() {
    // No disk here has an exabyte free.
    let app = spawn_app_with(&[
        ("alarms.check_interval_ms", "100"),
        ("alarms.disk_free_min_bytes", "1000000000000000000"),
    ])
    .await;
    eventually("disk_nearly_full set", PATIENCE, || async {
        let alarms: Value = app.get("/v1/alarms").await.json().await.unwrap();
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "disk_nearly_full" && a["severity"] == "critical")
    })
    .await;
    let body = assert_error(
        app.get("/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("critical alarm: disk_nearly_full"),
        "{message}"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "lakehouse_alarm_active{alarm=\"disk_nearly_full\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ollama_embedder_sets_its_alarm() {
    let app = spawn_app_with(&[
        ("alarms.check_interval_ms", "100"),
        ("alarms.embedder_probe_ms", "100"),
        ("embed.provider", "ollama"),
        ("embed.ollama.url", "http://127.0.0.1:9"),
    ])
    .await;
    eventually("embedder_unreachable set", PATIENCE, || async {
        let alarms: Value = app.get("/v1/alarms").await.json().await.unwrap();
        alarms["alarms"].as_array().unwrap().iter().any(|a| {
            a["id"] == "embedder_unreachable"
                && a["message"].as_str().unwrap().contains("127.0.0.1:9")
        })
    })
    .await;
    // Major, not critical: SQL, keyword search and vector reads still
    // work, so the node stays in rotation and says what is wrong.
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["alarms"], json!(["embedder_unreachable"]));
    assert_eq!(
        app.get("/v1/catalog/datasets").await.status(),
        StatusCode::OK
    );
}
