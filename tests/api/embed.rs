//! `POST /v1/embed`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

fn vectors(body: &Value) -> Vec<Vec<f64>> {
    body["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_returns_unit_vectors_of_the_configured_dimension() {
    let app = spawn_app().await;
    let response = app
        .embed(&["Forklift operator in Chicago", "CNC machinist"])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();

    assert_eq!(body["model"], "lakehouse-hash-v2");
    assert_eq!(body["dimension"], 256, "config/test.toml sets 256");
    let vectors = vectors(&body);
    assert_eq!(vectors.len(), 2);
    for v in &vectors {
        assert_eq!(v.len(), 256);
        let norm = cosine(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_texts_score_higher_cosine_than_unrelated_ones() {
    let app = spawn_app().await;
    let response = app
        .embed(&[
            "experienced forklift operator, OSHA certified",
            "certified forklift operators wanted",
            "registered nurse for night shifts in a hospital",
        ])
        .await;
    let v = vectors(&response.json().await.unwrap());

    let similar = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        similar > unrelated + 0.2,
        "similar {similar}, unrelated {unrelated}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_gives_the_same_vector_from_the_cache() {
    let app = spawn_app().await;
    let first: Value = app
        .embed(&["welder, TIG and MIG"])
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .embed(&["welder, TIG and MIG"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["vectors"], second["vectors"]);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("lakehouse_embed_cache_hits_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_batches_empty_texts_and_limits_are_422() {
    let app = spawn_app().await;
    assert_error(
        app.embed(&[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "empty_batch",
    )
    .await;
    assert_error(
        app.embed(&["ok", ""]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "empty_text",
    )
    .await;

    let too_many: Vec<&str> = vec!["x"; 257];
    assert_error(
        app.embed(&too_many).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_texts",
    )
    .await;

    let long = "y".repeat(8193);
    assert_error(
        app.embed(&[&long]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "text_too_long",
    )
    .await;

    let unknown = app
        .post_json("/v1/embed", &json!({"texts": ["a"], "model": "gpt-9"}))
        .await;
    assert_error(unknown, StatusCode::UNPROCESSABLE_ENTITY, "unknown_model").await;
}
