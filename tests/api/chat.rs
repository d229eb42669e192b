//! Chat, its guards and the replay log through HTTP. The Ollama provider
//! runs against a small server that speaks Ollama's chat protocol:
//! `POST /api/chat` as streamed NDJSON or as one object, and
//! `GET /api/tags`.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, eventually, spawn_app_with, TestApp};

/// What the fake saw.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<String>>,
    /// Set when an endless stream's connection was closed by the client.
    closed: AtomicBool,
}

/// Sets `closed` when the response body is dropped (actix drops it when
/// the client goes away).
struct OnDrop(Arc<Seen>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }
}

fn chunk(content: &str, done: bool) -> String {
    let mut line = json!({
        "model": "llama3.2",
        "created_at": "2026-12-01T00:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
    });
    if done {
        let object = line.as_object_mut().unwrap();
        for (key, value) in [
            ("total_duration", 10),
            ("load_duration", 1),
            ("prompt_eval_count", 42),
            ("prompt_eval_duration", 2),
            ("eval_count", 3),
            ("eval_duration", 3),
        ] {
            object.insert(key.into(), json!(value));
        }
    }
    format!("{line}\n")
}

/// `llama3.2` answers "Ana can cover." (streamed in three pieces, or
/// whole); `missing` is not pulled; `slow` never answers; `endless`
/// streams until the client goes away.
async fn chat(seen: web::Data<Arc<Seen>>, body: Bytes) -> HttpResponse {
    let text = String::from_utf8_lossy(&body).to_string();
    seen.bodies.lock().push(text.clone());
    let request: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let stream = request["stream"].as_bool().unwrap_or(true);
    match request["model"].as_str() {
        Some("missing") => HttpResponse::NotFound()
            .json(json!({"error": "model \"missing\" not found, try pulling it first"})),
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            HttpResponse::Ok().finish()
        }
        Some("endless") => {
            let guard = OnDrop(seen.get_ref().clone());
            let body = futures::stream::unfold(guard, |guard| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Ok::<_, actix_web::Error>(Bytes::from(chunk("more ", false))),
                    guard,
                ))
            });
            HttpResponse::Ok()
                .content_type("application/x-ndjson")
                .streaming(body)
        }
        _ if stream => {
            let lines: Vec<Result<Bytes, actix_web::Error>> = [
                chunk("Ana ", false),
                chunk("can ", false),
                chunk("cover.", false),
                chunk("", true),
            ]
            .into_iter()
            .map(|l| Ok(Bytes::from(l)))
            .collect();
            HttpResponse::Ok()
                .content_type("application/x-ndjson")
                .streaming(futures::stream::iter(lines))
        }
        _ => {
            let mut whole: Value = serde_json::from_str(&chunk("Ana can cover.", true)).unwrap();
            whole["done"] = json!(true);
            HttpResponse::Ok().json(whole)
        }
    }
}

async fn tags() -> HttpResponse {
    HttpResponse::Ok().json(json!({"models": [
        {"name": "llama3.2:latest", "modified_at": "2026-11-01T00:00:00Z", "size": 2019393189u64}
    ]}))
}

fn fake_ollama() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/api/chat", web::post().to(chat))
            .route("/api/tags", web::get().to(tags))
    })
    .workers(2)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), seen)
}

async fn seed(app: &TestApp, workers: usize) {
    crate::helpers::seed_workers(app, workers, None).await;
}

async fn ollama_app(url: &str, timeout_ms: &str) -> TestApp {
    spawn_app_with(&[
        ("chat.provider", "ollama"),
        ("chat.ollama.url", url),
        ("chat.timeout_ms", timeout_ms),
    ])
    .await
}

fn question(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "who can cover a forklift shift?"}],
        "context": {"source": "workers", "k": 3, "filter": {"role": "Forklift Operator"}},
    })
}

