//! The Ollama provider against a small server that speaks Ollama's embed
//! protocol (`POST /api/embed {model, input}` -> `{model, embeddings}`).

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, metric_value, seed_workers, spawn_app_with};

/// Answers every text with an unnormalised 4-d vector derived from its
/// length, so the test can check the normalisation; refuses other models.
async fn embed(body: web::Json<Value>) -> HttpResponse {
    if body["model"] != "nomic-embed-text" {
        return HttpResponse::NotFound()
            .json(json!({"error": "model not found, try pulling it first"}));
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return HttpResponse::BadRequest().finish(),
    };
    let embeddings: Vec<Vec<f32>> = inputs
        .iter()
        .map(|t| vec![t.len() as f32, 3.0, 0.0, 4.0])
        .collect();
    HttpResponse::Ok().json(json!({"model": body["model"], "embeddings": embeddings}))
}

fn fake_ollama() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| App::new().route("/api/embed", web::post().to(embed)))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_vectors_are_normalised_and_batched() {
    let url = fake_ollama();
    let app = spawn_app_with(&[
        ("embed.provider", "ollama"),
        ("embed.ollama.url", &url),
        ("embed.ollama.batch_size", "2"),
        ("embed.dimension", "4"),
    ])
    .await;
    let response = app.embed(&["abc", "abcdefg", "x"]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "nomic-embed-text");
    assert_eq!(body["dimension"], 4);
    let vectors = body["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3, "three texts over two batches");
    // "abc" -> [3, 3, 0, 4] / sqrt(34)
    let first: Vec<f64> = vectors[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let norm = 34f64.sqrt();
    for (got, want) in first.iter().zip([3.0 / norm, 3.0 / norm, 0.0, 4.0 / norm]) {
        assert!((got - want).abs() < 1e-6, "{first:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ollama_is_503_naming_the_url() {
    let url = closed_port_url();
    let app = spawn_app_with(&[
        ("embed.provider", "ollama"),
        ("embed.ollama.url", &url),
        ("embed.dimension", "4"),
    ])
    .await;
    let body = assert_error(
        app.embed(&["hello"]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "embedder_unavailable",
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&url),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_dimension_or_model_is_a_bad_gateway() {
    let url = fake_ollama();
    let app = spawn_app_with(&[
        ("embed.provider", "ollama"),
        ("embed.ollama.url", &url),
        ("embed.dimension", "8"),
    ])
    .await;
    assert_error(
        app.embed(&["hello"]).await,
        StatusCode::BAD_GATEWAY,
        "embedder_bad_response",
    )
    .await;

    let app = spawn_app_with(&[
        ("embed.provider", "ollama"),
        ("embed.ollama.url", &url),
        ("embed.ollama.model", "llama-embed"),
        ("embed.dimension", "4"),
    ])
    .await;
    assert_error(
        app.embed(&["hello"]).await,
        StatusCode::BAD_GATEWAY,
        "embedder_bad_response",
    )
    .await;
}

/// A TCP front for `upstream` whose connections all close, and whose new
/// ones are refused, while the switch is off: an embedder that goes away
/// and comes back, pooled connections included.
async fn switchable(upstream: &str) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let target = upstream.trim_start_matches("http://").to_string();
    let (switch, up) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !*up.borrow() {
                continue; // dropped: closed at once
            }
            let target = target.clone();
            let mut up = up.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = up.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    (format!("http://{address}"), switch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_search_answers_from_keywords_while_the_embedder_is_down() {
    let (url, switch) = switchable(&fake_ollama()).await;
    let app = spawn_app_with(&[
        ("embed.provider", "ollama"),
        ("embed.ollama.url", &url),
        ("embed.dimension", "4"),
    ])
    .await;
    seed_workers(&app, 80, None).await;
    let search = |query: &str, mode: &str| json!({"query": query, "k": 5, "mode": mode, "role": "Forklift Operator", "explain": true});
    let ask = |body: Value| {
        let app = &app;
        async move {
            let response = app.post_json("/v1/matrix/search", &body).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let normal = ask(search("forklift operator", "hybrid")).await;
    assert!(normal.get("degraded").is_none(), "{normal}");
    assert_eq!(normal["hits"][0]["explain"]["mode"], "hybrid");

    switch.send_replace(false);
    // Queries not embedded before (the embedder's cache would answer them).
    for mode in ["hybrid", "semantic"] {
        let body = ask(search(&format!("{mode} forklift operator"), mode)).await;
        assert_eq!(body["degraded"], "embedder_unavailable", "{body}");
        let hits = body["hits"].as_array().unwrap();
        assert!(!hits.is_empty(), "the keyword side still answers: {body}");
        for hit in hits {
            let explain = &hit["explain"];
            assert_eq!(explain["degraded"], "embedder_unavailable", "{hit}");
            assert_eq!(explain["mode"], "keyword", "{hit}");
            assert!(
                explain["matched_terms"].as_array().unwrap().len() > 0,
                "{hit}"
            );
            assert!(
                explain["playbook"].is_null(),
                "no playbook without a vector"
            );
        }
    }
    assert_eq!(
        metric_value(
            &app.metrics().await,
            "lakehouse_matrix_degraded_searches_total{reason=\"embedder_unavailable\"}"
        ),
        Some(2.0)
    );
    // A vector search by text has no keyword side to fall back on.
    assert_error(
        app.post_json(
            "/v1/vectors/index/workers/search",
            &json!({"text": "welder with a license", "k": 3}),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "embedder_unavailable",
    )
    .await;

    switch.send_replace(true);
    let body = ask(search("hybrid forklift operator", "hybrid")).await;
    assert!(body.get("degraded").is_none(), "recovered: {body}");
    assert_eq!(body["hits"][0]["explain"]["mode"], "hybrid");
    assert!(body["hits"][0]["explain"].get("degraded").is_none());
}
