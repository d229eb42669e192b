//! The document's bounds are the server's: walks `/openapi.json`, and for
//! every documented bound or pattern of a request body's field, a query
//! parameter or a path parameter, sends one request just inside it (not
//! refused: a 2xx, a 404 or 409 of the state, or one of the operation's
//! `x-runtime-rules` codes) and one just outside it (refused with a 400
//! or 422 whose code the operation documents). The bounds come from the
//! document, so a bound added to it is tested here without a new line;
//! only the valid request each operation starts from is written below,
//! and an operation with a body but without one fails the test.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{seed_workers, spawn_app_with, TestApp};

/// One valid request per operation that takes a body or parameters.
struct Start {
    method: &'static str,
    path: &'static str,
    /// Path parameters, by name.
    params: &'static [(&'static str, &'static str)],
    query: &'static [(&'static str, &'static str)],
    body: Option<Value>,
}

fn starts(worker: &str) -> Vec<Start> {
    let start = |method, path, params, body: Option<Value>| Start {
        method,
        path,
        params,
        query: &[],
        body,
    };
    const INDEX: &[(&str, &str)] = &[("name", "contract")];
    vec![
        start(
            "post",
            "/v1/vectors/index",
            &[],
            Some(json!({
                "name": "bounds", "dimension": 4, "metric": "cosine",
                "hnsw": {"m": 16, "ef_construction": 64, "ef_search": 32},
            })),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/add",
            INDEX,
            Some(json!({
                "items": [{"id": "b1", "vector": [0.1, 0.2, 0.3, 0.4], "text": "forklift", "metadata": {"k": "v"}}],
            })),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/search",
            INDEX,
            Some(json!({
                "vector": [0.1, 0.2, 0.3, 0.4], "k": 3, "ef_search": 32, "exclude_ids": ["c9"],
                "facets": ["k"],
            })),
        ),
        start(
            "patch",
            "/v1/vectors/index/{name}/items/{id}",
            &[("name", "contract"), ("id", "c1")],
            Some(json!({"metadata": {"k": "v"}, "vector": [0.4, 0.3, 0.2, 0.1]})),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/items/update",
            INDEX,
            Some(json!({"ids": ["c1"], "set": {"k": "w"}})),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/items/delete",
            INDEX,
            Some(json!({"ids": ["gone"]})),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/items/scroll",
            INDEX,
            Some(json!({"limit": 10, "filter": {"k": "w"}, "with_vectors": true})),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/count",
            INDEX,
            Some(json!({"filter": {"k": "w"}})),
        ),
        start(
            "post",
            "/v1/vectors/index/{name}/search",
            INDEX,
            Some(json!({
                "text": "forklift", "k": 3, "mode": "hybrid", "keyword_weight": 0.5,
            })),
        ),
        start("get", "/v1/vectors/index/{name}", INDEX, None),
        start(
            "get",
            "/v1/vectors/index/{name}/items/{id}",
            &[("name", "contract"), ("id", "c1")],
            None,
        ),
        start("post", "/v1/admin/indexes/{name}/restart", INDEX, None),
        start(
            "post",
            "/v1/matrix/search",
            &[],
            Some(json!({
                "query": "forklift operator", "k": 5, "min_years": 1, "max_rate": 30.0,
                "skills_all": ["forklift"], "certifications_any": ["OSHA 10"],
                "available_by": "2026-12-07", "keyword_weight": 0.5, "exclude_ids": ["x"],
            })),
        ),
        start(
            "delete",
            "/v1/matrix/playbooks/recordings/{id}",
            &[("id", "not-a-recording")],
            None,
        ),
        start("get", "/v1/vectors/index/{name}/export", INDEX, None),
        start(
            "patch",
            "/v1/matrix/workers/{id}",
            &[("id", "W0000001")],
            Some(json!({"metadata": {"status": "active"}})),
        ),
        start(
            "post",
            "/v1/matrix/workers/count",
            &[],
            Some(json!({"role": "Forklift Operator", "facets": ["city"]})),
        ),
        start(
            "post",
            "/v1/matrix/playbooks/record",
            &[],
            Some(json!({
                "query": "forklift operator", "role": "Forklift Operator", "worker_ids": [worker], "score": 0.5, "outcome": "placed",
            })),
        ),
        start(
            "post",
            "/v1/chat",
            &[],
            Some(json!({
                "messages": [{"role": "user", "content": "who drives forklifts?"}],
                "model": "any", "context": {"source": "workers", "k": 3, "query": "forklift"},
            })),
        ),
        start(
            "post",
            "/v1/replay",
            &[],
            Some(json!({"query": "forklift", "k": 3, "model": "any"})),
        ),
        start(
            "post",
            "/v1/replay/{run_id}/rerun",
            &[("run_id", "0123456789abcdef0123456789abcdef")],
            None,
        ),
        start(
            "post",
            "/v1/sql",
            &[],
            Some(json!({"sql": "SELECT 1", "limit": 10})),
        ),
        start(
            "post",
            "/v1/embed",
            &[],
            Some(json!({"texts": ["forklift"]})),
        ),
        start(
            "post",
            "/v1/validate",
            &[],
            Some(json!({"kind": "sms", "to": "+15555550100", "body": "Shift at 7?"})),
        ),
        start(
            "post",
            "/v1/validate",
            &[],
            Some(json!({
                "kind": "fill", "order": {"role": "Forklift Operator", "city": "Joliet", "state": "IL", "count": 1},
                "worker_ids": [worker],
            })),
        ),
        start(
            "post",
            "/v1/admin/faults",
            &[],
            Some(json!({"actor": "nobody", "fault": "delay", "delay_ms": 1})),
        ),
        start(
            "get",
            "/v1/catalog/datasets/{name}",
            &[("name", "contract_ds")],
            None,
        ),
        start(
            "post",
            "/v1/ingest/{dataset}",
            &[("dataset", "contract_ds")],
            None,
        ),
        start(
            "get",
            "/v1/storage/objects/{key}",
            &[("key", "contract/hello.txt")],
            None,
        ),
        start(
            "put",
            "/v1/storage/objects/{key}",
            &[("key", "contract/hello.txt")],
            None,
        ),
        Start {
            query: &[("prefix", "contract/")],
            ..start("get", "/v1/storage/objects", &[], None)
        },
        Start {
            query: &[("since", "1")],
            ..start("get", "/v1/supervision/events", &[], None)
        },
        start("get", "/console/{file}", &[("file", "app.js")], None),
    ]
}

