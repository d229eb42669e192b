//! The data plane through HTTP: storage, catalog, ingest and SQL.

use std::io::{Read, Write};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_on, spawn_app_with, TestApp};

fn people_csv(rows: usize, offset: usize) -> String {
    let mut csv = String::from("id,name,city,rate\n");
    for i in offset..offset + rows {
        csv.push_str(&format!(
            "{i},Person {i},{},{}.5\n",
            ["Chicago", "Dallas", "Denver"][i % 3],
            15 + i % 10
        ));
    }
    csv
}

async fn ingest(app: &TestApp, dataset: &str, csv: impl Into<reqwest::Body>) -> reqwest::Response {
    app.post_raw(&format!("/v1/ingest/{dataset}"), "text/csv", csv)
        .await
}

async fn sql(app: &TestApp, query: &str) -> reqwest::Response {
    app.post_json("/v1/sql", &json!({ "sql": query })).await
}

async fn scalar(app: &TestApp, query: &str) -> Value {
    let response = sql(app, query).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["rows"][0][0].clone()
}

/// A request with a raw, unnormalised path (clients would resolve `..`).
fn raw_status(app: &TestApp, method: &str, path: &str) -> u16 {
    let address = app.address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_megabyte_object_round_trips() {
    let app = spawn_app().await;
    let data: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let put = app
        .client
        .put(app.url("/v1/storage/objects/reports/2026/big.bin"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let info: Value = put.json().await.unwrap();
    assert_eq!(info["size"], data.len());

    let got = app.get("/v1/storage/objects/reports/2026/big.bin").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());

    let list: Value = app
        .get("/v1/storage/objects?prefix=reports")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["objects"][0]["key"], "reports/2026/big.bin");
    assert_eq!(list["objects"][0]["size"], data.len());
    assert!(list["objects"][0]["modified"].is_string());

    let deleted = app
        .client
        .delete(app.url("/v1/storage/objects/reports/2026/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let missing = assert_error(
        app.get("/v1/storage/objects/reports/2026/big.bin").await,
        StatusCode::NOT_FOUND,
        "object_not_found",
    )
    .await;
    // Named by its key, never by where the data directory is.
    assert_eq!(
        missing["error"]["message"],
        "no object 'reports/2026/big.bin'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_over_the_cap_is_413_and_nothing_is_stored() {
    let app = spawn_app_with(&[("storage.max_object_bytes", "1048576")]).await;
    let response = app
        .client
        .put(app.url("/v1/storage/objects/too-big.bin"))
        .body(vec![7u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let list: Value = app.get("/v1/storage/objects").await.json().await.unwrap();
    assert_eq!(list["objects"], json!([]));
    assert_error(
        app.get("/v1/storage/objects/too-big.bin").await,
        StatusCode::NOT_FOUND,
        "object_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_never_reach_outside_the_store() {
    let app = spawn_app().await;
    for path in [
        "/v1/storage/objects/../escape.txt",
        "/v1/storage/objects/%2e%2e/escape.txt",
        "/v1/storage/objects/%2E%2E%2Fescape.txt",
        "/v1/storage/objects/a/../../escape.txt",
        "/v1/storage/objects/a/%2e%2e/%2e%2e/escape.txt",
        "/v1/storage/objects//etc/passwd",
        "/v1/storage/objects/%2Fetc%2Fpasswd",
        "/v1/storage/objects/bad%00key",
    ] {
        let status = raw_status(&app, "PUT", path);
        assert!(status == 400 || status == 404, "{path}: {status}");
        let status = raw_status(&app, "GET", path);
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    assert!(!app.data_dir.join("escape.txt").exists());
    assert!(!app.data_dir.parent().unwrap().join("escape.txt").exists());
    let list: Value = app.get("/v1/storage/objects").await.json().await.unwrap();
    assert_eq!(list["objects"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_then_sql_counts_match_and_reingest_is_idempotent() {
    let app = spawn_app().await;
    let csv = people_csv(250, 0);
    let response = ingest(&app, "people", csv.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let manifest: Value = response.json().await.unwrap();
    assert_eq!(manifest["status"], "created");
    assert_eq!(manifest["row_count"], 250);
    assert_eq!(
        manifest["schema"][0],
        json!({"name": "id", "type": "Int64", "nullable": true})
    );
    assert_eq!(manifest["ingests"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(scalar(&app, "SELECT count(*) FROM people").await, 250);

    let again = ingest(&app, "people", csv).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "unchanged");
    assert_eq!(again["version"], manifest["version"]);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM people").await,
        250,
        "no duplicate rows"
    );

    let more = ingest(&app, "people", people_csv(50, 250)).await;
    let more: Value = more.json().await.unwrap();
    assert_eq!(more["status"], "appended");
    assert_eq!(more["rows"], 50);
    assert_eq!(scalar(&app, "SELECT count(*) FROM people").await, 300);

    let body: Value = sql(
        &app,
        "SELECT city, count(*) AS n FROM people GROUP BY city ORDER BY city",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["columns"][0]["name"], "city");
    assert_eq!(
        body["rows"],
        json!([["Chicago", 100], ["Dallas", 100], ["Denver", 100]])
    );
    assert_eq!(body["row_count"], 3);
    assert_eq!(body["truncated"], false);

    let limited: Value = app
        .post_json(
            "/v1/sql",
            &json!({"sql": "SELECT id FROM people", "limit": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limited["row_count"], 10);
    assert_eq!(limited["truncated"], true);

    let list: Value = app.get("/v1/catalog/datasets").await.json().await.unwrap();
    assert_eq!(list["datasets"][0]["name"], "people");
    assert_eq!(list["datasets"][0]["ingests"].as_array().unwrap().len(), 2);
    assert_error(
        app.get("/v1/catalog/datasets/nope").await,
        StatusCode::NOT_FOUND,
        "dataset_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_csv_is_refused_with_409_and_writes_nothing() {
    let app = spawn_app().await;
    ingest(&app, "people", people_csv(10, 0)).await;
    let before: Value = app
        .get("/v1/catalog/datasets/people")
        .await
        .json()
        .await
        .unwrap();

    let drifted = "id,name,zip\nabc,Ann,60601\n";
    let body = assert_error(
        ingest(&app, "people", drifted).await,
        StatusCode::CONFLICT,
        "schema_drift",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("added: [zip]"), "{message}");
    assert!(message.contains("missing: [city, rate]"), "{message}");
    assert!(message.contains("id: Int64 -> Utf8"), "{message}");

    let after: Value = app
        .get("/v1/catalog/datasets/people")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["version"], before["version"]);
    assert_eq!(scalar(&app, "SELECT count(*) FROM people").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_csv_is_400_naming_the_line() {
    let app = spawn_app().await;
    let body = assert_error(
        ingest(&app, "broken", "a,b\n1,2\n3,4\n5\n").await,
        StatusCode::BAD_REQUEST,
        "malformed_csv",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains("line"), "{message}");
    assert_error(
        ingest(&app, "empty", "").await,
        StatusCode::BAD_REQUEST,
        "malformed_csv",
    )
    .await;
    assert_error(
        ingest(&app, "Bad-Name", "a\n1\n").await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_reads_are_allowed_and_joins_work_across_datasets() {
    let app = spawn_app().await;
    ingest(&app, "people", people_csv(30, 0)).await;
    ingest(
        &app,
        "cities",
        "city,state\nChicago,IL\nDallas,TX\nDenver,CO\n",
    )
    .await;

    for statement in [
        "DROP TABLE people",
        "DELETE FROM people",
        "INSERT INTO people VALUES (1, 'x', 'y', 1.0)",
        "CREATE TABLE t AS SELECT 1",
        "COPY people TO '/tmp/out.csv'",
        "SELECT 1; DROP TABLE people",
    ] {
        assert_error(
            sql(&app, statement).await,
            StatusCode::BAD_REQUEST,
            "read_only",
        )
        .await;
    }
    assert_error(
        sql(&app, "SELECT nope FROM people").await,
        StatusCode::BAD_REQUEST,
        "sql_error",
    )
    .await;

    let body: Value = sql(
        &app,
        "SELECT c.state, count(*) AS n FROM people p JOIN cities c ON p.city = c.city GROUP BY c.state ORDER BY c.state",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["rows"], json!([["CO", 10], ["IL", 10], ["TX", 10]]));
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM people").await,
        30,
        "DROP TABLE changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_survives_a_process_restart() {
    let app = spawn_app().await;
    ingest(&app, "people", people_csv(40, 0)).await;
    let answer = scalar(&app, "SELECT sum(rate) FROM people").await;
    let (dir, guard) = app.shutdown().await;

    let app = spawn_app_on(dir, &[]).await;
    let manifest: Value = app
        .get("/v1/catalog/datasets/people")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["row_count"], 40);
    assert_eq!(
        scalar(&app, "SELECT sum(rate) FROM people").await,
        answer,
        "same answer after a restart"
    );
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_ingest_mid_request_leaves_the_dataset_at_its_previous_version() {
    let app = spawn_app().await;
    ingest(&app, "people", people_csv(20, 0)).await;
    let before: Value = app
        .get("/v1/catalog/datasets/people")
        .await
        .json()
        .await
        .unwrap();

    // A slow upload: the ingest is still running when the panic arrives.
    let csv = people_csv(20_000, 20);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = csv
        .as_bytes()
        .chunks(6 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let slow = futures::stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        chunk
    });
    let upload = {
        let client = app.client.clone();
        let url = app.url("/v1/ingest/people");
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "text/csv")
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
        })
    };
    // Wait until the ingest is under way: its spool file exists.
    let spool_dir = app.data_dir.join("tmp");
    crate::helpers::eventually(
        "the ingest is spooling",
        Duration::from_secs(10),
        || async {
            std::fs::read_dir(&spool_dir).is_ok_and(|mut entries| entries.next().is_some())
        },
    )
    .await;
    assert_eq!(
        app.inject_fault("ingest", "panic").await.status(),
        StatusCode::ACCEPTED
    );
    let outcome = upload.await.unwrap();
    if let Ok(response) = outcome {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            !status.is_success(),
            "the interrupted ingest is not acknowledged: {status} {body}"
        );
    }

    crate::helpers::eventually("ingest restarted", Duration::from_secs(5), || async {
        app.node("ingest")
            .await
            .is_some_and(|n| n["restarts"] == 1 && n["status"] == "running")
    })
    .await;
    let after: Value = app
        .get("/v1/catalog/datasets/people")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["version"], before["version"]);
    assert_eq!(scalar(&app, "SELECT count(*) FROM people").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_also_makes_the_workers_dataset_queryable() {
    let app = spawn_app().await;
    let options = lakehouse::seed::SeedOptions {
        target: app.address.clone(),
        workers: 300,
        seed: 11,
        batch: 150,
        concurrency: 2,
        token: None,
    };
    lakehouse::seed::run(options.clone()).await.unwrap();
    let body: Value = sql(
        &app,
        "SELECT role, count(*) AS n FROM workers GROUP BY role",
    )
    .await
    .json()
    .await
    .unwrap();
    let rows = body["rows"].as_array().unwrap();
    assert!(rows.len() > 20, "{} roles", rows.len());
    let total: i64 = rows.iter().map(|r| r[1].as_i64().unwrap()).sum();
    assert_eq!(total, 300);

    // The typed fields stay typed: lists and numbers, queryable as such.
    let cdl = scalar(
        &app,
        "SELECT count(*) FROM workers WHERE array_has(skills, 'CDL-A') AND hourly_rate <= 25",
    )
    .await;
    let by_hand = (0..300)
        .map(|i| lakehouse::domain::workers::worker(11, i))
        .filter(|w| w.skills.iter().any(|s| s == "CDL-A") && w.hourly_rate <= 25.0)
        .count();
    assert_eq!(cdl, by_hand as i64);
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM workers WHERE available_from <= '2026-12-03T08:00:00Z'"
        )
        .await,
        (0..300)
            .filter(|i| lakehouse::domain::workers::worker(11, *i)
                .available_from
                .as_str()
                <= "2026-12-03T08:00:00Z")
            .count() as i64
    );

    // Seeding again with the same seed and size changes nothing; a larger
    // seed replaces the dataset rather than appending to it.
    lakehouse::seed::run(options.clone()).await.unwrap();
    assert_eq!(scalar(&app, "SELECT count(*) FROM workers").await, 300);
    lakehouse::seed::run(lakehouse::seed::SeedOptions {
        workers: 400,
        ..options
    })
    .await
    .unwrap();
    assert_eq!(scalar(&app, "SELECT count(*) FROM workers").await, 400);
}

async fn ingest_lines(app: &TestApp, path: &str, lines: &str) -> reqwest::Response {
    app.post_raw(path, "application/x-ndjson", lines.to_string())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_lists_and_a_replace_moves_a_dataset_to_a_new_schema() {
    let app = spawn_app().await;
    // The old layout: lists flattened into text by a CSV.
    ingest(&app, "crew", "id,certs\n1,CDL-A; OSHA 10\n2,OSHA 30\n").await;
    let lines = concat!(
        r#"{"id": 1, "certs": ["CDL-A", "OSHA 10"], "rate": 22.5}"#,
        "\n",
        r#"{"id": 2, "certs": ["OSHA 30"], "rate": 31.0}"#,
        "\n",
        r#"{"id": 3, "certs": [], "rate": 18.0}"#,
        "\n",
    );
    // Appending a different schema is refused, and says how to move on.
    let body = assert_error(
        ingest_lines(&app, "/v1/ingest/crew", lines).await,
        StatusCode::CONFLICT,
        "schema_drift",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("mode=replace"), "{message}");
    assert_eq!(scalar(&app, "SELECT count(*) FROM crew").await, 2);

    let response = ingest_lines(&app, "/v1/ingest/crew?mode=replace", lines).await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["status"], "replaced");
    assert_eq!(outcome["rows"], 3);
    assert!(outcome["schema"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "certs" && c["type"].as_str().unwrap().starts_with("List")));
    assert_eq!(scalar(&app, "SELECT count(*) FROM crew").await, 3);
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM crew WHERE array_has(certs, 'CDL-A')"
        )
        .await,
        1
    );
    // The same file again changes nothing; appending in the new schema works.
    let again: Value = ingest_lines(&app, "/v1/ingest/crew?mode=replace", lines)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "unchanged");
    let more = r#"{"id": 4, "certs": ["HazMat Endorsement"], "rate": 27.0}"#;
    let appended: Value = ingest_lines(&app, "/v1/ingest/crew", more)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (appended["status"].as_str(), appended["rows"].as_i64()),
        (Some("appended"), Some(1))
    );
    // Replacing with the file appended last is a real replace, and after
    // it the earlier file may be appended again.
    let replaced: Value = ingest_lines(&app, "/v1/ingest/crew?mode=replace", more)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["status"], "replaced");
    assert_eq!(scalar(&app, "SELECT count(*) FROM crew").await, 1);
    let again: Value = ingest_lines(&app, "/v1/ingest/crew", lines)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["status"].as_str(), again["rows"].as_i64()),
        (Some("appended"), Some(3))
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM crew").await, 4);

    // Broken lines are refused with their own code, naming where.
    let body = assert_error(
        ingest_lines(&app, "/v1/ingest/broken", "{\"a\": 1}\n{\"a\": \n").await,
        StatusCode::BAD_REQUEST,
        "malformed_json_lines",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("JSON lines"));
    assert_error(
        app.post_json("/v1/ingest/crew?mode=sideways", &json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

/// A key's segment is bounded in characters and in bytes, below what the
/// local store needs for a file and its upload's `name#<counter>` beside it:
/// the longest one is stored, and one byte more is a 400, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_key_segment_is_stored_and_a_longer_one_refused() {
    let app = spawn_app().await;
    let put = |key: String| {
        let app = &app;
        async move {
            app.client
                .put(app.url(&format!("/v1/storage/objects/{key}")))
                .body("x")
                .send()
                .await
                .unwrap()
        }
    };
    let longest = "s".repeat(lakehouse::actors::storage::MAX_SEGMENT_CHARS);
    assert_eq!(
        put(format!("a/{longest}")).await.status(),
        StatusCode::CREATED
    );
    assert_error(
        put(format!("a/{longest}s")).await,
        StatusCode::BAD_REQUEST,
        "invalid_key",
    )
    .await;
    // 100 two-byte letters: within the characters, over the bytes.
    let wide = "%C3%A9".repeat(lakehouse::actors::storage::MAX_SEGMENT_CHARS / 2 + 1);
    assert_error(
        put(format!("a/{wide}")).await,
        StatusCode::BAD_REQUEST,
        "invalid_key",
    )
    .await;
}
