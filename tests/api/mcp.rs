//! The MCP server, driven by rmcp's own client: over streamable HTTP
//! against `/mcp` of a test app, and over stdio against the real binary
//! (`lakehouse mcp --target`) pointed at a test app.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, spawn_app_with_tokens, TestApp};

type Client = RunningService<RoleClient, ()>;

const READ_TOOLS: [&str; 11] = [
    "list_datasets",
    "describe_dataset",
    "query_sql",
    "list_indexes",
    "search_vectors",
    "search_workers",
    "count_workers",
    "embed_text",
    "validate_outreach",
    "ask",
    "supervision_tree",
];

async fn seed(app: &TestApp, workers: usize) {
    crate::helpers::seed_workers(app, workers, None).await;
}

async fn over_http(app: &TestApp, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", app.address));
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("MCP initialize over HTTP")
}

async fn over_stdio(app: &TestApp, env: &[(&str, &str)]) -> Client {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"));
    command.args(["mcp", "--target", &app.address]);
    command.env("LAKEHOUSE__LOG__LEVEL", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let transport = TokioChildProcess::new(command).expect("spawn lakehouse mcp");
    ().serve(transport)
        .await
        .expect("MCP initialize over stdio")
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: a protocol error instead of a tool result: {e}"))
}

/// A successful call's structured result.
async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_eq!(result.is_error, Some(false), "{tool}: {result:?}");
    let text = result.content[0]
        .as_text()
        .expect("a text rendering")
        .text
        .clone();
    assert!(!text.is_empty(), "{tool}: empty text");
    result.structured_content.expect("structured content")
}

/// A failing call's `code: message` text.
async fn fails(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call(client, tool, arguments).await;
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    let text = result.content[0].as_text().expect("a text").text.clone();
    let structured = result.structured_content.expect("structured error");
    let code = structured["error"]["code"].as_str().unwrap();
    assert!(text.starts_with(&format!("{code}: ")), "{text}");
    assert!(
        text.len() > code.len() + 2,
        "a message, never an empty error: {text}"
    );
    text
}