/// The SSE events of a body: `(event, data)`.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    name = rest.to_string();
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(rest).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_tokens_in_order_then_citations_then_done() {
    let (url, seen) = fake_ollama();
    let app = ollama_app(&url, "10000").await;
    seed(&app, 300).await;
    let response = app.post_json("/v1/chat", &question("llama3.2", true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["token", "token", "token", "citations", "done"]);
    let tokens: Vec<&str> = events[..3]
        .iter()
        .map(|(_, d)| d["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["Ana ", "can ", "cover."]);
    let citations = events[3].1["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 3);
    assert!(citations
        .iter()
        .all(|c| c["source"] == "workers" && c["lance_version"].as_u64().unwrap() > 0));
    let done = &events[4].1;
    assert_eq!(done["model"], "llama3.2");
    assert_eq!(done["usage"]["prompt_tokens"], 42);
    assert_eq!(done["usage"]["completion_tokens"], 3);
    // The model was asked to stream, with the context as a system message.
    let body: Value = serde_json::from_str(&seen.bodies.lock()[0]).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    let cited = citations[0]["id"].as_str().unwrap();
    assert!(body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains(cited));

    let metrics = app.metrics().await;
    assert!(metrics.contains(
        "lakehouse_chat_requests_total{model=\"llama3.2\",outcome=\"ok\",provider=\"ollama\"} 1"
    ), "{metrics}");
    assert!(metrics.contains("lakehouse_chat_first_token_seconds_count{provider=\"ollama\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_comes_from_one_ollama_object() {
    let (url, seen) = fake_ollama();
    let app = ollama_app(&url, "10000").await;
    seed(&app, 200).await;
    let response = app
        .post_json("/v1/chat", &question("llama3.2", false))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "Ana can cover."})
    );
    assert_eq!(body["citations"].as_array().unwrap().len(), 3);
    assert_eq!(body["usage"]["prompt_tokens"], 42);
    let sent: Value = serde_json::from_str(&seen.bodies.lock()[0]).unwrap();
    assert_eq!(sent["stream"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_is_not_pulled_is_named() {
    let (url, _) = fake_ollama();
    let app = ollama_app(&url, "10000").await;
    seed(&app, 100).await;
    for stream in [false, true] {
        let response = app
            .post_json("/v1/chat", &question("missing", stream))
            .await;
        let body = assert_error(response, StatusCode::NOT_FOUND, "model_not_found").await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("'missing'") && message.contains(&url),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_model_is_504_and_an_unreachable_one_503_naming_the_url() {
    let (url, _) = fake_ollama();
    let app = ollama_app(&url, "300").await;
    let body = json!({"model": "slow", "messages": [{"role": "user", "content": "hello"}]});
    let response = app.post_json("/v1/chat", &body).await;
    assert_error(response, StatusCode::GATEWAY_TIMEOUT, "chat_timeout").await;

    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let app = ollama_app(&closed, "10000").await;
    let body = json!({"messages": [{"role": "user", "content": "hello"}]});
    let response = app.post_json("/v1/chat", &body).await;
    let error = assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "chat_unavailable",
    )
    .await;
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_closes_the_upstream_generation() {
    let (url, seen) = fake_ollama();
    let app = ollama_app(&url, "60000").await;
    let body = json!({"model": "endless", "stream": true,
                      "messages": [{"role": "user", "content": "go on forever"}]});
    let response = app.post_json("/v1/chat", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: token"));
    assert!(!seen.closed.load(Ordering::SeqCst), "still generating");
    drop(stream);
    eventually(
        "the fake sees its connection closed",
        Duration::from_secs(10),
        || async { seen.closed.load(Ordering::SeqCst) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssns_in_the_context_never_reach_the_model_and_phones_do() {
    let (url, seen) = fake_ollama();
    let app = ollama_app(&url, "10000").await;
    seed(&app, 50).await;
    let item = json!({"items": [{
        "id": "WPII",
        "text": "forklift operator with a clean record",
        "metadata": {"name": "Pat Guard", "role": "Forklift Operator",
                     "phone": "555-123-4567", "notes": "SSN 123-45-6789 on file"},
    }]});
    let response = app.post_json("/v1/vectors/index/workers/add", &item).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut ask = question("llama3.2", false);
    ask["context"]["filter"] = json!({"name": "Pat Guard"});
    let response = app.post_json("/v1/chat", &ask).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["citations"][0]["id"], "WPII");
    let sent = seen.bodies.lock()[0].clone();
    assert!(!sent.contains("123-45-6789"), "{sent}");
    assert!(sent.contains("[redacted SSN]"), "{sent}");
    assert!(sent.contains("555-123-4567"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_ollama_and_the_model() {
    let (url, _) = fake_ollama();
    let check = move |model: &str| {
        let settings = lakehouse::config::Settings::load(lakehouse::config::LoadOptions {
            overrides: vec![
                ("chat.provider".into(), "ollama".into()),
                ("chat.ollama.url".into(), url.clone()),
                ("chat.ollama.model".into(), model.into()),
            ],
            ..Default::default()
        })
        .unwrap();
        lakehouse::doctor::run(&settings)
            .into_iter()
            .find(|c| c.name == "chat")
            .unwrap()
    };
    let (pulled, missing) =
        tokio::task::spawn_blocking(move || (check("llama3.2"), check("mistral")))
            .await
            .unwrap();
    assert!(pulled.ok, "{}", pulled.detail);
    assert!(!missing.ok);
    assert!(missing.fix.unwrap().contains("ollama pull mistral"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extractive_default_cites_real_workers_of_the_role() {
    let app = spawn_app_with(&[]).await;
    seed(&app, 500).await;
    let response = app.post_json("/v1/chat", &question("ignored", false)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["provider"], "extractive");
    let content = body["message"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Extractive answer (no language model)"),
        "{content}"
    );
    let citations = body["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 3);
    for citation in citations {
        let id = citation["id"].as_str().unwrap();
        assert!(content.contains(&format!("[{id}]")));
        let item: Value = app
            .get(&format!("/v1/vectors/index/workers/items/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(item["metadata"]["role"], "Forklift Operator", "{item}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_logged_queryable_and_rerun_against_their_versions() {
    let app = spawn_app_with(&[]).await;
    seed(&app, 300).await;
    let run = |body: Value| {
        let app = &app;
        async move {
            let response = app.post_json("/v1/replay", &body).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let first =
        run(json!({"query": "forklift operator night shift", "role": "Forklift Operator", "k": 3}))
            .await;
    run(json!({"query": "warehouse picker", "k": 2, "validate": "sms"})).await;
    let count = app
        .post_json(
            "/v1/sql",
            &json!({"sql": "SELECT count(*) AS n FROM replay_runs"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(count["rows"][0][0], 2, "{count}");
    assert_eq!(first["schema"], "replay_run.v1");
    let run_id = first["run_id"].as_str().unwrap();

    // A worker that matches the query better than any other arrives.
    let newcomer = json!({"items": [{
        "id": "WNEW",
        "text": "forklift operator night shift",
        "metadata": {"name": "New Comer", "role": "Forklift Operator"},
    }]});
    let response = app
        .post_json("/v1/vectors/index/workers/add", &newcomer)
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = app
        .post_json(&format!("/v1/replay/{run_id}/rerun"), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["pinned_reproduces"], true, "{report}");
    assert_eq!(
        report["pinned"]["ids"],
        first["citations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect::<Value>()
    );
    assert_eq!(report["changes"]["added_ids"], json!(["WNEW"]), "{report}");
    assert!(
        report["current"]["versions"]["workers"].as_u64()
            > report["original"]["versions"]["workers"].as_u64()
    );

    let response = app
        .post_json(
            "/v1/replay/0123456789abcdef0123456789abcdef/rerun",
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "run_not_found").await;

    // Nobody else writes the replay log.
    let response = app
        .post_raw("/v1/ingest/replay_runs", "text/csv", "a,b\n1,2\n")
        .await;
    assert_error(response, StatusCode::CONFLICT, "reserved_dataset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_chat_heals_and_the_next_chat_answers() {
    let app = spawn_app_with(&[("faults.enabled", "true")]).await;
    let ask = json!({"messages": [{"role": "user", "content": "hello"}]});
    assert_eq!(
        app.post_json("/v1/chat", &ask).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.inject_fault("chat", "panic").await.status(),
        StatusCode::ACCEPTED
    );
    eventually(
        "chat answers after its restart",
        Duration::from_secs(10),
        || async { app.post_json("/v1/chat", &ask).await.status() == StatusCode::OK },
    )
    .await;
    let node = app.node("chat").await.unwrap();
    assert!(node["restarts"].as_u64().unwrap() >= 1, "{node}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chats_get_their_codes() {
    let app = spawn_app_with(&[]).await;
    for (body, code) in [
        (json!({"messages": []}), "invalid_messages"),
        (
            json!({"messages": [{"role": "assistant", "content": "hi"}]}),
            "invalid_messages",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "context": {"source": "nowhere", "k": 2}}),
            "invalid_context",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "context": {"source": "workers", "k": 0}}),
            "invalid_k",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "context": {"source": "workers", "k": 2, "query": " "}}),
            "empty_query",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "context": {"source": "workers", "k": 2}}),
            "no_workers",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "context": {"source": "index:nope", "k": 2}}),
            "index_not_found",
        ),
    ] {
        let response = app.post_json("/v1/chat", &body).await;
        let status = response.status();
        let got: Value = response.json().await.unwrap();
        assert_eq!(got["error"]["code"], code, "{body} -> {status} {got}");
    }
}
