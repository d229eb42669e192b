//! `POST /v1/validate`: the wire format, pinned.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_is_200_with_exactly_valid_true() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "sms", "to": "(555) 123-4567", "body": "Call 555-123-4567"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"valid":true}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_422_listing_every_problem() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "email", "to": "nobody", "subject": "Hi [NAME]", "body": "SSN 123-45-6789"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["valid"], false);
    let errors = body["errors"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("invalid_address", "to"),
            ("placeholder", "subject"),
            ("pii", "body")
        ]
    );
    for error in errors {
        assert_eq!(
            error.as_object().unwrap().len(),
            3,
            "exactly kind, field, reason: {error}"
        );
        assert!(!error["reason"].as_str().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_must_show_pair() {
    let app = spawn_app().await;
    let ok = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "sms", "to": "555-123-4567", "body": "Call 555-123-4567"}),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let bad = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "sms", "to": "555-123-4567", "body": "SSN 123-45-6789"}),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["errors"][0]["kind"], "pii");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_proposals_are_checked_against_the_workers_index() {
    let app = spawn_app().await;
    lakehouse::seed::run(lakehouse::seed::SeedOptions {
        target: app.address.clone(),
        workers: 100,
        seed: 3,
        batch: 100,
        concurrency: 1,
        token: None,
    })
    .await
    .unwrap();
    let first = lakehouse::domain::workers::worker(3, 0);
    let other = (1..100)
        .map(|i| lakehouse::domain::workers::worker(3, i))
        .find(|w| w.role != first.role)
        .unwrap();
    let order = json!({"role": first.role, "city": first.city, "state": first.state, "count": 1});
    let ok = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "fill", "order": order, "worker_ids": [first.worker_id]}),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);

    let order = json!({"role": first.role, "city": first.city, "state": first.state, "count": 3});
    let response = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "fill", "order": order, "worker_ids": [first.worker_id, first.worker_id, other.worker_id, "W9999999"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    let kinds: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"count_mismatch"), "{kinds:?}");
    assert!(kinds.contains(&"duplicate_worker"), "{kinds:?}");
    assert!(kinds.contains(&"role_mismatch"), "{kinds:?}");
    assert!(kinds.contains(&"unknown_worker"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_an_error_in_the_one_shape() {
    let app = spawn_app().await;
    let response = app
        .post_json("/v1/validate", &json!({"kind": "fax", "to": "x"}))
        .await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
}
