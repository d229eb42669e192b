//! Health, readiness, metrics and the supervision tree.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{metric_value, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_every_actor_runs() {
    let app = spawn_app().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_keeps_a_valid_one() {
    let app = spawn_app().await;
    let generated = app.get("/health").await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(id.len() >= 16, "{id}");

    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_the_design_names_and_route_templates() {
    let app = spawn_app().await;
    assert_eq!(
        app.embed(&["warm up the counters"]).await.status(),
        StatusCode::OK
    );
    app.get("/no/such/route/123").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let metrics = response.text().await.unwrap();

    assert_eq!(
        metric_value(
            &metrics,
            r#"lakehouse_http_requests_total{method="POST",route="/v1/embed",status="200"}"#
        ),
        Some(1.0)
    );
    assert!(
        metrics.contains(r#"route="unmatched""#),
        "unknown paths share one label"
    );
    assert!(
        !metrics.contains("/no/such/route"),
        "raw paths never become labels"
    );
    assert!(metrics.contains("lakehouse_http_request_duration_seconds_bucket"));
    assert_eq!(
        metric_value(&metrics, r#"lakehouse_actor_mailbox_depth{actor="embed"}"#),
        Some(0.0),
        "the embed call was answered"
    );
    assert_eq!(
        metric_value(&metrics, r#"lakehouse_actor_up{actor="embed"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, r#"lakehouse_actor_up{actor="http"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, r#"lakehouse_actor_restarts_total{actor="embed"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&metrics, "lakehouse_embed_cache_misses_total"),
        Some(1.0)
    );
    assert!(metric_value(&metrics, "process_resident_memory_bytes").unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_draws_the_tree() {
    let app = spawn_app().await;
    let tree = app.supervision().await;

    assert_eq!(tree["name"], "root");
    assert_eq!(tree["strategy"], "one_for_one");
    let names: Vec<&str> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["data", "retrieval", "edge"],
        "subsystems in start order"
    );
    let children = |node: &str| -> Vec<String> {
        tree["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == node)
            .unwrap()["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(children("data"), ["storage", "catalog", "ingest", "query"]);
    assert_eq!(
        children("retrieval"),
        [
            "embed",
            "vectors",
            "vector_catalog",
            "matrix",
            "validate",
            "chat"
        ]
    );
    assert_eq!(children("edge"), ["http", "alarms"]);
    let embed = app.node("embed").await.unwrap();
    assert_eq!(embed["status"], "running");
    assert_eq!(embed["restarts"], 0);
    assert_eq!(embed["last_failure"], Value::Null);
    assert_eq!(embed["strategy"], Value::Null);
    assert_eq!(embed["children"], serde_json::json!([]));
    let vectors = app.node("vectors").await.unwrap();
    assert_eq!(vectors["strategy"], "one_for_one", "a nested supervisor");
}

/// The vector indexes' Lance caches are bounded from configuration, and
/// `/metrics` reports the bounds and what the caches hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lance_caches_are_bounded_from_configuration_and_reported() {
    let app = crate::helpers::spawn_app_with(&[
        ("vectors.lance_metadata_cache_bytes", "2097152"),
        ("vectors.lance_index_cache_bytes", "1048576"),
    ])
    .await;
    let created = app
        .post_json(
            "/v1/vectors/index",
            &serde_json::json!({"name": "cached", "dimension": 4}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for i in 0..20 {
        let items = serde_json::json!({"items": [{"id": format!("i{i}"), "vector": [1.0, i as f32, 0.5, 0.25]}]});
        let added = app.post_json("/v1/vectors/index/cached/add", &items).await;
        assert_eq!(added.status(), StatusCode::OK);
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"lakehouse_lance_cache_limit_bytes{cache="metadata"}"#
        ),
        Some(2_097_152.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"lakehouse_lance_cache_limit_bytes{cache="index"}"#
        ),
        Some(1_048_576.0)
    );
    let held = metric_value(&metrics, "lakehouse_lance_cache_bytes").expect("reported");
    assert!(
        held > 0.0,
        "20 commits leave manifests in the metadata cache"
    );
    assert!(held <= 2.0 * (2_097_152.0 + 1_048_576.0), "{held} bytes");
}