/// initialize, tools/list, a call of every read tool with real results, an
/// error per tool family, and the caps (`mcp.max_rows` = 5,
/// `mcp.max_chars` = 4000 on the serving side).
async fn the_sequence(client: &Client, workers: usize) {
    let info = client.peer_info().expect("initialized");
    assert_eq!(
        info.server_info.as_ref().expect("server info").name,
        "lakehouse"
    );

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names, READ_TOOLS,
        "read-only by default: no write tools listed"
    );
    let search = tools.iter().find(|t| t.name == "search_workers").unwrap();
    let properties = search.input_schema["properties"].as_object().unwrap();
    for field in [
        "query",
        "k",
        "role",
        "city",
        "state",
        "exclude_ids",
        "use_playbook",
    ] {
        assert!(
            properties.contains_key(field),
            "search_workers schema lacks {field}"
        );
    }
    assert!(properties["query"]["description"].is_string());
    let annotations = search.annotations.as_ref().unwrap();
    assert_eq!(annotations.read_only_hint, Some(true));
    assert_eq!(annotations.destructive_hint, Some(false));
    let vectors = tools.iter().find(|t| t.name == "search_vectors").unwrap();
    assert!(vectors.input_schema["properties"].get("text").is_some());
    assert!(
        vectors.input_schema["properties"].get("vector").is_none(),
        "text, not raw vectors"
    );

    // Every tool, with real results.
    let datasets = ok(client, "list_datasets", json!({})).await;
    assert!(datasets["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "workers"));
    let described = ok(client, "describe_dataset", json!({"name": "workers"})).await;
    assert_eq!(described["row_count"], workers);
    let rows = ok(
        client,
        "query_sql",
        json!({"sql": "SELECT worker_id FROM workers ORDER BY worker_id"}),
    )
    .await;
    assert_eq!(
        rows["rows"].as_array().unwrap().len(),
        5,
        "capped at mcp.max_rows"
    );
    assert_eq!(rows["truncated"], true);
    let indexes = ok(client, "list_indexes", json!({})).await;
    assert!(indexes["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "workers"));
    let hits = ok(
        client,
        "search_vectors",
        json!({"index": "workers", "text": "forklift operator", "k": 3, "filter": {"role": "Forklift Operator"}}),
    )
    .await;
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits
        .iter()
        .all(|h| h["metadata"]["role"] == "Forklift Operator"));
    let found = call(
        client,
        "search_workers",
        json!({"query": "forklift operator", "k": 3, "role": "Forklift Operator"}),
    )
    .await;
    let text = found.content[0].as_text().unwrap().text.clone();
    assert!(
        text.starts_with("3 workers:") && text.contains("Forklift Operator"),
        "{text}"
    );
    let found = found.structured_content.unwrap();
    assert!(found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["worker"]["role"] == "Forklift Operator"));
    let embedded = ok(
        client,
        "embed_text",
        json!({"texts": ["forklift", "welder"]}),
    )
    .await;
    let dimension = embedded["dimension"].as_u64().unwrap() as usize;
    assert_eq!(embedded["vectors"].as_array().unwrap().len(), 2);
    assert_eq!(embedded["vectors"][0].as_array().unwrap().len(), dimension);
    let verdict = ok(
        client,
        "validate_outreach",
        json!({"kind": "sms", "to": "(555) 123-4567", "body": "x".repeat(200)}),
    )
    .await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["errors"][0]["kind"], "too_long");
    let answer = ok(
        client,
        "ask",
        json!({"question": "who can drive a forklift?", "k": 2, "filter": {"role": "Forklift Operator"}}),
    )
    .await;
    assert_eq!(answer["citations"].as_array().unwrap().len(), 2);
    assert!(answer["citations"][0]["lance_version"].as_u64().unwrap() > 0);
    let tree = ok(client, "supervision_tree", json!({})).await;
    assert_eq!(tree["name"], "root");

    // The character cap: ten vectors are far over 4,000 characters.
    let texts: Vec<String> = (0..10).map(|i| format!("text {i}")).collect();
    let capped = ok(client, "embed_text", json!({ "texts": texts })).await;
    assert_eq!(capped["truncated"], true);
    assert!(
        capped.to_string().len() <= 4000,
        "{}",
        capped.to_string().len()
    );

    // An error per family, with the HTTP API's code and message.
    let text = fails(client, "describe_dataset", json!({"name": "nope"})).await;
    assert_eq!(text, "dataset_not_found: no dataset 'nope'");
    let text = fails(client, "query_sql", json!({"sql": "DROP TABLE workers"})).await;
    assert!(text.starts_with("read_only: "), "{text}");
    let text = fails(
        client,
        "search_vectors",
        json!({"index": "x", "text": "a", "k": 1}),
    )
    .await;
    assert_eq!(text, "index_not_found: index 'x' does not exist");
    let text = fails(
        client,
        "search_workers",
        json!({"query": "forklift", "k": 0}),
    )
    .await;
    assert!(text.starts_with("invalid_k: "), "{text}");
    let text = fails(client, "embed_text", json!({"texts": []})).await;
    assert!(text.starts_with("empty_batch: "), "{text}");
    let text = fails(
        client,
        "validate_outreach",
        json!({"kind": "sms", "to": "5551234567"}),
    )
    .await;
    assert!(
        text.starts_with("invalid_arguments: ") && text.contains("body"),
        "{text}"
    );
    let text = fails(
        client,
        "ask",
        json!({"question": "hi", "source": "nowhere"}),
    )
    .await;
    assert!(text.starts_with("invalid_context: "), "{text}");
    let text = fails(client, "list_indexes", json!({"surprise": 1})).await;
    assert!(text.starts_with("invalid_arguments: "), "{text}");
    let text = fails(client, "record_placement", json!({})).await;
    assert!(text.contains("read-only"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_sequence_over_streamable_http() {
    let app = spawn_app_with(&[("mcp.max_rows", "5"), ("mcp.max_chars", "4000")]).await;
    seed(&app, 300).await;
    let client = over_http(&app, None).await;
    the_sequence(&client, 300).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_sequence_over_stdio_against_the_binary() {
    let app = spawn_app_with(&[]).await;
    seed(&app, 300).await;
    let client = over_stdio(
        &app,
        &[
            ("LAKEHOUSE__MCP__MAX_ROWS", "5"),
            ("LAKEHOUSE__MCP__MAX_CHARS", "4000"),
        ],
    )
    .await;
    the_sequence(&client, 300).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_placement_needs_the_write_role() {
    let (app, tokens) = spawn_app_with_tokens(&[("mcp.read_only", "false")]).await;
    crate::helpers::seed_workers(&app, 50, Some(&tokens.admin)).await;
    let record = json!({"query": "forklift", "role": "Forklift Operator", "worker_ids": ["W0000001"], "score": 1.0});

    let reader = over_http(&app, Some(&tokens.read)).await;
    let names: Vec<String> = reader
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"record_placement".to_string()));
    let text = fails(&reader, "record_placement", record.clone()).await;
    assert!(
        text.starts_with("forbidden: ") && text.contains("'write'"),
        "{text}"
    );

    let status = json!({"worker_id": "W0000002", "metadata": {"status": "on_assignment"}});
    let text = fails(&reader, "update_worker", status.clone()).await;
    assert!(text.starts_with("forbidden: "), "{text}");
    reader.cancel().await.unwrap();

    let writer = over_http(&app, Some(&tokens.write)).await;
    let recorded = ok(&writer, "record_placement", record).await;
    assert_eq!(recorded["workers"], 1);
    // The entry remembers which token recorded it.
    let entry: Value = app
        .send(
            reqwest::Method::GET,
            &format!(
                "/v1/vectors/index/playbook_memory/items/{}",
                recorded["entry_id"].as_str().unwrap()
            ),
            Some(&tokens.admin),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let recording = recorded["recording_id"].as_str().unwrap();
    assert_eq!(
        entry["metadata"]["recorded_by"][recording], "writer",
        "{entry}"
    );
    // A write token changes a worker's status through the tool (it may not
    // write `workers` through the vector API), and searches hear of it.
    let changed = ok(&writer, "update_worker", status).await;
    assert_eq!(
        (changed["matched"].clone(), changed["changed"].clone()),
        (json!(1), json!(1)),
        "{changed}"
    );
    let text = fails(
        &writer,
        "update_worker",
        json!({"worker_id": "W0000002", "metadata": {"status": "retired"}}),
    )
    .await;
    assert!(
        text.starts_with("invalid_metadata: ") && text.contains("status"),
        "{text}"
    );
    let counted = ok(
        &writer,
        "count_workers",
        json!({"status_any": ["on_assignment"]}),
    )
    .await;
    assert_eq!(counted["count"], 1, "{counted}");
    writer.cancel().await.unwrap();

    // No token: the front door refuses /mcp itself.
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", app.address))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_rejected_and_a_loopback_one_is_not() {
    let app = spawn_app_with(&[]).await;
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let send = |origin: &'static str| {
        let url = format!("{}/mcp", app.address);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("origin", origin)
                .body(initialize)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        send("https://evil.example").await,
        reqwest::StatusCode::FORBIDDEN
    );
    assert!(send("http://localhost:5173").await.is_success());
}

/// What a result says, door-independently: the ids in order (hits,
/// citations), or the whole value for answers without a list.
fn answer_of(tool: &str, value: &Value) -> Value {
    let ids = |list: &Value, key: &str| -> Value {
        list.as_array()
            .unwrap_or_else(|| panic!("{tool}: no list in {value}"))
            .iter()
            .map(|hit| {
                json!({
                    "id": hit[key],
                    "explained": hit.get("explain").is_some_and(|e| !e.is_null()),
                    "boosted": hit.get("boosted"),
                })
            })
            .collect()
    };
    match tool {
        "search_workers" => ids(&value["hits"], "worker_id"),
        "search_vectors" => json!({"hits": ids(&value["hits"], "id"), "facets": value["facets"]}),
        "ask" => json!({
            "answer": value["message"]["content"],
            "citations": ids(&value["citations"], "id"),
        }),
        _ => value.clone(),
    }
}

/// One request, every door: each MCP tool with an HTTP twin gives the same
/// answer through `POST /v1/…`, through MCP over `/mcp`, and through MCP
/// over stdio (`lakehouse mcp --target`, which forwards to the same HTTP
/// API): the same hits in the same order, for every search mode, a
/// keyword weight, filters, excluded ids, `explain` and the playbook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_gives_the_same_answer_through_every_door() {
    let app = spawn_app_with(&[]).await;
    seed(&app, 300).await;
    // A recording, so that a playbook search has something to boost: the
    // fifth forklift operator found, placed for this need.
    let found: Value = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "forklift operator", "k": 5, "role": "Forklift Operator", "mode": "semantic"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let placed = found["hits"][4]["worker_id"].clone();
    assert!(placed.is_string(), "{found}");
    let recorded = app
        .post_json(
            "/v1/matrix/playbooks/record",
            &json!({"query": "forklift operator for the night shift", "role": "Forklift Operator",
                    "worker_ids": [placed], "score": 1.0}),
        )
        .await;
    assert!(recorded.status().is_success(), "{}", recorded.status());
    let http_client = over_http(&app, None).await;
    let stdio_client = over_stdio(&app, &[]).await;

    // (tool, its arguments, the HTTP twin's path and body)
    let mut cases: Vec<(&str, Value, String, Value)> = Vec::new();
    let worker_searches = [
        json!({"query": "HazMat Endorsement", "k": 3, "mode": "keyword"}),
        json!({"query": "HazMat Endorsement", "k": 3, "mode": "semantic"}),
        json!({"query": "HazMat Endorsement", "k": 3, "mode": "hybrid"}),
        json!({"query": "HazMat Endorsement", "k": 5}),
        json!({"query": "forklift operator night shift", "k": 5, "mode": "hybrid", "keyword_weight": 0.9}),
        json!({"query": "forklift operator night shift", "k": 5, "mode": "hybrid", "keyword_weight": 0.0}),
        json!({"query": "welder", "k": 5, "state": "IL", "min_years": 2,
               "filter": {"years_experience": {"gte": 3}}, "exclude_ids": ["W0000001"]}),
        json!({"query": "CDL driver", "k": 4, "certifications_any": ["CDL Class A"], "explain": true}),
        json!({"query": "forklift operator for the night shift", "k": 5,
               "role": "Forklift Operator", "use_playbook": true, "explain": true}),
        json!({"query": "warehouse", "k": 5, "near": {"city": "Chicago", "state": "IL", "miles": 30}}),
        json!({"query": "warehouse", "k": 5, "near": {"lat": 41.52, "lon": -88.08, "km": 60}, "explain": true}),
        json!({"query": "\"OSHA 30\" electrican", "k": 3, "mode": "keyword", "explain": true}),
        json!({"query": "CDL driver", "k": 5, "available_between": {"from": "2026-12-10", "to": "2026-12-20"},
               "shift_any": ["night", "weekend"], "certifications_any": ["CDL Class A"],
               "certifications_valid_on": "2026-12-20"}),
    ];
    for body in worker_searches {
        cases.push((
            "search_workers",
            body.clone(),
            "/v1/matrix/search".into(),
            body,
        ));
    }
    let vector_searches = [
        json!({"text": "HazMat Endorsement", "k": 3, "mode": "keyword"}),
        json!({"text": "HazMat Endorsement", "k": 3, "mode": "semantic"}),
        json!({"text": "HazMat Endorsement", "k": 3, "mode": "hybrid", "keyword_weight": 0.7}),
        json!({"text": "warehouse picker", "k": 4, "filter": {"state": "IL"},
               "exclude_ids": ["W0000002"], "explain": true}),
        json!({"text": "warehouse picker", "k": 4, "ef_search": 16}),
        json!({"text": "welder", "k": 3, "filter": {"state": "IL"}, "facets": ["role", "shift"]}),
    ];
    for body in vector_searches {
        let mut arguments = body.clone();
        arguments["index"] = json!("workers");
        cases.push((
            "search_vectors",
            arguments,
            "/v1/vectors/index/workers/search".into(),
            body,
        ));
    }
    for body in [
        json!({"role": "Welder", "facets": ["city", "shift", "certifications"]}),
        json!({"state": "IL", "status_any": ["active", "placed"], "filter": {"years_experience": {"gte": 3}}}),
        json!({"near": {"city": "Chicago", "state": "IL", "miles": 30}, "facets": ["role"]}),
    ] {
        cases.push((
            "count_workers",
            body.clone(),
            "/v1/matrix/workers/count".into(),
            body,
        ));
    }
    cases.push((
        "query_sql",
        json!({"sql": "SELECT 1 + 1 AS two", "max_rows": 3}),
        "/v1/sql".into(),
        json!({"sql": "SELECT 1 + 1 AS two", "limit": 3}),
    ));
    cases.push((
        "embed_text",
        json!({"texts": ["forklift operator"]}),
        "/v1/embed".into(),
        json!({"texts": ["forklift operator"]}),
    ));
    cases.push((
        "validate_outreach",
        json!({"kind": "sms", "to": "+13125550100", "body": "Hi {name}, a shift?"}),
        "/v1/validate".into(),
        json!({"kind": "sms", "to": "+13125550100", "body": "Hi {name}, a shift?"}),
    ));
    let fill = json!({"kind": "fill", "worker_ids": ["W0000001", "W0000002"],
                      "order": {"role": "Welder", "city": "Joliet", "state": "IL", "count": 2,
                                "dates": {"from": "2026-12-01", "to": "2026-12-30"},
                                "certifications": ["AWS Certified Welder"]}});
    cases.push((
        "validate_outreach",
        fill.clone(),
        "/v1/validate".into(),
        fill,
    ));
    cases.push((
        "ask",
        json!({"question": "who holds a HazMat Endorsement?", "k": 3}),
        "/v1/chat".into(),
        json!({"messages": [{"role": "user", "content": "who holds a HazMat Endorsement?"}],
               "context": {"source": "workers", "k": 3}}),
    ));

    for (tool, arguments, path, body) in cases {
        let response = app.post_json(&path, &body).await;
        let status = response.status();
        let over_http_api: Value = response.json().await.unwrap();
        assert!(
            status.is_success() || tool == "validate_outreach",
            "{tool} {body}: HTTP {status} {over_http_api}"
        );
        let expected = answer_of(tool, &over_http_api);
        let over_mcp = answer_of(tool, &ok(&http_client, tool, arguments.clone()).await);
        let over_stdio = answer_of(tool, &ok(&stdio_client, tool, arguments.clone()).await);
        assert_eq!(
            over_mcp, expected,
            "{tool} {arguments}: /mcp differs from HTTP"
        );
        assert_eq!(
            over_stdio, expected,
            "{tool} {arguments}: stdio differs from HTTP"
        );
    }
    http_client.cancel().await.unwrap();
    stdio_client.cancel().await.unwrap();
}

/// The write tools and the new read tool behave alike through `/mcp` and
/// through stdio (the binary forwarding to the HTTP API), hostile ids
/// included: the same counts, the same codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_tools_answer_alike_over_mcp_and_stdio() {
    let app = spawn_app_with(&[("mcp.read_only", "false")]).await;
    seed(&app, 60).await;
    let http_client = over_http(&app, None).await;
    let stdio_client = over_stdio(&app, &[("LAKEHOUSE__MCP__READ_ONLY", "false")]).await;
    for (door, client, worker) in [
        ("/mcp", &http_client, "W0000003"),
        ("stdio", &stdio_client, "W0000004"),
    ] {
        let changed = ok(
            client,
            "update_worker",
            json!({"worker_id": worker, "metadata": {"status": "placed", "note": null}}),
        )
        .await;
        assert_eq!(
            (changed["matched"].clone(), changed["changed"].clone()),
            (json!(1), json!(1)),
            "{door}"
        );
        let record = json!({"query": "welder", "role": "Welder", "worker_ids": [worker], "score": 0.5, "outcome": "declined"});
        let recorded = ok(client, "record_placement", record).await;
        let withdrawn = ok(
            client,
            "withdraw_recording",
            json!({"recording_id": recorded["recording_id"]}),
        )
        .await;
        assert_eq!(withdrawn["entry_id"], recorded["entry_id"], "{door}");
    }
    let counted = ok(
        &http_client,
        "count_workers",
        json!({"status_any": ["placed"]}),
    )
    .await;
    assert_eq!(counted["count"], 2);
    assert_eq!(
        ok(
            &stdio_client,
            "count_workers",
            json!({"status_any": ["placed"]})
        )
        .await,
        counted
    );
    // Hostile arguments: the same code through both doors.
    let long = "x".repeat(300);
    for (tool, arguments, code) in [
        (
            "update_worker",
            json!({"worker_id": "..", "metadata": {"status": "placed"}}),
            "invalid_id",
        ),
        (
            "update_worker",
            json!({"worker_id": long, "metadata": {"status": "placed"}}),
            "invalid_id",
        ),
        (
            "update_worker",
            json!({"worker_id": "a\nb", "metadata": {"status": "placed"}}),
            "invalid_id",
        ),
        (
            "update_worker",
            json!({"worker_id": "W0000001", "metadata": {"status": "retired"}}),
            "invalid_metadata",
        ),
        (
            "update_worker",
            json!({"worker_id": "W0000001", "metadata": {}}),
            "empty_change",
        ),
        (
            "update_worker",
            json!({"worker_id": "nobody", "metadata": {"status": "placed"}}),
            "item_not_found",
        ),
        (
            "withdraw_recording",
            json!({"recording_id": "."}),
            "invalid_id",
        ),
        (
            "withdraw_recording",
            json!({"recording_id": "pb-nope"}),
            "recording_not_found",
        ),
        (
            "count_workers",
            json!({"facets": ["a", "a"]}),
            "invalid_facets",
        ),
        (
            "count_workers",
            json!({"facets": ["1", "2", "3", "4", "5", "6", "7", "8", "9"]}),
            "invalid_facets",
        ),
        (
            "count_workers",
            json!({"near": {"city": "Atlantis", "state": "ZZ", "miles": 5}}),
            "unknown_city",
        ),
        (
            "count_workers",
            json!({"filter": {"a": {"between": 1}}}),
            "invalid_filter",
        ),
    ] {
        let over_mcp = fails(&http_client, tool, arguments.clone()).await;
        let over_stdio = fails(&stdio_client, tool, arguments.clone()).await;
        assert!(
            over_mcp.starts_with(&format!("{code}: ")),
            "{tool} {arguments}: {over_mcp}"
        );
        assert!(
            over_stdio.starts_with(&format!("{code}: ")),
            "{tool} {arguments} over stdio: {over_stdio}"
        );
    }
    http_client.cancel().await.unwrap();
    stdio_client.cancel().await.unwrap();
}