/// A request: the start with one value replaced.
#[derive(Clone)]
struct Request {
    method: Method,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

enum Place {
    Body(String),
    Path(String),
    Query(String),
}

/// One bound: where, what it is, the value just inside and just outside.
struct Bound {
    place: Place,
    rule: String,
    inside: Option<Value>,
    outside: Option<Value>,
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(target) => resolve(document, document.pointer(&target[1..]).expect("resolves")),
        None => schema,
    }
}

/// The schema of `value` among `oneOf`/`anyOf` alternatives (an optional
/// field is `oneOf [null, T]`).
fn branch<'a>(document: &'a Value, schema: &'a Value, value: &Value) -> &'a Value {
    let schema = resolve(document, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options.iter().map(|o| resolve(document, o)).find(|o| {
                let kind = &o["type"];
                !(value.is_null() || *kind == "null")
                    && (o.get("properties").is_some() || !kind.is_null() || o.get("enum").is_some())
            });
            if let Some(option) = fits {
                return option;
            }
        }
    }
    schema
}

/// ECMA 262 to the regex crate: `\u` and four hex digits → `\x{…}`, and lookaheads
/// dropped (they only narrow: a value outside the rest is outside).
fn loose_regex(pattern: &str) -> regex::Regex {
    let mut text = regex::Regex::new(r"\\u([0-9a-fA-F]{4})")
        .unwrap()
        .replace_all(pattern, r"\x{$1}")
        .to_string();
    while let Some(start) = text.find("(?!") {
        let mut depth = 0;
        let mut end = start;
        for (i, c) in text[start..].char_indices() {
            match c {
                '(' if !text[..start + i].ends_with('\\') => depth += 1,
                ')' if !text[..start + i].ends_with('\\') => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        text.replace_range(start..end, "");
    }
    regex::Regex::new(&text).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

/// The bounds of one schema, for a value that is inside all of them.
fn bounds_of(schema: &Value, value: &Value, place: impl Fn() -> Place, out: &mut Vec<Bound>) {
    let mut add = |rule: String, inside: Option<Value>, outside: Option<Value>| {
        out.push(Bound {
            place: place(),
            rule,
            inside,
            outside,
        })
    };
    if let Some(text) = value.as_str() {
        let patterns: Vec<&str> = std::iter::once(&schema["pattern"])
            .chain(
                schema["allOf"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| &s["pattern"]),
            )
            .filter_map(Value::as_str)
            .collect();
        let fits = |candidate: &str| patterns.iter().all(|p| loose_regex(p).is_match(candidate));
        if let Some(max) = schema["maxLength"].as_u64() {
            let max = max as usize;
            // Characters, not bytes: a two-byte letter where the pattern
            // allows it; else the start's own letter; else (a key) folders.
            let candidates = [
                "é".repeat(max),
                grow(text, max),
                grow(&format!("{}/", "c".repeat(99)), max),
            ];
            let long = candidates
                .iter()
                .find(|c| fits(c))
                .cloned()
                .unwrap_or_else(|| grow(text, max));
            let over = format!("{long}{}", long.chars().last().unwrap_or('a'));
            add(
                format!("maxLength {max}"),
                Some(json!(long)),
                Some(json!(over)),
            );
        }
        if let Some(min) = schema["minLength"].as_u64().filter(|m| *m > 0) {
            let short: String = text.chars().take(min as usize - 1).collect();
            add(
                format!("minLength {min}"),
                Some(json!(grow(text, min as usize))),
                Some(json!(short)),
            );
        }
        for pattern in &patterns {
            let regex = loose_regex(pattern);
            let outside = ["\u{7}", " ", "!", "A", "é", "/", "%", "\\"]
                .iter()
                .flat_map(|c| {
                    [
                        format!("{text}{c}"),
                        format!("{c}{text}"),
                        c.to_string(),
                        format!("{c}{c}{c}"),
                    ]
                })
                .find(|candidate| !regex.is_match(candidate));
            add(
                format!("pattern {pattern}"),
                Some(json!(text)),
                outside.map(|o| json!(o)),
            );
        }
        if let Some(options) = schema["enum"].as_array() {
            let outside = format!("{text}-not-one-of-them");
            assert!(!options.contains(&json!(outside)));
            add("enum".into(), Some(json!(text)), Some(json!(outside)));
        }
    }
    if value.is_number() {
        let integer = schema["type"] == "integer"
            || schema["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("integer")));
        let step = |at: f64| {
            if integer {
                1.0
            } else {
                at.abs().max(1.0) * 1e-6
            }
        };
        let number = |x: f64| {
            if integer && x.abs() < 9.0e15 {
                json!(x as i64)
            } else {
                json!(x)
            }
        };
        if let Some(max) = schema["maximum"].as_f64() {
            let over = if integer && schema["maximum"].as_u64().is_some() {
                // Past 2^53 a float cannot say max + 1: write it as an integer.
                json!(schema["maximum"].as_u64().unwrap() as u128 + 1)
            } else {
                number(max + step(max))
            };
            let inside = schema["maximum"]
                .as_u64()
                .map(|m| json!(m))
                .unwrap_or(number(max));
            add(format!("maximum {max}"), Some(inside), Some(over));
        }
        if let Some(min) = schema["minimum"].as_f64() {
            add(
                format!("minimum {min}"),
                Some(number(min)),
                Some(number(min - step(min))),
            );
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema["maxItems"].as_u64() {
            let many: Vec<Value> = (0..max as usize).map(|i| distinct(&items[0], i)).collect();
            let mut over = many.clone();
            over.push(distinct(&items[0], max as usize));
            add(
                format!("maxItems {max}"),
                Some(json!(many)),
                Some(json!(over)),
            );
        }
        if let Some(min) = schema["minItems"].as_u64().filter(|m| *m > 0) {
            let few: Vec<Value> = items.iter().take(min as usize - 1).cloned().collect();
            add(
                format!("minItems {min}"),
                Some(json!(items[..min as usize])),
                Some(json!(few)),
            );
        }
    }
}

/// `text` grown (or cut) to `length` characters, by repeating it.
fn grow(text: &str, length: usize) -> String {
    let text = if text.is_empty() { "a" } else { text };
    text.chars().cycle().take(length).collect()
}

/// The `n`th of many copies of an array's first element, unique where an
/// array needs its elements unique (ids, worker ids).
fn distinct(first: &Value, n: usize) -> Value {
    match first {
        Value::String(text) if n > 0 => json!(format!("{text}{n}")),
        Value::Object(object) if object.contains_key("id") => {
            let mut object = object.clone();
            object.insert(
                "id".into(),
                json!(format!("{}-{n}", object["id"].as_str().unwrap())),
            );
            Value::Object(object)
        }
        other => other.clone(),
    }
}

/// Every bound under a body value, walking the schema beside it.
fn body_bounds(
    document: &Value,
    schema: &Value,
    value: &Value,
    pointer: &str,
    out: &mut Vec<Bound>,
) {
    let schema = branch(document, schema, value);
    bounds_of(schema, value, || Place::Body(pointer.to_string()), out);
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                if let Some(property) = schema["properties"].get(key) {
                    body_bounds(document, property, inner, &format!("{pointer}/{key}"), out);
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(item) = schema.get("items") {
                body_bounds(document, item, &items[0], &format!("{pointer}/0"), out);
            }
        }
        _ => {}
    }
}

fn with(request: &Request, place: &Place, value: &Value) -> Request {
    let mut request = request.clone();
    let text = || {
        value
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string())
    };
    match place {
        Place::Body(pointer) => {
            *request.body.as_mut().unwrap().pointer_mut(pointer).unwrap() = value.clone()
        }
        Place::Path(name) => request
            .params
            .iter_mut()
            .filter(|(n, _)| n == name)
            .for_each(|p| p.1 = text()),
        Place::Query(name) => request
            .query
            .iter_mut()
            .filter(|(n, _)| n == name)
            .for_each(|p| p.1 = text()),
    }
    request
}

async fn send(app: &TestApp, path: &str, request: &Request) -> (StatusCode, Value) {
    let mut url = path.to_string();
    for (name, value) in &request.params {
        let encoded: String = if name == "key" {
            value
                .split('/')
                .map(|s| urlencoding(s))
                .collect::<Vec<_>>()
                .join("/")
        } else {
            urlencoding(value)
        };
        url = url.replace(&format!("{{{name}}}"), &encoded);
    }
    let mut call = app
        .client
        .request(request.method.clone(), app.url(&url))
        .query(&request.query);
    call = match (&request.body, path) {
        (Some(body), _) => call.json(body),
        (None, "/v1/ingest/{dataset}") => call
            .header("content-type", "text/csv")
            .body("id,name\n1,Ana\n"),
        (None, "/v1/storage/objects/{key}") if request.method == Method::PUT => call.body("hello"),
        (None, _) => call,
    };
    let response = call.send().await.expect("sent");
    let status = response.status();
    if response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"))
    {
        return (status, Value::Null);
    }
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_bound_is_accepted_inside_and_refused_outside() {
    let app = spawn_app_with(&[
        ("vectors.max_batch", "50"),
        ("limits.max_id_list", "50"),
        ("vectors.max_bulk_items", "50"),
    ])
    .await;
    seed_workers(&app, 30, None).await;
    let found: Value = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "forklift", "k": 1, "mode": "semantic"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let worker = found["hits"][0]["worker_id"]
        .as_str()
        .expect("a seeded worker")
        .to_string();
    assert_eq!(
        app.post_json(
            "/v1/vectors/index",
            &json!({"name": "contract", "dimension": 4})
        )
        .await
        .status(),
        201
    );
    let items = json!({"items": [{"id": "c1", "vector": [0.4, 0.3, 0.2, 0.1]}]});
    assert_eq!(
        app.post_json("/v1/vectors/index/contract/add", &items)
            .await
            .status(),
        200
    );
    let csv = app
        .post_raw("/v1/ingest/contract_ds", "text/csv", "id,name\n1,Ana\n")
        .await;
    assert_eq!(csv.status(), 200);
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();

    let starts = starts(&worker);
    // Every operation with a JSON body has a start, so its bounds are walked.
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let json_body = operation
                .pointer("/requestBody/content/application~1json")
                .is_some();
            if json_body && !matches!(path.as_str(), "/v1/ingest/{dataset}") {
                assert!(
                    starts.iter().any(|s| s.method == method && s.path == path),
                    "{method} {path} takes a JSON body: give it a start in tests/api/contract.rs"
                );
            }
        }
    }

    let mut checked = 0;
    let mut failures = Vec::new();
    for start in &starts {
        let operation = &document["paths"][start.path][start.method];
        assert!(
            operation.is_object(),
            "{} {} is in the document",
            start.method,
            start.path
        );
        let request = Request {
            method: Method::from_bytes(start.method.to_uppercase().as_bytes()).unwrap(),
            params: start
                .params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            query: start
                .query
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: start.body.clone(),
        };
        let label = format!("{} {}", start.method.to_uppercase(), start.path);
        let runtime = operation["x-runtime-rules"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let documented = |status: StatusCode, code: &str| {
            operation["responses"][status.as_str()]["description"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("`{code}`")))
        };
        let accepted = |status: StatusCode, body: &Value| {
            status.is_success()
                || status == StatusCode::NOT_FOUND
                || status == StatusCode::CONFLICT
                || runtime.contains_key(body["error"]["code"].as_str().unwrap_or(
                    if body["valid"] == false {
                        "valid: false"
                    } else {
                        ""
                    },
                ))
        };
        let (status, body) = send(&app, start.path, &request).await;
        if !accepted(status, &body) {
            failures.push(format!(
                "{label}: the start itself is refused: {status} {body}"
            ));
            continue;
        }

        let mut bounds = Vec::new();
        if let (Some(body), Some(schema)) = (
            &request.body,
            operation.pointer("/requestBody/content/application~1json/schema"),
        ) {
            body_bounds(&document, schema, body, "", &mut bounds);
        }
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap().to_string();
            let schema = branch(&document, &parameter["schema"], &json!(""));
            let (place, value) = match parameter["in"].as_str() {
                Some("path") => (
                    Place::Path(name.clone()),
                    request
                        .params
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|p| p.1.clone()),
                ),
                Some("query") => (
                    Place::Query(name.clone()),
                    request
                        .query
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|p| p.1.clone()),
                ),
                _ => continue,
            };
            let Some(value) = value else { continue };
            let typed = if schema["type"] == "integer"
                || schema["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("integer")))
            {
                json!(value.parse::<u64>().unwrap())
            } else {
                json!(value)
            };
            let place = || match &place {
                Place::Path(n) => Place::Path(n.clone()),
                Place::Query(n) => Place::Query(n.clone()),
                Place::Body(p) => Place::Body(p.clone()),
            };
            bounds_of(schema, &typed, place, &mut bounds);
        }

        for bound in bounds {
            let at = match &bound.place {
                Place::Body(pointer) => format!("body {pointer}"),
                Place::Path(name) => format!("path {name}"),
                Place::Query(name) => format!("query {name}"),
            };
            if let Some(inside) = &bound.inside {
                let (status, body) =
                    send(&app, start.path, &with(&request, &bound.place, inside)).await;
                checked += 1;
                if !accepted(status, &body) {
                    failures.push(format!(
                        "{label} {at} {}: just inside is refused: {status} {body}",
                        bound.rule
                    ));
                }
            }
            // An empty path segment is another route, not this one's parameter.
            let empty_segment =
                matches!(bound.place, Place::Path(_)) && bound.outside == Some(json!(""));
            if let Some(outside) = bound.outside.as_ref().filter(|_| !empty_segment) {
                let (status, body) =
                    send(&app, start.path, &with(&request, &bound.place, outside)).await;
                checked += 1;
                let code = body["error"]["code"].as_str().unwrap_or_default();
                let refused = matches!(
                    status,
                    StatusCode::BAD_REQUEST
                        | StatusCode::UNPROCESSABLE_ENTITY
                        | StatusCode::NOT_FOUND
                ) && documented(status, code);
                if !refused {
                    let shown: String = outside.to_string().chars().take(80).collect();
                    failures.push(format!("{label} {at} {}: just outside ({shown}) is not refused with a documented code: {status} {body}", bound.rule));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked > 60,
        "the walk found the bounds: {checked} requests"
    );
}
