//! Snapshots and restores, through HTTP and the real binary: a snapshot
//! taken while the service runs, the data dir destroyed, `lakehouse
//! restore` into a new one, and every dataset and index answering as
//! before at the same Lance versions.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, seed_workers, spawn_app_on, TestApp};

async fn ok(response: reqwest::Response, status: StatusCode) -> Value {
    let got = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

/// What the service answers to a few reads of every kind: the answers a
/// restore must give back.
async fn answers(app: &TestApp) -> Value {
    let matrix = ok(
        app.post_json(
            "/v1/matrix/search",
            &json!({"query": "forklift operator", "k": 5, "role": "Forklift Operator", "use_playbook": true}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let vectors = ok(
        app.post_json(
            "/v1/vectors/index/crew/search",
            &json!({"vector": [1, 0, 0, 0], "k": 3}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let sql = ok(
        app.post_json(
            "/v1/sql",
            &json!({"sql": "SELECT (SELECT count(*) FROM workers) AS workers, (SELECT count(*) FROM shifts) AS shifts"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mut versions = serde_json::Map::new();
    for index in ["workers", "playbook_memory", "crew"] {
        let info = ok(
            app.get(&format!("/v1/vectors/index/{index}")).await,
            StatusCode::OK,
        )
        .await;
        versions.insert(index.into(), json!([info["lance_version"], info["count"]]));
    }
    let datasets = ok(app.get("/v1/catalog/datasets/shifts").await, StatusCode::OK).await;
    json!({"matrix": matrix["hits"], "vectors": vectors["hits"], "sql": sql["rows"],
           "versions": versions, "shifts": [datasets["version"], datasets["row_count"]]})
}

fn restore(target: &Path, id: &str, data_dir: &Path, force: bool) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakehouse"));
    command
        .args(["restore", "--from"])
        .arg(target)
        .args(["--snapshot", id, "--data-dir"])
        .arg(data_dir);
    if force {
        command.arg("--force");
    }
    command.output().expect("run lakehouse restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_every_dataset_and_index_at_its_version() {
    let root = tempfile::tempdir().unwrap();
    let (data, target) = (root.path().join("data"), root.path().join("snapshots"));
    let overrides = [
        ("snapshots.dir", target.to_str().unwrap()),
        ("snapshots.keep", "2"),
    ];
    let app = spawn_app_on(data.clone(), &overrides).await;
    seed_workers(&app, 120, None).await;
    app.post_json(
        "/v1/vectors/index",
        &json!({"name": "crew", "dimension": 4}),
    )
    .await;
    app.add_items(
        "crew",
        &[
            json!({"id": "a", "vector": [1, 0, 0, 0], "text": "forklift"}),
            json!({"id": "b", "vector": [0, 1, 0, 0], "metadata": {"n": 2}}),
        ],
    )
    .await;
    let csv = app
        .post_raw(
            "/v1/ingest/shifts",
            "text/csv",
            "id,site\n1,Gary\n2,Joliet\n",
        )
        .await;
    assert_eq!(csv.status(), StatusCode::OK);
    let found = ok(
        app.post_json(
            "/v1/matrix/search",
            &json!({"query": "forklift operator", "k": 5, "role": "Forklift Operator"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let placed = found["hits"][3]["worker_id"].clone();
    ok(
        app.post_json(
            "/v1/matrix/playbooks/record",
            &json!({"query": "forklift operator", "role": "Forklift Operator", "worker_ids": [placed], "score": 1.0}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    let first = ok(
        app.send(reqwest::Method::POST, "/v1/admin/snapshots", None, None)
            .await,
        StatusCode::CREATED,
    )
    .await;
    let before = answers(&app).await;
    let id = first["id"].as_str().unwrap().to_string();
    assert!(first["copied_files"].as_u64().unwrap() > 0);
    assert_eq!(
        first["copied_bytes"], first["bytes"],
        "a first snapshot copies everything"
    );
    let versions: Vec<(String, u64)> = first["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["version"].as_u64().unwrap(),
            )
        })
        .collect();
    for path in [
        "datasets/shifts.lance",
        "datasets/workers.lance",
        "vectors/crew.lance",
        "vectors/playbook_memory.lance",
        "vectors/workers.lance",
    ] {
        assert!(
            versions.iter().any(|(p, _)| p == path),
            "{path} in {versions:?}"
        );
    }
    let crew = versions
        .iter()
        .find(|(p, _)| p == "vectors/crew.lance")
        .unwrap()
        .1;
    assert_eq!(
        before["versions"]["crew"][0], crew,
        "the snapshot holds the version the index answers from"
    );

    // A write after the snapshot: not in it. A second snapshot copies only
    // what changed.
    app.add_items("crew", &[json!({"id": "c", "vector": [0, 0, 1, 0]})])
        .await;
    let second = ok(
        app.send(reqwest::Method::POST, "/v1/admin/snapshots", None, None)
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert!(
        second["copied_bytes"].as_u64().unwrap() < second["bytes"].as_u64().unwrap() / 2,
        "only the new files: {second}"
    );
    let listed = ok(app.get("/v1/admin/snapshots").await, StatusCode::OK).await;
    let ids: Vec<&str> = listed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [second["id"].as_str().unwrap(), id.as_str()],
        "newest first"
    );

    // The data dir is destroyed; the first snapshot comes back.
    let (_, guard) = app.shutdown().await;
    drop(guard);
    std::fs::remove_dir_all(&data).unwrap();
    let restored = restore(&target, &id, &data, false);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let again = restore(&target, &id, &data, false);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let app = spawn_app_on(data.clone(), &overrides).await;
    let after = answers(&app).await;
    assert_eq!(after, before, "every dataset and index answers as before");
    assert_error(
        app.get("/v1/vectors/index/crew/items/c").await,
        StatusCode::NOT_FOUND,
        "item_not_found",
    )
    .await;
    let (_, guard) = app.shutdown().await;
    drop(guard);

    // A corrupt file in the target fails verification with its name, and
    // nothing is written.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(target.join("snapshots").join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    let victim = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .starts_with("vectors/crew.lance/data/")
        })
        .unwrap();
    let object = target
        .join("objects")
        .join(victim["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let elsewhere = root.path().join("elsewhere");
    let broken = restore(&target, &id, &elsewhere, false);
    assert!(!broken.status.success());
    let said = String::from_utf8_lossy(&broken.stderr);
    assert!(
        said.contains(victim["path"].as_str().unwrap()) && said.contains("corrupt"),
        "{said}"
    );
    assert!(!elsewhere.exists() || std::fs::read_dir(&elsewhere).unwrap().next().is_none());
    let unknown = restore(&target, "../etc", &elsewhere, false);
    assert!(!unknown.status.success());
}
