//! The recovery edges through HTTP and against the real process: loading
//! and failed indexes, a commit that panics, a crash-looping component
//! that takes its subsystem down (and only that), and kill -9 under
//! concurrent writers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, eventually, spawn_app_with, TestApp};

const PATIENCE: Duration = Duration::from_secs(60);

async fn create_index(app: &TestApp, name: &str, dimension: usize) {
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": name, "dimension": dimension}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn add(app: &TestApp, name: &str, id: &str, vector: Vec<f32>) -> reqwest::Response {
    app.post_json(
        &format!("/v1/vectors/index/{name}/add"),
        &json!({"items": [{"id": id, "vector": vector}]}),
    )
    .await
}

fn axis(dimension: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.1; dimension];
    v[i % dimension] = 1.0;
    v
}

async fn status_of(app: &TestApp, node: &str) -> String {
    app.node(node)
        .await
        .and_then(|n| n["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loading_index_answers_503_index_loading_with_retry_after() {
    let app = spawn_app_with(&[]).await;
    create_index(&app, "slow", 4).await;
    assert_eq!(
        add(&app, "slow", "a", axis(4, 0)).await.status(),
        StatusCode::OK
    );

    // The index restarts, and its load takes 3 s longer (a slow disk).
    let injected = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "index:slow", "fault": "slow_load", "delay_ms": 3000}),
        )
        .await;
    assert_eq!(injected.status(), StatusCode::ACCEPTED);
    eventually("the index is loading", PATIENCE, || async {
        matches!(
            status_of(&app, "index:slow").await.as_str(),
            "starting" | "restarting"
        )
    })
    .await;

    let info = app.get("/v1/vectors/index/slow").await;
    assert_eq!(info.headers()["retry-after"], "1");
    assert_error(info, StatusCode::SERVICE_UNAVAILABLE, "index_loading").await;
    let search = app
        .post_json(
            "/v1/vectors/index/slow/search",
            &json!({"vector": axis(4, 0), "k": 1}),
        )
        .await;
    assert_error(search, StatusCode::SERVICE_UNAVAILABLE, "index_loading").await;

    eventually("the index is loaded", PATIENCE, || async {
        app.get("/v1/vectors/index/slow").await.status() == StatusCode::OK
    })
    .await;
    let hits: Value = app
        .post_json(
            "/v1/vectors/index/slow/search",
            &json!({"vector": axis(4, 0), "k": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["hits"][0]["id"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_of_a_commit_that_panics_get_503_and_later_writes_succeed() {
    let app = spawn_app_with(&[]).await;
    create_index(&app, "cp", 4).await;
    assert_eq!(
        add(&app, "cp", "before", axis(4, 0)).await.status(),
        StatusCode::OK
    );

    let injected = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "index:cp", "fault": "commit_panic"}),
        )
        .await;
    assert_eq!(injected.status(), StatusCode::ACCEPTED);
    let response = add(&app, "cp", "in-the-panic", axis(4, 1)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");

    eventually("a later write succeeds", PATIENCE, || async {
        add(&app, "cp", "after", axis(4, 2)).await.status() == StatusCode::OK
    })
    .await;
    let node = app.node("index:cp").await.unwrap();
    assert_eq!(node["restarts"], 1);
    assert!(node["last_failure"]["reason"]
        .as_str()
        .unwrap()
        .contains("commit task"));
    for id in ["before", "after"] {
        let item = app.get(&format!("/v1/vectors/index/cp/items/{id}")).await;
        assert_eq!(item.status(), StatusCode::OK, "{id}");
    }
    // The commit panicked after its Lance append: never acknowledged, yet
    // durable, so the reload from Lance has it.
    let item = app.get("/v1/vectors/index/cp/items/in-the-panic").await;
    assert_eq!(item.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_index_ends_failed_while_another_keeps_answering_until_an_admin_restart() {
    let app = spawn_app_with(&[
        ("supervision.index_max_restarts", "3"),
        ("supervision.index_period_secs", "60"),
    ])
    .await;
    create_index(&app, "broken", 4).await;
    create_index(&app, "healthy", 4).await;
    for i in 0..3 {
        let id = format!("b{i}");
        assert_eq!(
            add(&app, "broken", &id, axis(4, i)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            add(&app, "healthy", &id, axis(4, i)).await.status(),
            StatusCode::OK
        );
    }

    // Its data goes missing under it: every load fails from now on.
    let data = app.data_dir.join("vectors/broken.lance/data");
    let moved = app.data_dir.join("moved-away");
    std::fs::rename(&data, &moved).unwrap();
    let injected = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "index:broken", "fault": "panic"}),
        )
        .await;
    assert_eq!(injected.status(), StatusCode::ACCEPTED);

    // The other index answers all along.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let searcher = {
        let (client, url, stop, answered) = (
            app.client.clone(),
            app.url("/v1/vectors/index/healthy/search"),
            stop.clone(),
            answered.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let response = client
                    .post(&url)
                    .json(&json!({"vector": axis(4, 0), "k": 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "the healthy index answers"
                );
                answered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    eventually("the broken index is left failed", PATIENCE, || async {
        status_of(&app, "index:broken").await == "failed"
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    searcher.await.unwrap();
    assert!(answered.load(Ordering::SeqCst) > 0);

    let body = assert_error(
        app.get("/v1/vectors/index/broken").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "index_failed",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("gave up"), "{message}");
    assert_eq!(app.node("index:healthy").await.unwrap()["restarts"], 0);
    assert_eq!(
        app.node("vectors").await.unwrap()["restarts"],
        0,
        "no escalation"
    );
    // One failed index does not take the node out of rotation.
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["failed_indexes"], json!(["index:broken"]));

    // Fixed, then restarted by an operator: back with its data.
    std::fs::rename(&moved, &data).unwrap();
    let restarted = app
        .post_json("/v1/admin/indexes/broken/restart", &json!({}))
        .await;
    assert_eq!(restarted.status(), StatusCode::ACCEPTED);
    eventually("the index is back", PATIENCE, || async {
        app.get("/v1/vectors/index/broken").await.status() == StatusCode::OK
    })
    .await;
    let info: Value = app
        .get("/v1/vectors/index/broken")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["count"], 3);
    assert_error(
        app.post_json("/v1/admin/indexes/nope/restart", &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_storm_in_embed_restarts_retrieval_while_sql_keeps_answering() {
    // Two restarts within the period are allowed; the third is one too
    // many for the retrieval subsystem, which root restarts as a whole.
    let app = spawn_app_with(&[("supervision.max_restarts", "2")]).await;
    let csv = "id,name\n1,ada\n2,grace\n";
    let ingested = app.post_raw("/v1/ingest/people", "text/csv", csv).await;
    assert_eq!(ingested.status(), StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let sql = {
        let (client, url, stop, queries) = (
            app.client.clone(),
            app.url("/v1/sql"),
            stop.clone(),
            queries.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let response = client
                    .post(&url)
                    .json(&json!({"sql": "SELECT count(*) AS n FROM people"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "SQL answers throughout");
                queries.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    for n in 1..=3u64 {
        eventually("embed running", PATIENCE, || async {
            status_of(&app, "embed").await == "running"
        })
        .await;
        let restarts_before = app.node("retrieval").await.unwrap()["restarts"]
            .as_u64()
            .unwrap();
        assert_eq!(
            app.inject_fault("embed", "panic").await.status(),
            StatusCode::ACCEPTED
        );
        if n < 3 {
            eventually("embed restarted", PATIENCE, || async {
                app.node("embed")
                    .await
                    .is_some_and(|node| node["restarts"] == n && node["status"] == "running")
            })
            .await;
            assert_eq!(restarts_before, 0);
        }
    }
    eventually(
        "root restarted the retrieval subsystem",
        PATIENCE,
        || async {
            app.node("retrieval")
                .await
                .is_some_and(|node| node["restarts"] == 1 && node["status"] == "running")
        },
    )
    .await;
    let retrieval = app.node("retrieval").await.unwrap();
    assert!(retrieval["last_failure"]["reason"]
        .as_str()
        .unwrap()
        .contains("gave up"));
    assert_eq!(app.node("data").await.unwrap()["restarts"], 0);
    assert_eq!(app.node("query").await.unwrap()["restarts"], 0);

    eventually("embed answers again", PATIENCE, || async {
        app.embed(&["after the storm"]).await.status() == StatusCode::OK
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    sql.await.unwrap();
    assert!(queries.load(Ordering::SeqCst) > 0);
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_writers_loses_no_acknowledged_write() {
    let scratch = tempfile::tempdir().unwrap();
    let mut options = lakehouse_loadtest::crasher::CrasherOptions::new(
        env!("CARGO_BIN_EXE_lakehouse").into(),
        scratch.path().join("data"),
    );
    options.kills = 3;
    options.writers = 8;
    options.items = 2_000;
    options.dimension = 16;
    options.workers = 200;
    options.min_acks_per_round = 100;
    options.max_round = Duration::from_millis(1500);
    options.duration = Duration::from_secs(600);
    options.server_log = Some(scratch.path().join("server.log"));
    let report = lakehouse_loadtest::crasher::run(options).await.unwrap();
    eprintln!(
        "crasher: {}; {} in flight at the kills; restarts {:?} ms",
        report.summary(),
        report.in_flight_at_kill,
        report.restart_ms
    );

    assert_eq!(report.kills, 3);
    assert!(
        report.violations.is_empty(),
        "{}: {:?}",
        report.summary(),
        report.violations
    );
    // Not vacuous: writes were acknowledged before every kill, recordings
    // among them, and every id was checked after every restart.
    assert!(report.acknowledged_writes >= 300, "{}", report.summary());
    assert!(report.recordings_acknowledged > 0, "{}", report.summary());
    assert!(report.states_checked >= 3 * 2_000, "{}", report.summary());
}
