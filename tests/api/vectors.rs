//! `/v1/vectors/index…` through HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, eventually, spawn_app, spawn_app_on, spawn_app_with, TestApp};

fn unit(dimension: usize, axis: usize) -> Vec<f32> {
    let mut v = vec![0.0; dimension];
    v[axis % dimension] = 1.0;
    v
}

async fn create(app: &TestApp, name: &str, dimension: usize) -> reqwest::Response {
    app.post_json(
        "/v1/vectors/index",
        &json!({"name": name, "dimension": dimension}),
    )
    .await
}

async fn add(app: &TestApp, name: &str, items: Value) -> reqwest::Response {
    app.post_json(
        &format!("/v1/vectors/index/{name}/add"),
        &json!({ "items": items }),
    )
    .await
}

async fn search(app: &TestApp, name: &str, body: Value) -> reqwest::Response {
    app.post_json(&format!("/v1/vectors/index/{name}/search"), &body)
        .await
}

/// The ids of a search answer's hits, in order.
fn hit_ids(body: Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

async fn count(app: &TestApp, name: &str) -> u64 {
    let info: Value = app
        .get(&format!("/v1/vectors/index/{name}"))
        .await
        .json()
        .await
        .unwrap();
    info["count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_add_search_get_and_delete_items() {
    let app = spawn_app().await;
    let response = create(&app, "people", 4).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let definition: Value = response.json().await.unwrap();
    assert_eq!(definition["metric"], "cosine");
    assert!(definition["hnsw"]["m"].as_u64().is_some());

    let response = add(
        &app,
        "people",
        json!([
            {"id": "a", "vector": unit(4, 0), "metadata": {"role": "welder"}},
            {"id": "b", "vector": unit(4, 1), "metadata": {"role": "cook"}},
        ]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"inserted": 2, "updated": 0})
    );
    let again = add(&app, "people", json!([{"id": "a", "vector": unit(4, 2)}])).await;
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"inserted": 0, "updated": 1})
    );

    let hits: Value = search(&app, "people", json!({"vector": unit(4, 2), "k": 2}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["hits"][0]["id"], "a");
    assert!(hits["hits"][0]["distance"].as_f64().unwrap().abs() < 1e-5);
    let filtered: Value = search(
        &app,
        "people",
        json!({"vector": unit(4, 2), "k": 2, "filter": {"role": "cook"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(filtered["hits"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["hits"][0]["id"], "b");

    let item: Value = app
        .get("/v1/vectors/index/people/items/b")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item["metadata"], json!({"role": "cook"}));
    let deleted = app
        .client
        .delete(app.url("/v1/vectors/index/people/items/b"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_error(
        app.get("/v1/vectors/index/people/items/b").await,
        StatusCode::NOT_FOUND,
        "item_not_found",
    )
    .await;
    assert_eq!(count(&app, "people").await, 1);

    let list: Value = app.get("/v1/vectors/index").await.json().await.unwrap();
    assert_eq!(list["indexes"][0]["name"], "people");
    assert_eq!(list["indexes"][0]["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_items_and_queries_go_through_the_embedder() {
    let app = spawn_app().await;
    assert_eq!(
        create(&app, "texts", 256).await.status(),
        StatusCode::CREATED
    );
    let response = add(
        &app,
        "texts",
        json!([
            {"id": "fork", "text": "forklift operator with OSHA certification"},
            {"id": "cook", "text": "line cook for a busy breakfast diner"},
        ]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let hits: Value = search(
        &app,
        "texts",
        json!({"text": "certified forklift operators", "k": 1}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(hits["hits"][0]["id"], "fork");

    // The embedder's dimension must match the index's.
    assert_eq!(create(&app, "small", 8).await.status(), StatusCode::CREATED);
    let body = assert_error(
        add(&app, "small", json!([{"id": "x", "text": "hello"}])).await,
        StatusCode::BAD_REQUEST,
        "dimension_mismatch",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expected dimension 8, got 256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_requests_are_validated() {
    let app = spawn_app().await;
    assert_eq!(create(&app, "v", 3).await.status(), StatusCode::CREATED);
    assert_error(
        create(&app, "v", 3).await,
        StatusCode::CONFLICT,
        "index_exists",
    )
    .await;
    assert_error(
        create(&app, "Bad Name", 3).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    assert_error(
        create(&app, "../etc", 3).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    assert_error(
        create(&app, "zero", 0).await,
        StatusCode::BAD_REQUEST,
        "invalid_dimension",
    )
    .await;
    assert_error(
        create(&app, "huge", 4097).await,
        StatusCode::BAD_REQUEST,
        "invalid_dimension",
    )
    .await;
    let bad_hnsw = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "h", "dimension": 3, "hnsw": {"m": 1}}),
        )
        .await;
    assert_error(bad_hnsw, StatusCode::BAD_REQUEST, "invalid_hnsw").await;

    add(
        &app,
        "v",
        json!([{"id": "keep", "vector": [1.0, 0.0, 0.0]}]),
    )
    .await;
    let cases = [
        (
            json!([{"id": "x", "vector": [1.0, 0.0]}]),
            StatusCode::BAD_REQUEST,
            "dimension_mismatch",
        ),
        (
            json!([{"id": "x", "vector": [1e39, 0.0, 0.0]}]),
            StatusCode::BAD_REQUEST,
            "invalid_vector",
        ),
        (
            json!([{"id": "", "vector": [1.0, 0.0, 0.0]}]),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            json!([{"id": "x".repeat(257), "vector": [1.0, 0.0, 0.0]}]),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            json!([{"id": "d", "vector": [1.0, 0.0, 0.0]}, {"id": "d", "vector": [0.0, 1.0, 0.0]}]),
            StatusCode::BAD_REQUEST,
            "duplicate_id",
        ),
        (
            json!([{"id": "m", "vector": [1.0, 0.0, 0.0], "metadata": [1, 2]}]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
        ),
        (
            json!([{"id": "m", "vector": [1.0, 0.0, 0.0], "metadata": {"blob": "x".repeat(20_000)}}]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
        ),
        (
            json!([{"id": "n"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "vector_or_text",
        ),
        (json!([]), StatusCode::UNPROCESSABLE_ENTITY, "empty_batch"),
        // A later bad item rejects the whole batch: the good first one is not written.
        (
            json!([{"id": "good", "vector": [0.0, 1.0, 0.0]}, {"id": "bad", "vector": [1.0]}]),
            StatusCode::BAD_REQUEST,
            "dimension_mismatch",
        ),
    ];
    for (items, status, code) in cases {
        let body = assert_error(add(&app, "v", items.clone()).await, status, code).await;
        if code == "dimension_mismatch" {
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("expected dimension 3"), "{message}");
        }
    }
    assert_eq!(
        count(&app, "v").await,
        1,
        "rejected batches leave the index unchanged"
    );
    assert_error(
        app.get("/v1/vectors/index/v/items/good").await,
        StatusCode::NOT_FOUND,
        "item_not_found",
    )
    .await;

    for k in [0, 1001] {
        let response = search(&app, "v", json!({"vector": [1.0, 0.0, 0.0], "k": k})).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_k").await;
    }
    let response = search(&app, "v", json!({"vector": [1.0, 0.0], "k": 1})).await;
    assert_error(response, StatusCode::BAD_REQUEST, "dimension_mismatch").await;
    let response = search(
        &app,
        "v",
        json!({"vector": [1.0, 0.0, 0.0], "k": 1, "filter": {"a": [1]}}),
    )
    .await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter").await;

    assert_error(
        app.get("/v1/vectors/index/nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    )
    .await;
    let response = search(&app, "nope", json!({"vector": [1.0], "k": 1})).await;
    assert_error(response, StatusCode::NOT_FOUND, "index_not_found").await;
    let response = add(&app, "nope", json!([{"id": "x", "vector": [1.0]}])).await;
    assert_error(response, StatusCode::NOT_FOUND, "index_not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_are_refused() {
    let app = spawn_app_with(&[("vectors.max_batch", "5")]).await;
    create(&app, "b", 2).await;
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("i{i}"), "vector": [1.0, 0.5]}))
        .collect();
    assert_error(
        add(&app, "b", json!(items)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "batch_too_large",
    )
    .await;
    assert_eq!(count(&app, "b").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_then_create_again_starts_empty() {
    let app = spawn_app().await;
    create(&app, "cycle", 2).await;
    add(&app, "cycle", json!([{"id": "x", "vector": [1.0, 0.0]}])).await;
    let dropped = app
        .client
        .delete(app.url("/v1/vectors/index/cycle"))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::OK);
    assert!(
        !app.data_dir.join("vectors/cycle.lance").exists(),
        "the data is removed"
    );
    assert_error(
        app.get("/v1/vectors/index/cycle").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    )
    .await;
    let again = app
        .client
        .delete(app.url("/v1/vectors/index/cycle"))
        .send()
        .await
        .unwrap();
    assert_error(again, StatusCode::NOT_FOUND, "index_not_found").await;

    assert_eq!(create(&app, "cycle", 3).await.status(), StatusCode::CREATED);
    assert_eq!(count(&app, "cycle").await, 0);
    let response = add(
        &app,
        "cycle",
        json!([{"id": "y", "vector": [0.0, 0.0, 1.0]}]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_index_heals_and_a_process_restart_keeps_everything() {
    let app = spawn_app().await;
    create(&app, "durable", 2).await;
    for i in 0..20 {
        // A write that meets the restart gets 503 and is retried, as a client would.
        let item = json!([{"id": format!("i{i}"), "vector": [1.0, i as f32]}]);
        eventually("write acknowledged", Duration::from_secs(5), || async {
            let response = add(&app, "durable", item.clone()).await;
            assert!(
                response.status() == StatusCode::OK
                    || response.status() == StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                response.status()
            );
            response.status() == StatusCode::OK
        })
        .await;
        if i == 10 {
            let fault = app.inject_fault("index:durable", "panic").await;
            assert_eq!(fault.status(), StatusCode::ACCEPTED);
        }
    }
    eventually(
        "index restarted and serving",
        Duration::from_secs(5),
        || async {
            let info = app.get("/v1/vectors/index/durable").await;
            if info.status() != StatusCode::OK {
                return false;
            }
            let info: Value = info.json().await.unwrap();
            let node = app.node("index:durable").await.unwrap_or_default();
            info["restarts"].as_u64() >= Some(1)
                && info["count"] == 20
                && node["status"] == "running"
        },
    )
    .await;

    let (dir, guard) = app.shutdown().await;
    let app = spawn_app_on(dir, &[]).await;
    assert_eq!(count(&app, "durable").await, 20);
    let hits: Value = search(&app, "durable", json!({"vector": [1.0, 19.0], "k": 1}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["hits"][0]["id"], "i19");
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_language_works_through_http_and_names_bad_paths() {
    let app = spawn_app().await;
    assert_eq!(create(&app, "crew", 3).await.status(), StatusCode::CREATED);
    let items = json!({"items": [
        {"id": "ana", "vector": [1.0, 0.0, 0.0], "metadata": {"years": 5, "rate": 22.0, "certs": ["CDL-A", "OSHA 10"], "available": "2026-12-03T00:00:00Z"}},
        {"id": "ben", "vector": [0.9, 0.1, 0.0], "metadata": {"years": 1, "rate": 19.0, "certs": ["CDL-A"], "available": "2026-12-02T00:00:00Z"}},
        {"id": "cy", "vector": [0.8, 0.2, 0.0], "metadata": {"years": 7, "rate": 26.0, "certs": ["OSHA 30"], "available": "2026-12-20T00:00:00Z"}},
        {"id": "dee", "vector": [0.7, 0.3, 0.0], "metadata": {"years": 4, "rate": 23.5, "certs": ["CDL-A"], "available": "2026-12-05T00:00:00Z"}},
    ]});
    let response = app.post_json("/v1/vectors/index/crew/add", &items).await;
    assert_eq!(response.status(), StatusCode::OK);
    let ids = hit_ids;
    // CDL-A drivers with 3+ years under $24/h available by the 7th.
    let filter = json!({"and": [
        {"certs": {"contains": "CDL-A"}},
        {"years": {"gte": 3}, "rate": {"lt": 24}},
        {"available": {"lte": "2026-12-07T00:00:00Z"}},
    ]});
    let response = search(
        &app,
        "crew",
        json!({"vector": [1.0, 0.0, 0.0], "k": 10, "filter": filter}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(ids(response.json().await.unwrap()), ["ana", "dee"]);
    let filter = json!({"or": [{"years": {"gt": 6}}, {"not": {"certs": {"contains_any": ["CDL-A", "OSHA 30"]}}}]});
    let response = search(
        &app,
        "crew",
        json!({"vector": [1.0, 0.0, 0.0], "k": 10, "filter": filter}),
    )
    .await;
    assert_eq!(ids(response.json().await.unwrap()), ["cy"]);

    let response = search(
        &app,
        "crew",
        json!({"vector": [1.0, 0.0, 0.0], "k": 1, "filter": {"and": [{"rate": {"under": 24}}]}}),
    )
    .await;
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("filter.and[0].rate.under"), "{message}");

    // Equalities nested in `and` count toward limits.max_filter_fields (16).
    let many: Vec<Value> = (0..17).map(|i| json!({ format!("f{i}"): 1 })).collect();
    let response = search(
        &app,
        "crew",
        json!({"vector": [1.0, 0.0, 0.0], "k": 1, "filter": {"and": many}}),
    )
    .await;
    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_filter_fields",
    )
    .await;
}

/// A deterministic unit vector (xorshift), for corpora with no structure.
fn random_unit(state: &mut u64, dimension: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dimension)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// The exact 10 nearest ids (cosine) among `live`.
fn exact_top10(vectors: &[Vec<f32>], live: &[bool], q: &[f32]) -> Vec<String> {
    let mut scored: Vec<(usize, f32)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| live[*i])
        .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored[..10].iter().map(|(i, _)| format!("v{i}")).collect()
}

/// Searches over HTTP read the index directly (no mailbox), with no faiss
/// selector while every graph node is live and with one once items are
/// deleted or excluded: recall@10 ≥ 0.95 against exact search on 10,000
/// vectors either way, and deleted or excluded items never come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_search_recall_on_10000_vectors_with_and_without_tombstones() {
    let app = spawn_app().await;
    let dimension = 64;
    let created = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "recall", "dimension": dimension,
                "hnsw": {"m": 32, "ef_construction": 128, "ef_search": 128}}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let vectors: Vec<Vec<f32>> = (0..10_000)
        .map(|_| random_unit(&mut state, dimension))
        .collect();
    for (chunk, batch) in vectors.chunks(1000).enumerate() {
        let items: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": format!("v{}", chunk * 1000 + i), "vector": v}))
            .collect();
        assert_eq!(
            add(&app, "recall", json!(items)).await.status(),
            StatusCode::OK
        );
    }
    let mut live = vec![true; vectors.len()];
    let queries: Vec<Vec<f32>> = (0..50)
        .map(|_| random_unit(&mut state, dimension))
        .collect();
    let recall = |found: &[Vec<String>], truth: &[Vec<String>]| {
        let hits: usize = found
            .iter()
            .zip(truth)
            .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
            .sum();
        hits as f64 / (truth.len() * 10) as f64
    };
    let ids = hit_ids;

    // Every graph node live: no selector.
    let mut found = Vec::new();
    for q in &queries {
        let response = search(&app, "recall", json!({"vector": q, "k": 10})).await;
        assert_eq!(response.status(), StatusCode::OK);
        found.push(ids(response.json().await.unwrap()));
    }
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| exact_top10(&vectors, &live, q))
        .collect();
    let all_live = recall(&found, &truth);
    assert!(all_live >= 0.95, "recall@10 = {all_live}");

    // Each query's current top hit deleted: tombstones, so a selector.
    for top in found.iter().map(|f| f[0].clone()) {
        let index: usize = top[1..].parse().unwrap();
        if live[index] {
            let deleted = app
                .send(
                    reqwest::Method::DELETE,
                    &format!("/v1/vectors/index/recall/items/{top}"),
                    None,
                    None,
                )
                .await;
            assert_eq!(deleted.status(), StatusCode::OK);
            live[index] = false;
        }
    }
    let mut after = Vec::new();
    for q in &queries {
        let response = search(&app, "recall", json!({"vector": q, "k": 10})).await;
        let hits = ids(response.json().await.unwrap());
        for id in &hits {
            assert!(
                live[id[1..].parse::<usize>().unwrap()],
                "deleted {id} came back"
            );
        }
        after.push(hits);
    }
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| exact_top10(&vectors, &live, q))
        .collect();
    let with_tombstones = recall(&after, &truth);
    assert!(with_tombstones >= 0.95, "recall@10 = {with_tombstones}");

    // Excluded ids never come back either.
    let excluded: Vec<String> = after[0][..3].to_vec();
    let response = search(
        &app,
        "recall",
        json!({"vector": queries[0], "k": 10, "exclude_ids": excluded}),
    )
    .await;
    let hits = ids(response.json().await.unwrap());
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|id| !excluded.contains(id)));
}

/// An index's `kind` and `storage` are fixed at creation: the default
/// comes from `vectors.storage`, a request may choose its own, and both
/// survive an index restart (its snapshot) and a process restart (its
/// definition), with the same answers before and after. A kind or
/// storage that does not exist is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_and_kind_are_fixed_at_creation_and_survive_restarts() {
    let app = spawn_app_with(&[("vectors.storage", "fp16")]).await;
    let created = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "dimension": 8});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (name, extra) in [
        ("half", json!({})),
        ("full", json!({"storage": "f32"})),
        ("flat", json!({"kind": "flat", "storage": "f32"})),
        ("flathalf", json!({"kind": "flat"})),
    ] {
        let response = app
            .post_json("/v1/vectors/index", &created(name, extra))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }
    for bad in [json!({"storage": "fp8"}), json!({"kind": "ivf"})] {
        let response = app
            .post_json("/v1/vectors/index", &created("bad", bad))
            .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    let expected = [
        ("half", "hnsw", "fp16"),
        ("full", "hnsw", "f32"),
        ("flat", "flat", "f32"),
        ("flathalf", "flat", "fp16"),
    ];
    // 200 distinct directions.
    let vector =
        |i: usize| -> Vec<f32> { (0..8).map(|j| ((i * 8 + j) as f32 * 0.7).sin()).collect() };
    let mut answers = Vec::new();
    for (name, _, _) in expected {
        let items: Vec<Value> = (0..200)
            .map(|i| json!({"id": format!("i{i}"), "vector": vector(i)}))
            .collect();
        assert_eq!(add(&app, name, json!(items)).await.status(), StatusCode::OK);
        let body: Value = search(&app, name, json!({"vector": vector(3), "k": 5}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(hit_ids(body.clone())[0], "i3", "{name}");
        answers.push(body["hits"].clone());
    }
    let check = |app: &TestApp, answers: &[Value]| {
        let answers = answers.to_vec();
        let app_url = app.url("/");
        async move {
            let client = reqwest::Client::new();
            for ((name, kind, storage), before) in expected.iter().zip(&answers) {
                let base = app_url.trim_end_matches('/');
                let info: Value = client
                    .get(format!("{base}/v1/vectors/index/{name}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(info["kind"], *kind, "{name}");
                assert_eq!(info["storage"], *storage, "{name}");
                assert_eq!(info["count"], 200, "{name}");
                let body: Value = client
                    .post(format!("{base}/v1/vectors/index/{name}/search"))
                    .json(&json!({"vector": vector(3), "k": 5}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(&body["hits"], before, "{name}: the same answer");
            }
        }
    };
    check(&app, &answers).await;
    // An index restart reloads from its snapshot (or Lance).
    for (name, _, _) in expected {
        let response = app
            .post_json(&format!("/v1/admin/indexes/{name}/restart"), &json!({}))
            .await;
        assert!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
    }
    eventually("indexes restarted", Duration::from_secs(10), || async {
        for (name, _, _) in expected {
            if app.get(&format!("/v1/vectors/index/{name}")).await.status() != StatusCode::OK {
                return false;
            }
        }
        true
    })
    .await;
    check(&app, &answers).await;
    // A process restart with another default keeps each index's own.
    let (dir, guard) = app.shutdown().await;
    let app = spawn_app_on(dir, &[("vectors.storage", "f32")]).await;
    check(&app, &answers).await;
    drop(guard);
}
