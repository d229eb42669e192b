//! The front door: tokens and roles on every route, refusing to start
//! unsafely, bounded inputs, the published contract.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use lakehouse::domain::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, eventually, spawn_app_with, spawn_app_with_tokens, TestApp};

const PATIENCE: Duration = Duration::from_secs(60);

/// Every operation of the served document: (method, path template, the
/// role its security requirement names, or none).
pub(crate) async fn operations(app: &TestApp) -> Vec<(Method, String, Option<Role>, Value)> {
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let role = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["bearer"].as_array())
                .flatten()
                .filter_map(|s| s.as_str().and_then(Role::parse))
                .min();
            found.push((method, path.clone(), role, operation.clone()));
        }
    }
    found
}

/// A concrete path for a template: every parameter `x` (a key of two
/// segments for objects).
pub(crate) fn concrete(template: &str) -> String {
    template
        .replace("{key}", "some/object.bin")
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_documented() {
    let (app, tokens) = spawn_app_with_tokens(&[]).await;
    let operations = operations(&app).await;
    assert!(operations.len() >= 25, "{} operations", operations.len());
    let mut checked = 0;
    for (method, template, needed, _) in &operations {
        let path = concrete(template);
        let body = json!({});
        for token in [None, Some(Role::Read), Some(Role::Write), Some(Role::Admin)] {
            let response = app
                .send(
                    method.clone(),
                    &path,
                    token.map(|r| tokens.of(r)),
                    Some(&body),
                )
                .await;
            let status = response.status();
            let what = format!("{method} {template} with {token:?}");
            match (needed, token) {
                (None, _) => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what}: open, got {status}"
                ),
                (Some(_), None) => {
                    assert_eq!(
                        response.headers()["www-authenticate"],
                        "Bearer realm=\"lakehouse\"",
                        "{what}"
                    );
                    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
                }
                (Some(needed), Some(role)) if role < *needed => {
                    let body = assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
                    let message = body["error"]["message"].as_str().unwrap();
                    assert!(message.contains(needed.as_str()), "{what}: {message}");
                }
                (Some(_), Some(_)) => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what}: allowed, got {status}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, operations.len() * 4);

    // The roles named in the issue, spot-checked against the document.
    let role_of = |method: Method, template: &str| {
        operations
            .iter()
            .find(|(m, t, _, _)| *m == method && t == template)
            .unwrap_or_else(|| panic!("{method} {template} is documented"))
            .2
    };
    assert_eq!(role_of(Method::GET, "/health"), None);
    assert_eq!(role_of(Method::POST, "/v1/sql"), Some(Role::Read));
    assert_eq!(
        role_of(Method::POST, "/v1/vectors/index/{name}/search"),
        Some(Role::Read)
    );
    assert_eq!(
        role_of(Method::POST, "/v1/vectors/index/{name}/add"),
        Some(Role::Write)
    );
    assert_eq!(
        role_of(Method::POST, "/v1/matrix/playbooks/record"),
        Some(Role::Write)
    );
    assert_eq!(
        role_of(Method::POST, "/v1/vectors/index"),
        Some(Role::Write)
    );
    assert_eq!(
        role_of(Method::DELETE, "/v1/vectors/index/{name}"),
        Some(Role::Admin)
    );
    assert_eq!(role_of(Method::POST, "/v1/admin/faults"), Some(Role::Admin));

    // A wrong token is a 401 too, and a read token really searches and
    // really cannot add.
    let wrong = app
        .send(
            Method::GET,
            "/v1/vectors/index",
            Some("lh_not_a_token"),
            None,
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let created = app
        .send(
            Method::POST,
            "/v1/vectors/index",
            Some(&tokens.write),
            Some(&json!({"name": "people", "dimension": 3})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let search = json!({"vector": [1.0, 0.0, 0.0], "k": 1});
    let searched = app
        .send(
            Method::POST,
            "/v1/vectors/index/people/search",
            Some(&tokens.read),
            Some(&search),
        )
        .await;
    assert_eq!(searched.status(), StatusCode::OK);
    let add = json!({"items": [{"id": "a", "vector": [1.0, 0.0, 0.0]}]});
    let refused = app
        .send(
            Method::POST,
            "/v1/vectors/index/people/add",
            Some(&tokens.read),
            Some(&add),
        )
        .await;
    assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_routes_are_open_unless_protected() {
    let (open, _) = spawn_app_with_tokens(&[]).await;
    assert_eq!(open.get("/ready").await.status(), StatusCode::OK);
    assert_eq!(open.get("/metrics").await.status(), StatusCode::OK);

    let (protected, tokens) = spawn_app_with_tokens(&[("auth.protect_ops", "true")]).await;
    assert_eq!(
        protected.get("/health").await.status(),
        StatusCode::OK,
        "always open"
    );
    for path in ["/ready", "/metrics"] {
        assert_error(
            protected.get(path).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        let scraped = protected
            .send(Method::GET, path, Some(&tokens.read), None)
            .await;
        assert_eq!(scraped.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_bind_without_tokens_refuses_to_start() {
    let scratch = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(scratch.path().join("data"))
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.host"), "{stderr}");
    assert!(stderr.contains("auth.tokens"), "{stderr}");

    // On loopback, open, as before.
    let app = spawn_app_with(&[]).await;
    assert_eq!(app.get("/v1/vectors/index").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_new_prints_a_token_that_works() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["token", "new", "--name", "cli-made", "--role", "read"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("lh_") && token.len() == 67, "{token}");
    let advice = String::from_utf8(output.stderr).unwrap();
    let line = advice
        .lines()
        .find(|l| l.contains("sha256 ="))
        .unwrap_or_else(|| panic!("no configuration line in {advice}"))
        .trim()
        .to_string();
    assert!(
        !line.contains(&token),
        "the hash is printed, never the token twice"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    std::fs::write(&file, format!("tokens = [{line}]\n")).unwrap();
    let file = file.display().to_string();
    let app = spawn_app_with(&[("auth.tokens_file", file.as_str())]).await;
    let listed = app
        .send(Method::GET, "/v1/vectors/index", Some(&token), None)
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert_error(
        app.get("/v1/vectors/index").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let create = json!({"name": "nope", "dimension": 2});
    let refused = app
        .send(
            Method::POST,
            "/v1/vectors/index",
            Some(&token),
            Some(&create),
        )
        .await;
    assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;

    let bad_role = std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["token", "new", "--name", "x", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_input_cap_has_its_own_code() {
    let app = spawn_app_with(&[
        ("limits.max_filter_fields", "2"),
        ("limits.max_id_list", "3"),
    ])
    .await;
    let created = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "capped", "dimension": 2}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let filter = json!({"vector": [1.0, 0.0], "k": 1, "filter": {"a": 1, "b": 2, "c": 3}});
    assert_error(
        app.post_json("/v1/vectors/index/capped/search", &filter)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_filter_fields",
    )
    .await;
    let excluded = json!({"vector": [1.0, 0.0], "k": 1, "exclude_ids": ["a", "b", "c", "d"]});
    assert_error(
        app.post_json("/v1/vectors/index/capped/search", &excluded)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_ids",
    )
    .await;
    let matrix = json!({"query": "welder", "k": 5, "exclude_ids": ["a", "b", "c", "d"]});
    assert_error(
        app.post_json("/v1/matrix/search", &matrix).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_ids",
    )
    .await;
    let record = json!({"query": "welder", "role": "Welder", "worker_ids": ["a", "b", "c", "d"], "score": 1.0});
    assert_error(
        app.post_json("/v1/matrix/playbooks/record", &record).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_ids",
    )
    .await;
    let long_name = json!({"name": "n".repeat(65), "dimension": 2});
    assert_error(
        app.post_json("/v1/vectors/index", &long_name).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    let odd_dataset = app
        .post_raw("/v1/ingest/has%20space", "text/csv", "a,b\n1,2\n")
        .await;
    assert_error(odd_dataset, StatusCode::BAD_REQUEST, "invalid_name").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_memory_blow_up_is_a_clear_error_and_the_service_keeps_serving() {
    let app = spawn_app_with(&[("query.memory_limit_bytes", "8388608")]).await;
    let sort = json!({"sql": "SELECT value FROM generate_series(1, 20000000) ORDER BY value DESC"});
    let body = assert_error(
        app.post_json("/v1/sql", &sort).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "query_memory_exceeded",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("query.memory_limit_bytes"), "{message}");

    let created = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "after", "dimension": 2}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let search = app
        .post_json(
            "/v1/vectors/index/after/search",
            &json!({"vector": [1.0, 0.0], "k": 1}),
        )
        .await;
    assert_eq!(search.status(), StatusCode::OK);
    let small = app
        .post_json(
            "/v1/sql",
            &json!({"sql": "SELECT count(*) AS n FROM generate_series(1, 1000)"}),
        )
        .await;
    assert_eq!(small.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_the_concurrency_cap_get_503() {
    let app = spawn_app_with(&[("query.max_concurrent", "1"), ("query.timeout_ms", "20000")]).await;
    // Counting ten billion rows runs until its time limit. A probe below
    // may take the one permit first and have it refused: it asks again
    // until it runs (so it holds the permit while the probes ask).
    let slow = {
        let (client, url) = (app.client.clone(), app.url("/v1/sql"));
        tokio::spawn(async move {
            loop {
                let status = client
                    .post(url.clone())
                    .json(&json!({"sql": "SELECT count(*) FROM generate_series(1, 10000000000)"}))
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status != StatusCode::SERVICE_UNAVAILABLE {
                    return status;
                }
            }
        })
    };
    eventually(
        "a second query is refused while the first runs",
        PATIENCE,
        || async {
            let response = app.post_json("/v1/sql", &json!({"sql": "SELECT 1"})).await;
            if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                return false;
            }
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.unwrap();
            body["error"]["code"] == "too_many_queries"
        },
    )
    .await;
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_dropped_indexes_leave_no_metric_series() {
    let app = spawn_app_with(&[]).await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "FROBNICATE /v1/embed HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");

    let created = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "ephemeral", "dimension": 2}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let added = app
        .post_json(
            "/v1/vectors/index/ephemeral/add",
            &json!({"items": [{"id": "a", "vector": [1.0, 0.0]}]}),
        )
        .await;
    assert_eq!(added.status(), StatusCode::OK);
    let search = json!({"vector": [1.0, 0.0], "k": 1});
    app.post_json("/v1/vectors/index/ephemeral/search", &search)
        .await;
    let metrics = app.metrics().await;
    assert!(!metrics.contains("FROBNICATE"));
    assert!(
        metrics.contains(r#"method="other""#),
        "the invented method is 'other'"
    );
    assert!(metrics.contains(r#"index="ephemeral""#));
    assert!(metrics.contains(r#"actor="index:ephemeral""#));

    let dropped = app
        .client
        .delete(app.url("/v1/vectors/index/ephemeral"))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::OK);
    let metrics = app.metrics().await;
    let leftovers: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("ephemeral") && !l.starts_with('#'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_route_is_in_the_document_and_every_documented_one_is_served() {
    let (app, tokens) = spawn_app_with_tokens(&[]).await;
    let operations = operations(&app).await;
    // Documented → served: no documented operation falls to the default
    // service (404 `not_found` or 405).
    for (method, template, _, _) in &operations {
        let response = app
            .send(
                method.clone(),
                &concrete(template),
                Some(&tokens.admin),
                Some(&json!({})),
            )
            .await;
        let status = response.status();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {template}"
        );
        if status == StatusCode::NOT_FOUND {
            let body: Value = response.json().await.unwrap();
            assert_ne!(
                body["error"]["code"], "not_found",
                "{method} {template} is served"
            );
        }
    }
    // Served → documented: every route a handler module registers (they
    // can only register through utoipa-actix-web's `service`, with a
    // route macro) is in the document.
    let documented: BTreeSet<(String, String)> = operations
        .iter()
        .map(|(m, t, _, _)| (m.to_string(), t.clone()))
        .collect();
    let route = regex::Regex::new(r#"#\[(get|post|put|delete|patch)\("([^"]+)"\)\]"#).unwrap();
    let mut found = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http")).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for captures in route.captures_iter(&source) {
            let method = captures[1].to_ascii_uppercase();
            let template = regex::Regex::new(r"\{(\w+):[^}]+\}")
                .unwrap()
                .replace_all(&captures[2], "{$1}")
                .into_owned();
            let under_v1 = format!("/v1{template}");
            assert!(
                documented.contains(&(method.clone(), template.clone()))
                    || documented.contains(&(method.clone(), under_v1.clone())),
                "{method} {template} ({}) is served but not documented",
                path.display()
            );
            found += 1;
        }
    }
    assert_eq!(
        found,
        operations.len(),
        "one route macro per documented operation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_docs_page_are_served_offline() {
    let app = spawn_app_with(&[]).await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    let search = &document["paths"]["/v1/vectors/index/{name}/search"]["post"];
    for status in ["200", "401", "403", "404", "422", "503"] {
        assert!(
            search["responses"][status].is_object(),
            "search documents {status}"
        );
    }

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "the Swagger UI page");
    assert!(
        !html.contains("https://"),
        "nothing is fetched from elsewhere"
    );
    let script = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.text().await.unwrap().contains("/openapi.json"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_naming_the_allowed_ones() {
    let app = spawn_app_with(&[]).await;
    let response = app.client.put(app.url("/v1/embed")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_do_not_show_filesystem_paths() {
    let app = spawn_app_with(&[]).await;
    // A file where the dataset's directory should be: Lance cannot write.
    let datasets = app.data_dir.join("datasets");
    std::fs::create_dir_all(&datasets).unwrap();
    std::fs::write(datasets.join("blocked.lance"), b"not a directory").unwrap();
    let response = app
        .post_raw("/v1/ingest/blocked", "text/csv", "a,b\n1,2\n")
        .await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    let data_dir = app.data_dir.display().to_string();
    assert!(!message.contains(&data_dir), "{message}");
    assert!(!message.contains("/tmp/"), "{message}");
}

/// Every `$ref` in the published document names a schema the document
/// defines: a client generator (or the fuzzer) that follows one finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_in_the_document_resolves() {
    let app = spawn_app_with(&[]).await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    fn references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner.as_str()) {
                        ("$ref", Some(target)) => out.push(target),
                        _ => references(inner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(
        found.len() > 20,
        "the document uses references: {}",
        found.len()
    );
    for target in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target}: only local references"));
        assert!(
            document.pointer(pointer).is_some(),
            "{target} does not resolve"
        );
    }
}
