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
