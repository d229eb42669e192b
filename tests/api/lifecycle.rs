//! Data that changes day to day, through HTTP: one item patched, items
//! updated and deleted by ids or by filter, counted and faceted; a
//! worker's status set and searches leaving it out.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_on, spawn_app_with, TestApp};

async fn create(app: &TestApp, name: &str, dimension: usize) {
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": name, "dimension": dimension}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn patch(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.send(Method::PATCH, path, None, Some(&body)).await
}

async fn get_item(app: &TestApp, index: &str, id: &str) -> Value {
    let response = app
        .get(&format!("/v1/vectors/index/{index}/items/{id}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn keyword_ids(app: &TestApp, index: &str, text: &str) -> Vec<String> {
    let body = ok(app
        .post_json(
            &format!("/v1/vectors/index/{index}/search"),
            &json!({"text": text, "k": 10, "mode": "keyword"}),
        )
        .await)
    .await;
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

/// Items of a 4-d index: `n` of them, group `g{i % 3}`, each with a text.
fn crew(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut vector = vec![0.1_f32; 4];
            vector[i % 4] = 1.0 + i as f32 / 100.0;
            json!({"id": format!("m{i}"), "vector": vector, "text": format!("crew member {i} forklift"),
                   "metadata": {"group": format!("g{}", i % 3), "n": i, "tags": ["a", format!("t{}", i % 2)]}})
        })
        .collect()
}

/// A patch sets and removes fields and keeps the vector bit for bit and
/// the text (a keyword search still finds it); a new text is embedded
/// and searchable; both survive a restart. The answer cites the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_changes_what_it_names_and_keeps_the_rest_through_a_restart() {
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(6)).await;
    let before = get_item(&app, "crew", "m1").await;

    let answer = ok(patch(
        &app,
        "/v1/vectors/index/crew/items/m1",
        json!({"metadata": {"group": "g9", "n": null, "shift": "night"}}),
    )
    .await)
    .await;
    assert_eq!(
        (answer["matched"].clone(), answer["changed"].clone()),
        (json!(1), json!(1))
    );
    assert!(answer["lance_version"].as_u64().unwrap() > 0, "{answer}");
    let after = get_item(&app, "crew", "m1").await;
    assert_eq!(after["vector"], before["vector"], "not embedded again");
    assert_eq!(
        after["metadata"],
        json!({"group": "g9", "shift": "night", "tags": ["a", "t1"]})
    );
    assert!(keyword_ids(&app, "crew", "member 1")
        .await
        .contains(&"m1".to_string()));

    // The same patch again changes nothing, and says so.
    let again = ok(patch(
        &app,
        "/v1/vectors/index/crew/items/m1",
        json!({"metadata": {"group": "g9"}}),
    )
    .await)
    .await;
    assert_eq!(again["changed"], 0, "{again}");

    // A new text (this index's vectors were given, so with a vector).
    ok(patch(
        &app,
        "/v1/vectors/index/crew/items/m2",
        json!({"text": "welder night crew", "vector": [0.0, 0.0, 0.0, 1.0]}),
    )
    .await)
    .await;
    assert!(keyword_ids(&app, "crew", "welder").await == ["m2"]);

    let (data, guard) = app.shutdown().await;
    let app = spawn_app_on(data, &[]).await;
    let _guard = guard;
    let restarted = get_item(&app, "crew", "m1").await;
    assert_eq!(restarted["metadata"], after["metadata"]);
    assert_eq!(restarted["vector"], before["vector"]);
    assert_eq!(
        get_item(&app, "crew", "m2").await["vector"],
        json!([0.0, 0.0, 0.0, 1.0])
    );
    assert!(keyword_ids(&app, "crew", "welder").await == ["m2"]);
    assert!(keyword_ids(&app, "crew", "member 1")
        .await
        .contains(&"m1".to_string()));
}

