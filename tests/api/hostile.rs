//! What the worst client sends: paths spelled to slip past the token
//! check, SQL that would abort or exhaust the process, bodies and lists
//! past every bound, client mistakes that used to panic or answer 500,
//! and requests fishing for the host's paths. Each gets its 4xx with its
//! own code, and the service keeps serving.

use std::time::Duration;

use lakehouse::domain::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::front_door::{concrete, operations};
use crate::helpers::{
    assert_error, eventually, metric_value, spawn_app_with, spawn_app_with_tokens, Process,
};

/// `template` made concrete, with its last literal letter percent-encoded
/// (`/v1/sql` → `/v1/sq%6C`): the router decodes it, so it is the same
/// route.
fn encoded(template: &str) -> String {
    let path = concrete(template);
    let mut in_parameter = false;
    let mut at = None;
    for (i, c) in template.char_indices() {
        match c {
            '{' => in_parameter = true,
            '}' => in_parameter = false,
            c if c.is_ascii_alphabetic() && !in_parameter => at = Some((i, c)),
            _ => {}
        }
    }
    let (i, c) = at.expect("a template with a literal letter");
    // The literal part before the letter is the same in the concrete path.
    let prefix = &template[..i];
    let concrete_prefix = concrete(prefix);
    let rest = &path[concrete_prefix.len() + 1..];
    format!("{concrete_prefix}%{:02X}{rest}", c as u8)
}

