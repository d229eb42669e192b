//! The one error shape, for actix's own failures too.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .post_raw("/v1/embed", "application/json", "{\"texts\": [")
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_missing_and_unknown_fields_are_422() {
    let app = spawn_app().await;
    for body in [
        json!({"texts": "not a list"}),
        json!({"texts": [1, 2]}),
        json!({}),
        json!({"texts": ["a"], "surprise": true}),
    ] {
        let response = app.post_json("/v1/embed", &body).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .post_raw("/v1/embed", "text/plain", "{\"texts\": [\"a\"]}")
        .await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413() {
    let app = spawn_app_with(&[("limits.max_body_bytes", "2048")]).await;
    let big = "z".repeat(4000);
    let response = app.post_json("/v1/embed", &json!({ "texts": [big] })).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = spawn_app().await;
    assert_error(
        app.get("/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(app.get("/").await, StatusCode::NOT_FOUND, "not_found").await;

    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    let status = response.status();
    assert!(
        status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert!(body["error"]["code"].is_string(), "{body}");
}