/// Refusals of a patch: each with its code, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_refuses_nothing_to_do_unknown_items_and_bad_fields() {
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(2)).await;
    let path = "/v1/vectors/index/crew/items/m0";
    for body in [
        json!({}),
        json!({"metadata": {}}),
        json!({"metadata": null}),
    ] {
        assert_error(
            patch(&app, path, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_change",
        )
        .await;
    }
    assert_error(
        patch(
            &app,
            "/v1/vectors/index/crew/items/nobody",
            json!({"metadata": {"a": 1}}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "item_not_found",
    )
    .await;
    assert_error(
        patch(
            &app,
            "/v1/vectors/index/none/items/m0",
            json!({"metadata": {"a": 1}}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    )
    .await;
    assert_error(
        patch(&app, path, json!({"vector": [1.0, 2.0]})).await,
        StatusCode::BAD_REQUEST,
        "dimension_mismatch",
    )
    .await;
    assert_error(
        patch(
            &app,
            path,
            json!({"metadata": {"location": {"lat": 200, "lon": 0}}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_metadata",
    )
    .await;
    assert_error(
        patch(&app, path, json!({"metadata": {"big": "x".repeat(20_000)}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_metadata",
    )
    .await;
    assert_error(
        patch(&app, path, json!({"text": "  "})).await,
        StatusCode::BAD_REQUEST,
        "invalid_vector",
    )
    .await;
    assert_error(
        patch(&app, path, json!({"metadata": {"a": 1}, "surprise": true})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert_eq!(
        get_item(&app, "crew", "m0").await["metadata"]["group"],
        "g0"
    );
}

/// Updates and deletes by ids and by filter, counts and facets: each
/// answer counts what matched and what changed, and a count afterwards
/// agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_updates_deletes_counts_and_facets_agree() {
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(30)).await;
    let count = |filter: Value| {
        let app = &app;
        async move {
            let body = ok(app
                .post_json("/v1/vectors/index/crew/count", &json!({"filter": filter}))
                .await)
            .await;
            body["count"].as_u64().unwrap()
        }
    };
    assert_eq!(
        ok(app
            .post_json("/v1/vectors/index/crew/count", &json!({}))
            .await)
        .await["count"],
        30
    );
    assert_eq!(count(json!({"group": "g1"})).await, 10);

    let updated = ok(app
        .post_json(
            "/v1/vectors/index/crew/items/update",
            &json!({"filter": {"group": "g1", "n": {"gte": 10}}, "set": {"status": "placed", "tags": null}}),
        )
        .await)
    .await;
    assert_eq!(
        (updated["matched"].clone(), updated["changed"].clone()),
        (json!(7), json!(7)),
        "{updated}"
    );
    assert_eq!(count(json!({"status": "placed"})).await, 7);
    assert_eq!(count(json!({"tags": {"exists": true}})).await, 23);
    // Again: matched, nothing to change.
    let again = ok(app
        .post_json(
            "/v1/vectors/index/crew/items/update",
            &json!({"filter": {"status": "placed"}, "set": {"status": "placed"}}),
        )
        .await)
    .await;
    assert_eq!(
        (again["matched"].clone(), again["changed"].clone()),
        (json!(7), json!(0))
    );

    let by_ids = ok(app
        .post_json(
            "/v1/vectors/index/crew/items/update",
            &json!({"ids": ["m0", "m3", "ghost"], "set": {"status": "active"}}),
        )
        .await)
    .await;
    assert_eq!(
        (by_ids["matched"].clone(), by_ids["changed"].clone()),
        (json!(2), json!(2))
    );

    // Facets count over the whole filtered set, not the k hits.
    let searched = ok(app
        .post_json(
            "/v1/vectors/index/crew/search",
            &json!({"vector": [1, 0, 0, 0], "k": 2, "filter": {"group": {"in": ["g0", "g1"]}},
                    "facets": ["group", "status", "tags"]}),
        )
        .await)
    .await;
    assert_eq!(searched["hits"].as_array().unwrap().len(), 2);
    let facets = &searched["facets"];
    assert_eq!(
        facets["group"],
        json!([{"value": "g0", "count": 10}, {"value": "g1", "count": 10}])
    );
    assert_eq!(
        facets["status"],
        json!([{"value": "placed", "count": 7}, {"value": "active", "count": 2}])
    );
    // A list counts each entry; the 7 placed lost theirs.
    assert_eq!(facets["tags"][0], json!({"value": "a", "count": 13}));

    let deleted = ok(app
        .post_json(
            "/v1/vectors/index/crew/items/delete",
            &json!({"filter": {"status": "placed"}}),
        )
        .await)
    .await;
    assert_eq!(
        (deleted["matched"].clone(), deleted["changed"].clone()),
        (json!(7), json!(7))
    );
    let deleted = ok(app
        .post_json(
            "/v1/vectors/index/crew/items/delete",
            &json!({"ids": ["m0", "m0x"]}),
        )
        .await)
    .await;
    assert_eq!(deleted["changed"], 1);
    assert_eq!(count(json!({"group": {"exists": true}})).await, 22);
    let (data, guard) = app.shutdown().await;
    let app = spawn_app_on(data, &[]).await;
    let _guard = guard;
    let after = ok(app
        .post_json("/v1/vectors/index/crew/count", &json!({}))
        .await)
    .await;
    assert_eq!(after["count"], 22, "durable: {after}");
}

/// What a bulk operation refuses: no selection, both selections, an
/// empty filter, an empty change, more than the bound without asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_operations_refuse_what_has_no_bound() {
    let app = spawn_app_with(&[("vectors.max_bulk_items", "5")]).await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(12)).await;
    let update = "/v1/vectors/index/crew/items/update";
    let delete = "/v1/vectors/index/crew/items/delete";
    for (path, body) in [
        (delete, json!({})),
        (delete, json!({"filter": {}})),
        (delete, json!({"ids": []})),
        (delete, json!({"ids": ["m1"], "filter": {"group": "g1"}})),
        (update, json!({"set": {"a": 1}})),
    ] {
        assert_error(
            app.post_json(path, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_selection",
        )
        .await;
    }
    assert_error(
        app.post_json(update, &json!({"ids": ["m1"], "set": {}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "empty_change",
    )
    .await;
    let body = assert_error(
        app.post_json(delete, &json!({"filter": {"n": {"gte": 0}}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bulk_too_large",
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("12"),
        "{body}"
    );
    let ids: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    assert_error(
        app.post_json(delete, &json!({"ids": ids})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bulk_too_large",
    )
    .await;
    assert_error(
        app.post_json(delete, &json!({"ids": ["m1", "m1"]})).await,
        StatusCode::BAD_REQUEST,
        "duplicate_id",
    )
    .await;
    assert_error(
        app.post_json(
            update,
            &json!({"filter": {"n": {"between": 1}}, "set": {"a": 1}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_filter",
    )
    .await;
    assert_error(
        app.post_json(
            "/v1/vectors/index/crew/search",
            &json!({"vector": [1, 0, 0, 0], "k": 1, "facets": ["a", "a"]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_facets",
    )
    .await;
    assert_eq!(
        ok(app
            .post_json("/v1/vectors/index/crew/count", &json!({}))
            .await)
        .await["count"],
        12,
        "nothing refused was written"
    );
    // Asked for explicitly, a large change runs.
    let large = ok(app
        .post_json(
            update,
            &json!({"filter": {"n": {"gte": 0}}, "set": {"seen": true}, "allow_large": true}),
        )
        .await)
    .await;
    assert_eq!(
        (large["matched"].clone(), large["changed"].clone()),
        (json!(12), json!(12))
    );
}

/// A worker's status: typed on write, and searches and counts leave
/// `on_assignment` and `do_not_use` out unless asked, and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_status_changes_what_searches_offer() {
    let app = spawn_app().await;
    crate::helpers::seed_workers(&app, 200, None).await;
    let search = json!({"query": "forklift operator", "k": 5, "role": "Forklift Operator", "mode": "semantic"});
    let found = ok(app.post_json("/v1/matrix/search", &search).await).await;
    assert_eq!(
        found["excluded_statuses"],
        json!(["on_assignment", "do_not_use"])
    );
    let first = found["hits"][0]["worker_id"].as_str().unwrap().to_string();
    let counted = ok(app
        .post_json(
            "/v1/matrix/workers/count",
            &json!({"role": "Forklift Operator"}),
        )
        .await)
    .await;
    let before = counted["count"].as_u64().unwrap();

    assert_error(
        patch(
            &app,
            &format!("/v1/matrix/workers/{first}"),
            json!({"metadata": {"status": "away"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_metadata",
    )
    .await;
    let changed = ok(patch(
        &app,
        &format!("/v1/matrix/workers/{first}"),
        json!({"metadata": {"status": "do_not_use"}}),
    )
    .await)
    .await;
    assert_eq!(changed["changed"], 1);
    let found = ok(app.post_json("/v1/matrix/search", &search).await).await;
    let ids: Vec<&str> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["worker_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&first.as_str()), "{ids:?}");
    let counted = ok(app
        .post_json(
            "/v1/matrix/workers/count",
            &json!({"role": "Forklift Operator", "facets": ["status"]}),
        )
        .await)
    .await;
    assert_eq!(counted["count"].as_u64().unwrap(), before - 1);
    // Asked for, it is found; a filter naming status replaces the default.
    for asked in [
        json!({"status_any": ["do_not_use"]}),
        json!({"filter": {"status": "do_not_use"}}),
    ] {
        let mut body = search.clone();
        body.as_object_mut()
            .unwrap()
            .extend(asked.as_object().unwrap().clone());
        let found = ok(app.post_json("/v1/matrix/search", &body).await).await;
        assert_eq!(found["hits"][0]["worker_id"], first.as_str(), "{body}");
    }
    // Through the vector API the write role is not enough for `workers`;
    // here no tokens are configured, and a patch of the profile text works.
    let dnu = ok(app
        .post_json(
            "/v1/matrix/workers/count",
            &json!({"status_any": ["do_not_use"], "facets": ["role"]}),
        )
        .await)
    .await;
    assert_eq!(dnu["count"], 1);
    assert_eq!(
        dnu["facets"]["role"],
        json!([{"value": "Forklift Operator", "count": 1}])
    );
    assert_error(
        patch(
            &app,
            "/v1/matrix/workers/W9999999",
            json!({"metadata": {"status": "active"}}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "item_not_found",
    )
    .await;
}

/// Without a `workers` index, a worker change and a count say to seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_changes_before_a_seed_say_so() {
    let app = spawn_app().await;
    assert_error(
        patch(
            &app,
            "/v1/matrix/workers/W0000001",
            json!({"metadata": {"status": "placed"}}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "no_workers",
    )
    .await;
    assert_error(
        app.post_json("/v1/matrix/workers/count", &json!({})).await,
        StatusCode::NOT_FOUND,
        "no_workers",
    )
    .await;
}

/// A scroll walks every selected item once, in id order, and every page
/// reads the version the first one read, whatever is written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scroll_pages_one_version_in_id_order() {
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(10)).await;
    let scroll = |body: Value| {
        let app = &app;
        async move {
            app.post_json("/v1/vectors/index/crew/items/scroll", &body)
                .await
        }
    };
    let first =
        ok(scroll(json!({"limit": 3, "filter": {"group": {"in": ["g0", "g1"]}}})).await).await;
    let version = first["lance_version"].clone();
    let mut seen: Vec<String> = Vec::new();
    let mut page = first;
    // A write after the first page: the scroll does not see it.
    ok(app
        .post_json(
            "/v1/vectors/index/crew/items/delete",
            &json!({"ids": ["m9"]}),
        )
        .await)
    .await;
    app.add_items(
        "crew",
        &[json!({"id": "m00", "vector": [1, 0, 0, 0], "metadata": {"group": "g0"}})],
    )
    .await;
    loop {
        assert_eq!(page["lance_version"], version, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
            assert!(item.get("vector").is_none());
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        page = ok(scroll(
            json!({"limit": 3, "cursor": cursor, "filter": {"group": {"in": ["g0", "g1"]}}}),
        )
        .await)
        .await;
    }
    // g0: m0 m3 m6 m9, g1: m1 m4 m7; m9 was deleted after the first page.
    assert_eq!(seen, ["m0", "m1", "m3", "m4", "m6", "m7", "m9"]);
    // A new scroll reads the new version.
    let now = ok(scroll(json!({"limit": 100, "with_vectors": true})).await).await;
    let ids: Vec<&str> = now["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["m0", "m00", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"]
    );
    assert!(now["next_cursor"].is_null());
    assert_eq!(now["items"][1]["vector"], json!([1.0, 0.0, 0.0, 0.0]));
    for (body, code) in [
        (json!({"limit": 0}), "invalid_limit"),
        (json!({"limit": 1001}), "invalid_limit"),
        (json!({"cursor": "nonsense"}), "invalid_cursor"),
        (json!({"cursor": "12.zz"}), "invalid_cursor"),
        (json!({"filter": {"n": {"between": 1}}}), "invalid_filter"),
    ] {
        assert_error(scroll(body).await, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    assert_error(
        scroll(json!({"cursor": "999999.6d31"})).await,
        StatusCode::GONE,
        "version_gone",
    )
    .await;
}

/// An export streams every live item of one version, as JSON lines or
/// an Arrow IPC stream, with what a get gives; an older version still
/// held exports as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_streams_one_version_as_json_lines_or_arrow() {
    use lance::deps::datafusion::arrow::array::{Array, StringArray};
    use lance::deps::datafusion::arrow::ipc::reader::StreamReader;
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(7)).await;
    let response = app.get("/v1/vectors/index/crew/export").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let version: u64 = response.headers()["x-lance-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    let m3 = lines.iter().find(|l| l["id"] == "m3").unwrap();
    let got = get_item(&app, "crew", "m3").await;
    assert_eq!(
        (m3["vector"].clone(), m3["metadata"].clone()),
        (got["vector"].clone(), got["metadata"].clone())
    );
    assert_eq!(m3["text"], "crew member 3 forklift");

    ok(app
        .post_json(
            "/v1/vectors/index/crew/items/delete",
            &json!({"filter": {"group": "g0"}}),
        )
        .await)
    .await;
    let response = app.get("/v1/vectors/index/crew/export?format=arrow").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = response.bytes().await.unwrap();
    let mut ids = Vec::new();
    for batch in StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap() {
        let batch = batch.unwrap();
        let column = batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        ids.extend((0..column.len()).map(|i| column.value(i).to_string()));
    }
    ids.sort();
    assert_eq!(ids, ["m1", "m2", "m4", "m5"], "g0 (m0, m3, m6) is gone");

    // The version before the delete, by number.
    let old = app
        .get(&format!("/v1/vectors/index/crew/export?version={version}"))
        .await;
    assert_eq!(old.status(), StatusCode::OK);
    assert_eq!(old.text().await.unwrap().lines().count(), 7);
    for (query, status, code) in [
        ("version=0", StatusCode::BAD_REQUEST, "invalid_query"),
        ("version=-3", StatusCode::BAD_REQUEST, "invalid_query"),
        (
            "version=18446744073709551615",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        ("version=99999", StatusCode::GONE, "version_gone"),
        ("format=csv", StatusCode::BAD_REQUEST, "invalid_query"),
        ("surprise=1", StatusCode::BAD_REQUEST, "invalid_query"),
    ] {
        assert_error(
            app.get(&format!("/v1/vectors/index/crew/export?{query}"))
                .await,
            status,
            code,
        )
        .await;
    }
    assert_error(
        app.get("/v1/vectors/index/nobody/export").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    )
    .await;
}

/// A no-show demotes the worker in later searches of a near query, within
/// the configured bound, and says so; withdrawing it takes that back; a
/// placement boosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_show_demotes_and_a_withdrawal_takes_it_back() {
    // No decay: the figures are exact (the unit tests weigh the decay).
    let app = spawn_app_with(&[("matrix.playbook_half_life_days", "0")]).await;
    crate::helpers::seed_workers(&app, 200, None).await;
    let query = "forklift operator for the night shift";
    let search = json!({"query": query, "k": 50, "role": "Forklift Operator", "mode": "semantic",
                        "use_playbook": true, "explain": true});
    let hit_of = |body: &Value, id: &str| -> Value {
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["worker_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let before = ok(app.post_json("/v1/matrix/search", &search).await).await;
    let worker = before["hits"][0]["worker_id"].as_str().unwrap().to_string();
    let plain = hit_of(&before, &worker)["distance"].as_f64().unwrap();

    let recorded = ok(app
        .post_json(
            "/v1/matrix/playbooks/record",
            &json!({"query": query, "role": "Forklift Operator", "worker_ids": [worker], "score": 1.0, "outcome": "no_show"}),
        )
        .await)
    .await;
    let recording = recorded["recording_id"].as_str().unwrap().to_string();
    let after = ok(app.post_json("/v1/matrix/search", &search).await).await;
    let hit = hit_of(&after, &worker);
    assert_eq!(hit["demoted"], true, "{hit}");
    assert_eq!(hit["boosted"], false);
    let explain = &hit["explain"];
    assert_eq!(explain["boost_factor"], 1.5);
    assert_eq!(explain["playbook"]["factor_bounds"], json!([0.5, 1.5]));
    assert_eq!(explain["playbook"]["score"], -1.0);
    assert_eq!(explain["playbook"]["recordings"][0]["outcome"], "no_show");
    assert_eq!(
        explain["playbook"]["recordings"][0]["recorded_by"], "anonymous",
        "no tokens here"
    );
    let demoted = hit["distance"].as_f64().unwrap();
    assert!((demoted - plain * 1.5).abs() < 1e-4, "{plain} -> {demoted}");
    assert_ne!(
        after["hits"][0]["worker_id"],
        worker.as_str(),
        "no longer first"
    );

    let withdrawn = ok(app
        .send(
            Method::DELETE,
            &format!("/v1/matrix/playbooks/recordings/{recording}"),
            None,
            None,
        )
        .await)
    .await;
    assert_eq!(withdrawn["recordings"], 0, "{withdrawn}");
    let back = ok(app.post_json("/v1/matrix/search", &search).await).await;
    let hit = hit_of(&back, &worker);
    assert!(
        hit.get("demoted").is_none() && hit["boosted"] == false,
        "{hit}"
    );
    assert!((hit["distance"].as_f64().unwrap() - plain).abs() < 1e-6);
    assert_error(
        app.send(
            Method::DELETE,
            &format!("/v1/matrix/playbooks/recordings/{recording}"),
            None,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "recording_not_found",
    )
    .await;

    // A placement boosts; a declined offer beside it takes half of it back.
    for outcome in ["placed", "declined"] {
        ok(app
            .post_json(
                "/v1/matrix/playbooks/record",
                &json!({"query": query, "role": "Forklift Operator", "worker_ids": [worker], "score": 1.0, "outcome": outcome}),
            )
            .await)
        .await;
    }
    let now = ok(app.post_json("/v1/matrix/search", &search).await).await;
    let hit = hit_of(&now, &worker);
    assert_eq!(hit["boosted"], true, "{hit}");
    assert_eq!(hit["explain"]["playbook"]["score"], 0.5);
    assert!((hit["distance"].as_f64().unwrap() - plain * 0.75).abs() < 1e-4);
    assert_error(
        app.post_json(
            "/v1/matrix/playbooks/record",
            &json!({"query": query, "role": "Forklift Operator", "worker_ids": [worker], "score": 1.0, "outcome": "ghosted"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
}

/// An add to `workers` names the items that look like a worker already
/// there, or one earlier in the same add — by e-mail, phone or a
/// near-identical name in the same city — and merges nothing; the
/// generated corpus, whose workers are all distinct, gets no hint, seeded
/// or seeded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn possible_duplicates_are_named_and_distinct_workers_are_not() {
    let app = spawn_app().await;
    let seed = || lakehouse::seed::SeedOptions {
        target: app.address.clone(),
        workers: 1500,
        seed: 7,
        batch: 250,
        concurrency: 2,
        token: None,
    };
    let report = lakehouse::seed::run(seed()).await.unwrap();
    assert_eq!(report.possible_duplicates, 0);
    let again = lakehouse::seed::run(seed()).await.unwrap();
    assert_eq!(
        again.possible_duplicates, 0,
        "an update is not its own duplicate"
    );

    let w1 = get_item(&app, "workers", "W0000001").await["metadata"].clone();
    let (name, city, state) = (
        w1["name"].as_str().unwrap(),
        w1["city"].clone(),
        w1["state"].clone(),
    );
    let email = w1["email"].as_str().unwrap().to_uppercase();
    let phone: String = w1["phone"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let respelt = format!(
        "{}, {}",
        name.split(' ').nth(1).unwrap(),
        name.split(' ').next().unwrap()
    );
    let item = |id: &str, metadata: Value| json!({"id": id, "text": "forklift operator", "metadata": metadata});
    let items = [
        item(
            "N1",
            json!({"name": "Zed Quill", "email": format!(" {email} "), "city": "Nowhere"}),
        ),
        item(
            "N2",
            json!({"name": "Zed Quill", "phone": format!("+1 {phone}"), "city": "Elsewhere"}),
        ),
        item("N3", json!({"name": respelt, "city": city, "state": state})),
        item(
            "N4",
            json!({"name": "Yara Unique", "email": "yara@unique.example", "city": "Gary", "state": "IN"}),
        ),
        item(
            "N5",
            json!({"name": "Yara Unique", "email": "YARA@unique.example"}),
        ),
        item(
            "N6",
            json!({"name": name, "city": city, "state": state, "email": "someone.else@other.example"}),
        ),
    ];
    let answer = ok(app
        .post_json("/v1/vectors/index/workers/add", &json!({"items": items}))
        .await)
    .await;
    assert_eq!(answer["inserted"], 6, "nothing merged: {answer}");
    let mut hints: Vec<(String, String, String)> = answer["possible_duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["looks_like"].as_str().unwrap().to_string(),
                h["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    hints.sort();
    let w = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        hints,
        [
            w("N1", "W0000001", "email"),
            w("N2", "W0000001", "phone"),
            w("N3", "W0000001", "name"),
            w("N5", "N4", "email"),
            // N6 has its own e-mail, unlike W0000001's: not them. N3 has
            // none to tell it from N6.
            w("N6", "N3", "name"),
        ],
        "{answer}"
    );
    // Other indexes are not checked.
    create(&app, "crew", 4).await;
    let plain = ok(app
        .post_json(
            "/v1/vectors/index/crew/add",
            &json!({"items": [{"id": "a", "vector": [1, 0, 0, 0], "metadata": {"email": "x@y.z"}},
                              {"id": "b", "vector": [0, 1, 0, 0], "metadata": {"email": "x@y.z"}}]}),
        )
        .await)
    .await;
    assert!(plain.get("possible_duplicates").is_none(), "{plain}");
}

/// A worker's field changed by PATCH: nothing is embedded (the embedder's
/// counters do not move), a filter on the new value finds it at once, and
/// it survives a panic of the index and a restart of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_embeds_nothing_is_filterable_at_once_and_survives_a_panic_and_a_restart() {
    use crate::helpers::metric_value;
    let app = spawn_app_with(&[("faults.enabled", "true")]).await;
    crate::helpers::seed_workers(&app, 200, None).await;
    let embeds = |exposition: String| {
        [
            "lakehouse_embed_cache_hits_total",
            "lakehouse_embed_cache_misses_total",
        ]
        .iter()
        .map(|series| metric_value(&exposition, series).unwrap_or(0.0))
        .sum::<f64>()
    };
    let before = get_item(&app, "workers", "W0000005").await;
    let counted = embeds(app.metrics().await);
    ok(patch(
        &app,
        "/v1/matrix/workers/W0000005",
        json!({"metadata": {"status": "on_assignment", "shift": "night"}}),
    )
    .await)
    .await;
    assert_eq!(embeds(app.metrics().await), counted, "nothing embedded");
    let found = ok(app
        .post_json(
            "/v1/vectors/index/workers/search",
            &json!({"vector": before["vector"], "k": 5, "filter": {"status": "on_assignment"}}),
        )
        .await)
    .await;
    let ids: Vec<&str> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["W0000005"]);

    let injected = app.inject_fault("index:workers", "panic").await;
    assert_eq!(injected.status(), StatusCode::ACCEPTED);
    crate::helpers::eventually(
        "the index answers again",
        std::time::Duration::from_secs(30),
        || async {
            app.get("/v1/vectors/index/workers/items/W0000005")
                .await
                .status()
                == StatusCode::OK
                && app
                    .node("index:workers")
                    .await
                    .is_some_and(|n| n["restarts"] == 1)
        },
    )
    .await;
    let after_panic = get_item(&app, "workers", "W0000005").await;
    assert_eq!(after_panic["metadata"]["status"], "on_assignment");
    assert_eq!(after_panic["vector"], before["vector"]);

    let (data, guard) = app.shutdown().await;
    let app = spawn_app_on(data, &[]).await;
    let _guard = guard;
    let restarted = get_item(&app, "workers", "W0000005").await;
    assert_eq!(restarted["metadata"]["shift"], "night");
    assert_eq!(restarted["vector"], before["vector"]);
}

/// Updates and deletes by filter touch exactly the items the filter
/// language selects, checked against a brute-force evaluation of each
/// filter over every item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_changes_by_filter_match_a_brute_force_evaluation() {
    use lakehouse::domain::filter::Filter;
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    let items = crew(60);
    app.add_items("crew", &items).await;
    let filters = [
        json!({"group": "g1"}),
        json!({"n": {"gte": 20}}),
        json!({"and": [{"group": {"in": ["g0", "g2"]}}, {"n": {"lt": 40}}]}),
        json!({"tags": {"contains": "t1"}}),
        json!({"or": [{"n": {"lt": 5}}, {"not": {"group": "g0"}}]}),
    ];
    for (i, filter) in filters.iter().enumerate() {
        let parsed = Filter::parse(filter.as_object().unwrap(), 16).unwrap();
        let now = all_items(&app, "crew").await;
        let expected: std::collections::BTreeSet<String> = now
            .iter()
            .filter(|item| parsed.matches(&item["metadata"]))
            .map(|item| item["id"].as_str().unwrap().to_string())
            .collect();
        let answer = ok(app
            .post_json(
                "/v1/vectors/index/crew/items/update",
                &json!({"filter": filter, "set": {"touched": i}}),
            )
            .await)
        .await;
        assert_eq!(answer["matched"], expected.len(), "{filter}");
        let touched: std::collections::BTreeSet<String> = all_items(&app, "crew")
            .await
            .iter()
            .filter(|item| item["metadata"]["touched"] == i)
            .map(|item| item["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(touched, expected, "{filter}");
    }
    let last = filters.last().unwrap();
    let parsed = Filter::parse(last.as_object().unwrap(), 16).unwrap();
    let keep: std::collections::BTreeSet<String> = all_items(&app, "crew")
        .await
        .iter()
        .filter(|item| !parsed.matches(&item["metadata"]))
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect();
    ok(app
        .post_json(
            "/v1/vectors/index/crew/items/delete",
            &json!({"filter": last}),
        )
        .await)
    .await;
    let left: std::collections::BTreeSet<String> = all_items(&app, "crew")
        .await
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, keep);
}

/// Every item of a (small) index, through one scroll page.
async fn all_items(app: &TestApp, index: &str) -> Vec<Value> {
    let page = ok(app
        .post_json(
            &format!("/v1/vectors/index/{index}/items/scroll"),
            &json!({"limit": 1000}),
        )
        .await)
    .await;
    assert!(page["next_cursor"].is_null());
    page["items"].as_array().unwrap().clone()
}

/// Facet counts over the whole `workers` index equal SQL's GROUP BY over
/// the seeded `workers` dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facet_counts_equal_sql_group_by() {
    let app = spawn_app().await;
    crate::helpers::seed_workers(&app, 300, None).await;
    let probe = get_item(&app, "workers", "W0000001").await;
    let searched = ok(app
        .post_json(
            "/v1/vectors/index/workers/search",
            &json!({"vector": probe["vector"], "k": 1, "facets": ["role", "city", "shift"]}),
        )
        .await)
    .await;
    for field in ["role", "city", "shift"] {
        let sql = ok(app
            .post_json(
                "/v1/sql",
                &json!({"sql": format!("SELECT {field} AS value, count(*) AS n FROM workers GROUP BY {field}")}),
            )
            .await)
        .await;
        let from_sql: std::collections::BTreeMap<String, u64> = sql["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row[0].as_str().unwrap().to_string(),
                    row[1].as_u64().unwrap(),
                )
            })
            .collect();
        let from_facets: std::collections::BTreeMap<String, u64> = searched["facets"][field]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["value"].as_str().unwrap().to_string(),
                    f["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(from_facets, from_sql, "{field}");
    }
}

/// An export read back through an ingest (JSON lines) is the same items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_round_trips_through_ingest() {
    let app = spawn_app().await;
    create(&app, "crew", 4).await;
    app.add_items("crew", &crew(25)).await;
    let exported = app
        .get("/v1/vectors/index/crew/export")
        .await
        .text()
        .await
        .unwrap();
    let ingested = app
        .post_raw(
            "/v1/ingest/crew_copy",
            "application/x-ndjson",
            exported.clone(),
        )
        .await;
    assert_eq!(
        ingested.status(),
        StatusCode::OK,
        "{:?}",
        ingested.text().await
    );
    let sql = ok(app
        .post_json(
            "/v1/sql",
            &json!({"sql": "SELECT id, text FROM crew_copy ORDER BY id"}),
        )
        .await)
    .await;
    let rows: Vec<(String, String)> = sql["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = exported
        .lines()
        .map(|line| {
            let item: Value = serde_json::from_str(line).unwrap();
            (
                item["id"].as_str().unwrap().to_string(),
                item["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(rows.len(), 25);
    assert_eq!(rows, expected);
}