/// Spellings of a path that must never reach a handler unauthenticated.
fn variants(template: &str) -> Vec<(&'static str, String)> {
    let path = concrete(template);
    let (head, last) = path.rsplit_once('/').unwrap();
    vec![
        ("double slash", format!("/{path}")),
        ("trailing slash", format!("{path}/")),
        ("dot-dot", format!("{head}/x/%2e%2e/{last}")),
        ("upper case", path.to_ascii_uppercase()),
        ("encoded slash", format!("{head}%2F{last}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_any_route_skips_the_token_check() {
    let (app, tokens) = spawn_app_with_tokens(&[]).await;
    let operations = operations(&app).await;
    assert!(operations.len() >= 30, "{} operations", operations.len());
    let body = json!({"sql": "SELECT 1", "name": "probe", "dimension": 3});
    let mut checked = 0;
    for (method, template, needed, _) in &operations {
        let Some(needed) = needed else { continue };
        // The same route with one letter encoded: refused like the plain one.
        let path = encoded(template);
        let what = format!("{method} {path}");
        let response = app.send(method.clone(), &path, None, Some(&body)).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        if *needed > Role::Read {
            let response = app
                .send(method.clone(), &path, Some(&tokens.read), Some(&body))
                .await;
            let status = response.status();
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a read token");
        }
        // Other spellings: another route or none, never a handler without
        // its token.
        for (kind, path) in variants(template) {
            for token in [None, Some(tokens.read.as_str())] {
                let response = app.send(method.clone(), &path, token, Some(&body)).await;
                let status = response.status();
                let refused = [
                    StatusCode::UNAUTHORIZED,
                    StatusCode::FORBIDDEN,
                    StatusCode::NOT_FOUND,
                    StatusCode::METHOD_NOT_ALLOWED,
                ];
                let allowed_by_read = token.is_some() && *needed == Role::Read;
                assert!(
                    refused.contains(&status) || (allowed_by_read && !status.is_server_error()),
                    "{method} {path} ({kind}) with {token:?}: {status}"
                );
                if token.is_none() {
                    assert!(!status.is_success(), "{method} {path} ({kind}): {status}");
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked} routes with a role");

    // MCP too: its own scope, the same door.
    let response = app
        .client
        .post(app.url("/mc%70"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // A path no route matches is answered by the front door itself.
    let response = app
        .send(Method::GET, "/v1/%77hoami/extra", None, None)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    // The router never routed a request elsewhere than the door admitted.
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "lakehouse_front_door_mismatches_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_is_421_and_a_proxied_open_service_is_403() {
    let app = spawn_app_with(&[]).await;
    let wrong_host = app
        .client
        .get(app.url("/v1/whoami"))
        .header("host", "attacker.example:3100")
        .send()
        .await
        .unwrap();
    assert_error(
        wrong_host,
        StatusCode::MISDIRECTED_REQUEST,
        "host_not_allowed",
    )
    .await;
    let health = app
        .client
        .get(app.url("/health"))
        .header("host", "rebound.attacker.example")
        .send()
        .await
        .unwrap();
    assert_error(health, StatusCode::MISDIRECTED_REQUEST, "host_not_allowed").await;
    let localhost = app
        .client
        .get(app.url("/v1/whoami"))
        .header("host", "localhost:3100")
        .send()
        .await
        .unwrap();
    assert_eq!(localhost.status(), StatusCode::OK);

    // Open mode trusts loopback; a proxy in front makes anyone loopback.
    let proxied = app
        .client
        .get(app.url("/v1/whoami"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_error(proxied, StatusCode::FORBIDDEN, "open_behind_proxy").await;

    let named = spawn_app_with(&[
        ("server.allowed_hosts", "[\"lakehouse.test\"]"),
        ("auth.allow_open", "true"),
    ])
    .await;
    for host in ["lakehouse.test", "LAKEHOUSE.test:8080", "127.0.0.1"] {
        let response = named
            .client
            .get(named.url("/v1/whoami"))
            .header("host", host)
            .header("forwarded", "for=203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_from_a_plain_form_is_415() {
    let app = spawn_app_with(&[]).await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let response = app
            .post_raw("/v1/ingest/people", content_type, "a,b\n1,2\n")
            .await;
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    let response = app
        .post_raw("/v1/ingest/people", "text/csv", "a,b\n1,2\n")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = app.get("/v1/catalog/datasets").await.json().await.unwrap();
    assert_eq!(listed["datasets"].as_array().unwrap().len(), 1);
}

/// Without tokens, a page of another site cannot change anything: a form
/// POST it makes the browser send says where it comes from. A compressed
/// body is refused on every route (the limits count the bytes that
/// arrive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_cannot_change_an_open_service_nor_a_compressed_body_pass() {
    let app = spawn_app_with(&[]).await;
    let post = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = app
            .client
            .post(app.url("/v1/ingest/people"))
            .header("content-type", "text/csv")
            .body("a,b\n1,2\n");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[
            ("origin", "http://localhost:3100"),
            ("sec-fetch-site", "cross-site"),
        ][..],
    ] {
        let refused = post(headers).await.unwrap();
        assert_error(refused, StatusCode::FORBIDDEN, "cross_site_request").await;
    }
    let listed: Value = app.get("/v1/catalog/datasets").await.json().await.unwrap();
    assert!(
        listed["datasets"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    // The console's own page, and clients that are not browsers.
    for headers in [
        &[
            ("origin", "http://127.0.0.1:3100"),
            ("sec-fetch-site", "same-origin"),
        ][..],
        &[][..],
    ] {
        let stored = post(headers).await.unwrap();
        assert_eq!(stored.status(), StatusCode::OK);
    }
    // A cross-site read is the browser's to refuse (no CORS headers).
    let read = app
        .client
        .get(app.url("/v1/catalog/datasets"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    for encoding in ["gzip", "zstd", "br, gzip"] {
        let compressed = app
            .client
            .post(app.url("/v1/vectors/index/none/search"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(vec![0x1f, 0x8b, 0, 0])
            .send()
            .await
            .unwrap();
        assert_error(
            compressed,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
}

/// A chain of `terms` ones: `SELECT 1+1+…+1`.
fn chain(terms: usize) -> Value {
    json!({"sql": format!("SELECT {}", vec!["1"; terms].join("+"))})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_bombs_are_4xx_and_the_process_keeps_serving_in_bounded_memory() {
    let mut server = Process::start(&[]).await;
    let client = reqwest::Client::new();
    let url = server.url("/v1/sql");
    let sql = |body: Value| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    let before = server.rss_bytes();
    for terms in [2_000, 20_000] {
        assert_error(
            sql(chain(terms)).await,
            StatusCode::BAD_REQUEST,
            "sql_too_deep",
        )
        .await;
    }
    assert_error(
        sql(chain(200_000)).await,
        StatusCode::BAD_REQUEST,
        "sql_too_long",
    )
    .await;
    let nested = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let response = sql(json!({ "sql": nested })).await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "{}",
        response.text().await.unwrap()
    );
    for bomb in [
        "SELECT length(repeat('x', 1500000000))",
        "SELECT length(lpad('x', 2000000000))",
        "SELECT length(rpad('x', 2000000000, 'y'))",
        "SELECT cardinality(range(1, 2000000000))",
        "SELECT cardinality(generate_series(1, 2000000000))",
        "SELECT cardinality(array_repeat(1, 2000000000))",
        "SELECT cardinality(array_resize([1], 2000000000))",
        "SELECT cardinality(generate_series(DATE '2000-01-01', DATE '9000-01-01', INTERVAL '1 second'))",
        "SELECT length(repeat(repeat('x', 1000000), 1000))",
        // Within the per-row cap, over the batch: per row, summed...
        "SELECT max(length(repeat(cast(value AS varchar), 100000))) FROM range(100000)",
        // ...and a constant, which each batch repeats row by row.
        "SELECT max(length(repeat('x', 250000))) FROM range(1000000)",
        // Nested lists count their leaves, not their length.
        "SELECT cardinality(array_repeat(array_repeat(array_repeat(1, 1000), 1000), 1000))",
        // A replacement at every position.
        "SELECT length(replace(repeat('x', 1000), 'x', repeat('y', 1000)))",
        "SELECT length(regexp_replace(repeat('x', 1000), '', repeat('y', 1000), 'g'))",
    ] {
        let response = sql(json!({ "sql": bomb })).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "function_output_too_large").await;
    }
    // Inside the bounds the same functions work.
    let fine = sql(json!({"sql": "SELECT length(repeat('ab', 1000)) AS n"})).await;
    let fine: Value = fine.json().await.unwrap();
    assert_eq!(fine["rows"][0][0], 2000);
    let fine = sql(json!({"sql": "SELECT max(length(repeat(cast(value AS varchar), 3))) AS n FROM range(100000)"})).await;
    let fine: Value = fine.json().await.unwrap();
    assert_eq!(fine["rows"][0][0], 15, "{fine}");
    let fine = sql(json!({"sql": "SELECT length(replace('a-b-c', '-', '--')) AS n"})).await;
    let fine: Value = fine.json().await.unwrap();
    assert_eq!(fine["rows"][0][0], 7, "{fine}");
    // A byte budget on the answer: cut off, and it says so.
    assert!(server.alive(), "the process did not abort");
    let after = server.rss_bytes();
    assert!(
        after < before + (256 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let one = sql(json!({"sql": "SELECT 1 + 1 AS two"})).await;
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["rows"][0][0], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_its_byte_budget_is_cut_off_and_says_so() {
    let app = spawn_app_with(&[("query.max_result_bytes", "4096")]).await;
    app.post_raw(
        "/v1/ingest/notes",
        "text/csv",
        (0..100).map(|i| format!("{i},{}\n", "n".repeat(100))).fold(
            "id,note\n".to_string(),
            |mut csv, line| {
                csv.push_str(&line);
                csv
            },
        ),
    )
    .await;
    let answer: Value = app
        .post_json(
            "/v1/sql",
            &json!({"sql": "SELECT id, note FROM notes ORDER BY id"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["truncated"], true, "{answer}");
    assert_eq!(answer["truncated_by"], "max_result_bytes");
    let rows = answer["rows"].as_array().unwrap().len();
    assert!(rows > 0 && rows < 100, "{rows} rows");
    let limited: Value = app
        .post_json(
            "/v1/sql",
            &json!({"sql": "SELECT id FROM notes", "limit": 5}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limited["truncated_by"], "limit");
    let whole: Value = app
        .post_json("/v1/sql", &json!({"sql": "SELECT count(*) FROM notes"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["truncated"], false);
    assert!(whole.get("truncated_by").is_none(), "{whole}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_brackets_is_too_long_and_does_not_hold_up_other_checks() {
    let app = spawn_app_with(&[]).await;
    let hostile = json!({"kind": "sms", "to": "555-123-4567", "body": "[".repeat(1_000_000)});
    let normal = json!({"kind": "sms", "to": "555-123-4567", "body": "Shift at 7am, reply YES"});
    let (hostile, normal) = tokio::join!(
        app.post_json("/v1/validate", &hostile),
        app.post_json("/v1/validate", &normal)
    );
    assert_eq!(normal.status(), StatusCode::OK);
    assert_eq!(hostile.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let verdict: Value = hostile.json().await.unwrap();
    let kinds: Vec<&str> = verdict["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["too_long"], "{verdict}");

    // A fill proposal names at most 1,000 workers.
    let ids: Vec<String> = (0..1001).map(|i| format!("W{i:07}")).collect();
    let order = json!({"role": "Welder", "city": "Joliet", "state": "IL", "count": 1001});
    let response = app
        .post_json(
            "/v1/validate",
            &json!({"kind": "fill", "order": order, "worker_ids": ids}),
        )
        .await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "too_many_ids").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_takes_the_body_its_limit_allows() {
    let app = spawn_app_with(&[]).await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let limit = |path: &str, method: &str| {
        document["paths"][path][method]["x-max-body-bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{method} {path} documents its limit"))
    };
    let search = limit("/v1/vectors/index/{name}/search", "post");
    let add = limit("/v1/vectors/index/{name}/add", "post");
    assert!(
        search < add,
        "a search takes less than a batch: {search} vs {add}"
    );
    app.post_json("/v1/vectors/index", &json!({"name": "big", "dimension": 3}))
        .await;
    // Just over the search limit: refused before the body is read.
    let padding = "x".repeat(search as usize);
    let response = app
        .post_json(
            "/v1/vectors/index/big/search",
            &json!({"vector": [1.0, 0.0, 0.0], "k": 1, "exclude_ids": [padding]}),
        )
        .await;
    let body = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&search.to_string()),
        "{body}"
    );
    // The same bytes are a fine batch.
    let items: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("i{i}"), "vector": [1.0, i as f32, 0.5], "metadata": {"pad": "y".repeat(1500)}}))
        .collect();
    app.add_items("big", &items).await;
    // A chunked body (no Content-Length) is cut off as it streams.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(b"{\"vector\":[1,0,0],\"k\":1,\"exclude_ids\":[\"".to_vec())
            .chain((0..(search as usize / 1024 + 2)).map(|_| vec![b'z'; 1024]))
            .chain(std::iter::once(b"\"]}".to_vec()))
            .map(Ok)
            .collect();
    let response = app
        .client
        .post(app.url("/v1/vectors/index/big/search"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_that_used_to_panic_or_fail_are_4xx() {
    let app = spawn_app_with(&[]).await;
    crate::helpers::seed_workers(&app, 20, None).await;
    // The last day chrono knows has no next day.
    let response = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "welder", "k": 3, "available_by": "+262142-12-31"}),
        )
        .await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let still = app
        .post_json("/v1/matrix/search", &json!({"query": "welder", "k": 3}))
        .await;
    assert_eq!(still.status(), StatusCode::OK, "the matrix did not restart");

    let response = app
        .post_raw("/v1/ingest/dupes", "text/csv", "a,a\n1,2\n")
        .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "malformed_csv").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("twice"),
        "{body}"
    );

    let put = |key: &'static str| {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/storage/objects/{key}"));
        async move {
            client
                .put(url)
                .header("content-type", "application/octet-stream")
                .body("bytes")
                .send()
                .await
                .unwrap()
        }
    };
    assert_error(put("x%231").await, StatusCode::BAD_REQUEST, "invalid_key").await;
    assert_eq!(
        put("x%23y").await.status(),
        StatusCode::CREATED,
        "'#' alone is fine"
    );
    assert_eq!(put("a").await.status(), StatusCode::CREATED);
    assert_error(put("a/b").await, StatusCode::CONFLICT, "key_conflict").await;
    assert_eq!(put("c/d").await.status(), StatusCode::CREATED);
    assert_error(put("c").await, StatusCode::CONFLICT, "key_conflict").await;
    let listed: Value = app.get("/v1/storage/objects").await.json().await.unwrap();
    let keys: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["a", "c/d", "x#y"],
        "refused uploads left nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cap_answers_with_its_own_code() {
    let (app, tokens) = spawn_app_with_tokens(&[
        ("ingest.max_columns", "3"),
        ("ingest.max_column_name_bytes", "16"),
        ("limits.max_event_streams_per_token", "1"),
        ("mcp.max_sessions", "1"),
        ("storage.max_transfers_per_token", "1"),
    ])
    .await;
    let ingest = |path: &str, csv: &'static str| {
        let request = app
            .client
            .post(app.url(path))
            .bearer_auth(&tokens.write)
            .header("content-type", "text/csv")
            .body(csv);
        async move { request.send().await.unwrap() }
    };
    assert_error(
        ingest("/v1/ingest/wide", "a,b,c,d\n1,2,3,4\n").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_columns",
    )
    .await;
    assert_error(
        ingest("/v1/ingest/long", "a_name_of_twenty_bytes,b\n1,2\n").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "column_name_too_long",
    )
    .await;

    // One event stream per token: a second from the same token waits,
    // another token's is served.
    let first = app
        .send(
            Method::GET,
            "/v1/supervision/events",
            Some(&tokens.read),
            None,
        )
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = app
        .send(
            Method::GET,
            "/v1/supervision/events",
            Some(&tokens.read),
            None,
        )
        .await;
    assert_error(second, StatusCode::SERVICE_UNAVAILABLE, "too_many_streams").await;
    let other = app
        .send(
            Method::GET,
            "/v1/supervision/events",
            Some(&tokens.write),
            None,
        )
        .await;
    assert_eq!(other.status(), StatusCode::OK);
    drop(first);
    eventually(
        "the stream's share is given back",
        Duration::from_secs(30),
        || async {
            let again = app
                .send(
                    Method::GET,
                    "/v1/supervision/events",
                    Some(&tokens.read),
                    None,
                )
                .await;
            again.status() == StatusCode::OK
        },
    )
    .await;

    // MCP sessions: one at a time here.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {},
        "clientInfo": {"name": "hostile", "version": "1"}}});
    let open = |token: &str| {
        app.client
            .post(app.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    let session = open(&tokens.read).await.unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    assert!(session.headers().contains_key("mcp-session-id"));
    let refused = open(&tokens.write).await.unwrap();
    assert_error(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_sessions",
    )
    .await;
    // `/mcp/` is the same service, under the same cap.
    let refused = app
        .client
        .post(app.url("/mcp/"))
        .bearer_auth(&tokens.write)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_error(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_sessions",
    )
    .await;

    // Transfers per token: a download holds its share until its body is
    // read (8 MiB: more than the socket buffers hold).
    let object = vec![7u8; 8 << 20];
    let stored = app
        .client
        .put(app.url("/v1/storage/objects/big.bin"))
        .bearer_auth(&tokens.write)
        .body(object)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::CREATED);
    let held = app
        .send(
            Method::GET,
            "/v1/storage/objects/big.bin",
            Some(&tokens.read),
            None,
        )
        .await;
    assert_eq!(held.status(), StatusCode::OK);
    let second = app
        .send(
            Method::GET,
            "/v1/storage/objects/big.bin",
            Some(&tokens.read),
            None,
        )
        .await;
    assert_error(
        second,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_transfers",
    )
    .await;
    let other = app
        .send(
            Method::GET,
            "/v1/storage/objects/big.bin",
            Some(&tokens.admin),
            None,
        )
        .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(held.bytes().await.unwrap().len(), 8 << 20);
    drop(other);

    // The matrix's own indexes are the admin's to write.
    let create = json!({"name": "workers", "dimension": 256});
    let response = app
        .send(
            Method::POST,
            "/v1/vectors/index",
            Some(&tokens.write),
            Some(&create),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "reserved_index").await;
    let response = app
        .send(
            Method::POST,
            "/v1/vectors/index",
            Some(&tokens.admin),
            Some(&create),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let add = json!({"items": [{"id": "W1", "text": "welder", "metadata": {"role": "Welder"}}]});
    let response = app
        .send(
            Method::POST,
            "/v1/vectors/index/workers/add",
            Some(&tokens.write),
            Some(&add),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "reserved_index").await;
    let response = app
        .send(
            Method::DELETE,
            "/v1/vectors/index/playbook_memory/items/x",
            Some(&tokens.write),
            None,
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "reserved_index").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_past_the_cap_or_a_full_disk_are_refused() {
    let full = spawn_app_with(&[("ingest.min_free_bytes", "1152921504606846976")]).await;
    let response = full
        .post_raw("/v1/ingest/people", "text/csv", "a,b\n1,2\n")
        .await;
    assert_error(response, StatusCode::INSUFFICIENT_STORAGE, "disk_full").await;
    let listed: Value = full.get("/v1/catalog/datasets").await.json().await.unwrap();
    assert_eq!(listed["datasets"], json!([]), "nothing was written");

    let app = spawn_app_with(&[("ingest.max_concurrent", "1")]).await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let slow = {
        let request = app
            .client
            .post(app.url("/v1/ingest/slow"))
            .header("content-type", "text/csv")
            .body(reqwest::Body::wrap_stream(tokio_stream_of(receiver)));
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    sender.send(Ok(b"a,b\n".to_vec())).await.unwrap();
    let spool = app.data_dir.join("tmp");
    eventually(
        "the first ingest is spooling",
        Duration::from_secs(10),
        || async { std::fs::read_dir(&spool).is_ok_and(|mut entries| entries.next().is_some()) },
    )
    .await;
    let second = app
        .post_raw("/v1/ingest/other", "text/csv", "a,b\n1,2\n")
        .await;
    assert_error(second, StatusCode::SERVICE_UNAVAILABLE, "too_many_ingests").await;
    sender.send(Ok(b"1,2\n".to_vec())).await.unwrap();
    drop(sender);
    assert_eq!(slow.await.unwrap().status(), StatusCode::OK);
    let third = app
        .post_raw("/v1/ingest/other", "text/csv", "a,b\n1,2\n")
        .await;
    assert_eq!(third.status(), StatusCode::OK, "the cap is given back");
}

fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_beyond_the_cap_is_503_too_many_chats() {
    let app = spawn_app_with(&[("chat.max_concurrent", "1")]).await;
    crate::helpers::seed_workers(&app, 20, None).await;
    // The embedder stalls: the first chat holds its place meanwhile.
    let stalled = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "embed", "fault": "delay", "delay_ms": 3000}),
        )
        .await;
    assert_eq!(
        stalled.status(),
        StatusCode::ACCEPTED,
        "{}",
        stalled.text().await.unwrap()
    );
    let chat = json!({"messages": [{"role": "user", "content": "who welds in Joliet?"}],
                      "context": {"source": "workers", "k": 3}});
    let first = {
        let request = app.client.post(app.url("/v1/chat")).json(&chat);
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    eventually(
        "the first chat holds its place",
        Duration::from_secs(10),
        || async { metric_value(&app.metrics().await, "lakehouse_chats_running") == Some(1.0) },
    )
    .await;
    let second = app.post_json("/v1/chat", &chat).await;
    assert_error(second, StatusCode::SERVICE_UNAVAILABLE, "too_many_chats").await;
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    let third = app.post_json("/v1/chat", &chat).await;
    assert_eq!(third.status(), StatusCode::OK, "the place is given back");
    // The place is held until the answer's body has been sent.
    third.text().await.unwrap();
    eventually(
        "every place is given back",
        Duration::from_secs(10),
        || async { metric_value(&app.metrics().await, "lakehouse_chats_running") == Some(0.0) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_on_fields_no_item_or_few_items_hold_are_answered_without_error() {
    let app = spawn_app_with(&[("vectors.max_hot_fields", "2")]).await;
    app.post_json(
        "/v1/vectors/index",
        &json!({"name": "crew", "dimension": 3}),
    )
    .await;
    // Past the presence map's few-items bound (1,024), so the common
    // fields get lookups, and with only two of them kept, they evict each
    // other.
    let metadata_of = |i: usize| {
        let mut metadata = json!({
            "role": if i % 2 == 0 { "Welder" } else { "Driver" },
            "team": format!("t{}", i % 3),
            "band": i % 5,
            "n": i,
        });
        if i % 100 == 7 {
            metadata["badge"] = json!("gold");
        }
        metadata
    };
    for batch in 0..3 {
        let items: Vec<Value> = (batch * 1000..(batch + 1) * 1000)
            .map(|i| json!({"id": format!("c{i}"), "vector": [1.0, (i % 17) as f32, 0.25], "metadata": metadata_of(i)}))
            .collect();
        app.add_items("crew", &items).await;
    }
    let search = |filter: Value| {
        let body = json!({"vector": [1.0, 0.0, 0.0], "k": 10, "filter": filter});
        let request = app
            .client
            .post(app.url("/v1/vectors/index/crew/search"))
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    // Sixteen fields no item holds: nothing matches, at once.
    let mut fresh = serde_json::Map::new();
    for i in 0..16 {
        fresh.insert(format!("fresh{i}"), json!("x"));
    }
    let response = search(Value::Object(fresh)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let found: Value = response.json().await.unwrap();
    assert_eq!(found["hits"], json!([]));
    // A rare field, with and without a common one, gives exactly its items.
    let ids = |found: &Value| -> Vec<String> {
        let mut ids: Vec<String> = found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let rare: Value = search(json!({"badge": "gold"})).await.json().await.unwrap();
    let mut rare_ids = ids(&rare);
    rare_ids.sort();
    assert_eq!(rare_ids.len(), 10);
    assert!(
        rare_ids.iter().all(|id| {
            let i: usize = id[1..].parse().unwrap();
            i % 100 == 7
        }),
        "{rare_ids:?}"
    );
    let both: Value = search(json!({"badge": "gold", "role": "Driver"}))
        .await
        .json()
        .await
        .unwrap();
    assert!(ids(&both)
        .iter()
        .all(|id| id[1..].parse::<usize>().unwrap() % 100 == 7));
    // Many searches on combinations of four common fields at once (two
    // lookups kept: they evict each other mid-search): every one answers
    // 200 with exactly what brute force says.
    let combos = [
        json!({"role": "Welder", "team": "t0"}),
        json!({"team": "t1", "band": 2}),
        json!({"band": 0, "role": "Driver"}),
        json!({"role": "Welder", "team": "t2", "band": 4}),
        json!({"n": 42, "team": "t0"}),
        json!({"n": 43, "badge": "gold"}),
    ];
    let searches = (0..24).map(|i| {
        let filter = combos[i % combos.len()].clone();
        async move {
            let response = search(filter.clone()).await;
            (
                filter,
                response.status(),
                response.json::<Value>().await.unwrap(),
            )
        }
    });
    for (filter, status, found) in futures::future::join_all(searches).await {
        assert_eq!(status, StatusCode::OK, "{filter}");
        let expected = (0..3000)
            .filter(|&i| {
                let metadata = metadata_of(i);
                filter
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| metadata.get(k) == Some(v))
            })
            .count();
        let hits = found["hits"].as_array().unwrap();
        assert_eq!(hits.len(), expected.min(10), "{filter}: {found}");
        for hit in hits {
            for (k, v) in filter.as_object().unwrap() {
                assert_eq!(&hit["metadata"][k], v, "{filter}: {hit}");
            }
        }
    }
    // A field written after the first filter is found too.
    let later = json!({"items": [{"id": "late", "vector": [1.0, 0.0, 0.0], "metadata": {"shift": "night"}}]});
    app.post_json("/v1/vectors/index/crew/add", &later).await;
    let night: Value = search(json!({"shift": "night"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&night), ["late"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_or_log_line_names_the_data_dir_and_no_client_can_forge_a_line() {
    let server = Process::start(&[]).await;
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    let ingest = client
        .post(server.url("/v1/ingest/people"))
        .header("content-type", "text/csv")
        .body("name,city\nAda,Joliet\n")
        .send()
        .await
        .unwrap();
    bodies.push(ingest.text().await.unwrap());
    for (method, path, body) in [
        ("GET", "/v1/catalog/datasets", None),
        ("GET", "/v1/catalog/datasets/people", None),
        (
            "POST",
            "/v1/sql",
            Some(json!({"sql": "EXPLAIN SELECT * FROM people"})),
        ),
        (
            "POST",
            "/v1/sql",
            Some(json!({"sql": "SELECT * FROM nowhere"})),
        ),
        (
            "POST",
            "/v1/sql",
            Some(json!({"sql": "EXPLAIN ANALYZE SELECT count(*) FROM people"})),
        ),
        ("GET", "/v1/storage/objects/missing/file.bin", None),
        ("GET", "/v1/vectors/index/nothing", None),
        ("GET", "/v1/supervision", None),
    ] {
        let mut request = client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(path),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        bodies.push(request.send().await.unwrap().text().await.unwrap());
    }
    let catalog: Value = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(catalog["datasets"][0]["uri"], "datasets/people.lance");
    assert!(
        bodies[3].contains("LanceScan") || bodies[3].contains("Lance"),
        "{}",
        bodies[3]
    );
    // A newline in a decoded path value, aimed at the log.
    let forged = client
        .put(server.url("/v1/storage/objects/a%0AFORGED%20admin%20login"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    bodies.push(forged.text().await.unwrap());

    let data_dir = server.data_dir.display().to_string();
    let canonical = server
        .data_dir
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    for body in &bodies {
        assert!(
            !body.contains(&data_dir) && !body.contains(&canonical),
            "{body}"
        );
    }
    let logs = server.logs();
    assert!(logs.lines().count() > 3, "the server logged: {logs}");
    for line in logs.lines() {
        assert!(
            !line.contains(&data_dir) && !line.contains(&canonical),
            "{line}"
        );
        assert!(!line.starts_with("FORGED"), "a forged log line: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_dataset_is_gone_and_a_replace_leaves_no_old_rows_on_disk() {
    let (app, tokens) = spawn_app_with_tokens(&[]).await;
    let ingest = |path: &str, csv: String| {
        let request = app
            .client
            .post(app.url(path))
            .bearer_auth(&tokens.write)
            .header("content-type", "text/csv")
            .body(csv);
        async move { request.send().await.unwrap() }
    };
    let secret = "SECRET-PII-7f3a9c21e4b8d605";
    let rows: String = (0..50).map(|i| format!("{i},{secret}{i}\n")).collect();
    assert_eq!(
        ingest("/v1/ingest/people", format!("id,ssn\n{rows}"))
            .await
            .status(),
        StatusCode::OK
    );
    let dir = app.data_dir.join("datasets/people.lance");
    let on_disk = |needle: &str| -> bool {
        walk(&dir).iter().any(|file| {
            std::fs::read(file)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    };
    assert!(on_disk(secret), "the column is stored as written");
    let clean: String = (0..50).map(|i| format!("{i},Joliet\n")).collect();
    let replaced = ingest(
        "/v1/ingest/people?mode=replace",
        format!("id,city\n{clean}"),
    )
    .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    assert!(!on_disk(secret), "the replaced column is gone from disk");
    let dataset = lance::Dataset::open(&dir.display().to_string())
        .await
        .unwrap();
    assert_eq!(
        dataset.versions().await.unwrap().len(),
        1,
        "older versions removed"
    );

    // Dropping is an admin's.
    let as_writer = app
        .send(
            Method::DELETE,
            "/v1/catalog/datasets/people",
            Some(&tokens.write),
            None,
        )
        .await;
    assert_error(as_writer, StatusCode::FORBIDDEN, "forbidden").await;
    let dropped = app
        .send(
            Method::DELETE,
            "/v1/catalog/datasets/people",
            Some(&tokens.admin),
            None,
        )
        .await;
    assert_eq!(dropped.status(), StatusCode::OK);
    assert!(!dir.exists(), "its files are removed");
    let gone = app
        .send(
            Method::GET,
            "/v1/catalog/datasets/people",
            Some(&tokens.read),
            None,
        )
        .await;
    assert_error(gone, StatusCode::NOT_FOUND, "dataset_not_found").await;
    let again = app
        .send(
            Method::DELETE,
            "/v1/catalog/datasets/people",
            Some(&tokens.admin),
            None,
        )
        .await;
    assert_error(again, StatusCode::NOT_FOUND, "dataset_not_found").await;
    let reserved = app
        .send(
            Method::DELETE,
            "/v1/catalog/datasets/replay_runs",
            Some(&tokens.admin),
            None,
        )
        .await;
    assert_error(reserved, StatusCode::CONFLICT, "reserved_dataset").await;
    // The name is free again, and a restart does not bring the old one back.
    assert_eq!(
        ingest("/v1/ingest/people", "id\n1\n".into()).await.status(),
        StatusCode::OK
    );
    let (data_dir, guard) = app.shutdown().await;
    let reopened = crate::helpers::spawn_app_on(data_dir, &[]).await;
    let listed: Value = reopened
        .get("/v1/catalog/datasets")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["datasets"][0]["row_count"], 1);
    drop(guard);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_whose_caller_went_away_is_cancelled() {
    let app = spawn_app_with(&[
        ("query.max_concurrent", "1"),
        ("query.timeout_ms", "120000"),
    ])
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let endless = json!({"sql": "SELECT count(*) FROM generate_series(1, 100000000000)"});
    let gone = impatient
        .post(app.url("/v1/sql"))
        .json(&endless)
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    // The only query place is given back long before the 120 s limit.
    eventually(
        "the abandoned query is cancelled",
        Duration::from_secs(30),
        || async {
            app.post_json("/v1/sql", &json!({"sql": "SELECT 1"}))
                .await
                .status()
                == StatusCode::OK
        },
    )
    .await;
}
