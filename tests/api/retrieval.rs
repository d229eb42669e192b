//! Keyword and hybrid search and `explain`, through HTTP: on a corpus built
//! so that the vectors point away from the items holding an exact term.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp};

/// The query's direction.
const QUERY: [f32; 4] = [1.0, 0.0, 0.0, 0.0];

/// Eight items near the query that hold OSHA 10, three farther ones that
/// hold OSHA 30: semantic search alone ranks the OSHA 10 items first.
async fn certifications(app: &TestApp) {
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "certs", "dimension": 4}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut items = Vec::new();
    for i in 0..8 {
        items.push(json!({
            "id": format!("n{i}"),
            "vector": [1.0, 0.02 * i as f32, 0.0, 0.0],
            "text": format!("Warehouse associate n{i} with OSHA 10 and forklift experience, $30.50/hr"),
            "metadata": {"group": "near"},
        }));
    }
    for i in 0..3 {
        items.push(json!({
            "id": format!("h{i}"),
            "vector": [0.8, 0.6, 0.01 * i as f32, 0.0],
            "text": format!("Electrician h{i}, OSHA 30 certified"),
            "metadata": {"group": "far"},
        }));
    }
    app.add_items("certs", &items).await;
}

async fn search(app: &TestApp, body: Value) -> Vec<Value> {
    let response = app.post_json("/v1/vectors/index/certs/search", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["hits"].as_array().unwrap().clone()
}

fn ids(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["id"].as_str().unwrap()).collect()
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap()
}

/// The explanation adds up to the reported distance.
fn assert_adds_up(hit: &Value, rank: usize) {
    let e = &hit["explain"];
    let weight = f(&e["keyword_weight"]);
    let score = f(&e["keyword_score"]);
    let reference = f(&e["keyword_reference"]);
    let keyword = if score > 0.0 {
        reference / (reference + score)
    } else {
        1.0
    };
    assert!((f(&e["keyword_distance"]) - keyword).abs() < 1e-5, "{hit}");
    let semantic = e["semantic_distance"].as_f64().unwrap_or(0.0);
    let fused = (1.0 - weight) * semantic + weight * keyword;
    assert!((f(&e["fused_distance"]) - fused).abs() < 1e-5, "{hit}");
    assert!((f(&hit["distance"]) - fused).abs() < 1e-5, "{hit}");
    assert_eq!(e["fused_rank"], rank + 1, "{hit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hybrid_query_for_an_exact_certification_ranks_its_holders_first_where_semantic_does_not()
{
    let app = spawn_app().await;
    certifications(&app).await;

    let semantic = search(&app, json!({"vector": QUERY, "k": 3})).await;
    assert!(
        ids(&semantic).iter().all(|id| id.starts_with('n')),
        "semantic alone: {:?}",
        ids(&semantic)
    );

    let hybrid = search(
        &app,
        json!({"vector": QUERY, "text": "OSHA 30", "mode": "hybrid", "k": 5, "explain": true}),
    )
    .await;
    let mut top: Vec<&str> = ids(&hybrid)[..3].to_vec();
    top.sort();
    assert_eq!(top, ["h0", "h1", "h2"], "hybrid: {:?}", ids(&hybrid));
    for (rank, hit) in hybrid.iter().enumerate() {
        assert_adds_up(hit, rank);
        assert_eq!(hit["explain"]["mode"], "hybrid");
    }
    let holder = &hybrid[0]["explain"];
    assert_eq!(holder["matched_terms"], json!(["osha", "30"]));
    assert!(holder["keyword_rank"].as_u64().unwrap() <= 3, "{holder}");
    // A rate of $30.50 is not the term "30".
    assert_eq!(hybrid[3]["explain"]["matched_terms"], json!(["osha"]));

    // Keyword mode: BM25 alone. A code counts only as written, so the
    // holders of "OSHA 10" are not hits of "OSHA 30".
    let code = search(
        &app,
        json!({"text": "osha 30", "mode": "keyword", "k": 20, "explain": true}),
    )
    .await;
    let mut holders: Vec<&str> = ids(&code);
    holders.sort();
    assert_eq!(holders, ["h0", "h1", "h2"]);
    for (rank, hit) in code.iter().enumerate() {
        assert_adds_up(hit, rank);
        assert!(hit["explain"]["semantic_distance"].is_null());
    }
    let keyword = search(
        &app,
        json!({"text": "osha", "mode": "keyword", "k": 20, "explain": true}),
    )
    .await;
    assert_eq!(keyword.len(), 11, "every item holds 'osha'");
    for (rank, hit) in keyword.iter().enumerate() {
        assert_adds_up(hit, rank);
    }
    // A filter only removes hits: the survivors keep their order and distances.
    let near = search(
        &app,
        json!({"text": "osha", "mode": "keyword", "k": 20, "filter": {"group": "near"}}),
    )
    .await;
    let unfiltered: Vec<&Value> = keyword
        .iter()
        .filter(|h| h["metadata"]["group"] == "near")
        .collect();
    assert_eq!(near.len(), unfiltered.len());
    for (a, b) in near.iter().zip(unfiltered) {
        assert_eq!((&a["id"], &a["distance"]), (&b["id"], &b["distance"]));
    }

    // The weight is the caller's to set: at 0 hybrid is semantic.
    let weightless = search(
        &app,
        json!({"vector": QUERY, "text": "OSHA 30", "mode": "hybrid", "k": 3, "keyword_weight": 0.0}),
    )
    .await;
    assert_eq!(ids(&weightless), ids(&semantic));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_query_is_embedded_for_hybrid_and_items_may_carry_both_vector_and_text() {
    let app = spawn_app().await;
    let dimension = app.embed(&["probe"]).await.json::<Value>().await.unwrap()["dimension"]
        .as_u64()
        .unwrap();
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "docs", "dimension": dimension}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let items = json!([
        {"id": "a", "text": "Night shift forklift operator in Joliet"},
        {"id": "b", "text": "Day shift welder in Gary with TIG experience"},
    ]);
    app.add_items("docs", &items).await;
    let hits = app
        .post_json(
            "/v1/vectors/index/docs/search",
            &json!({"text": "TIG welder", "mode": "hybrid", "k": 2, "explain": true}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(hits["hits"][0]["id"], "b");
    assert_eq!(
        hits["hits"][0]["explain"]["matched_terms"],
        json!(["tig", "welder"])
    );
    let info: Value = app
        .get("/v1/vectors/index/docs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["keyword_documents"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keyword_and_hybrid_searches_get_their_codes() {
    let app = spawn_app().await;
    certifications(&app).await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    for (body, status, code, says) in [
        (
            json!({"vector": QUERY, "k": 3, "mode": "keyword"}),
            unprocessable,
            "mode_needs_text",
            "text",
        ),
        (
            json!({"text": "osha", "vector": QUERY, "k": 3, "mode": "keyword"}),
            unprocessable,
            "mode_needs_text",
            "no 'vector'",
        ),
        (
            json!({"vector": QUERY, "k": 3, "mode": "hybrid"}),
            unprocessable,
            "mode_needs_text",
            "text",
        ),
        (
            json!({"text": "  ", "k": 3, "mode": "hybrid"}),
            unprocessable,
            "mode_needs_text",
            "empty",
        ),
        (
            json!({"text": "!!! ???", "k": 3, "mode": "keyword"}),
            unprocessable,
            "mode_needs_text",
            "letters or digits",
        ),
        (
            json!({"text": "osha", "k": 3, "mode": "hybrid", "keyword_weight": 1.5}),
            unprocessable,
            "invalid_keyword_weight",
            "1.5",
        ),
        (
            json!({"text": "osha", "k": 3, "mode": "fuzzy"}),
            unprocessable,
            "invalid_body",
            "fuzzy",
        ),
        (
            json!({"text": "osha", "k": 0, "mode": "keyword"}),
            unprocessable,
            "invalid_k",
            "k",
        ),
    ] {
        let response = app.post_json("/v1/vectors/index/certs/search", &body).await;
        let error = assert_error(response, status, code).await;
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // A search text beyond its bound, and hybrid fusion of non-cosine
    // distances, are refused.
    let response = app
        .post_json(
            "/v1/vectors/index/certs/search",
            &json!({"text": "osha ".repeat(4000), "k": 3, "mode": "keyword"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_vector").await;
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "squares", "dimension": 4, "metric": "l2"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .post_json(
            "/v1/vectors/index/squares/search",
            &json!({"text": "osha", "vector": QUERY, "k": 3, "mode": "hybrid"}),
        )
        .await;
    let error = assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_mode",
    )
    .await;
    assert!(error["error"]["message"].as_str().unwrap().contains("L2"));
    // An item text beyond its bound is refused with its path.
    let response = app
        .post_json(
            "/v1/vectors/index/certs/add",
            &json!({"items": [{"id": "big", "vector": QUERY, "text": "x".repeat(70_000)}]}),
        )
        .await;
    let error = assert_error(response, StatusCode::BAD_REQUEST, "invalid_vector").await;
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("items[0].text"));
}

/// An index of a nurse and a machine operator, searched by keyword.
async fn word_forms_index(app: &TestApp) {
    let dimension = app.embed(&["probe"]).await.json::<Value>().await.unwrap()["dimension"]
        .as_u64()
        .unwrap();
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "forms", "dimension": dimension}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let items = json!([
        {"id": "lpn", "text": "Licensed practical nurse, Joliet IL"},
        {"id": "op", "text": "Machine operator, second shift, Gary IN"},
    ]);
    app.add_items("forms", &items).await;
}

async fn keyword_ids(app: &TestApp, text: &str) -> Vec<String> {
    let body = app
        .post_json(
            "/v1/vectors/index/forms/search",
            &json!({"text": text, "mode": "keyword", "k": 5}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}: {body}"))
        .iter()
        .map(|hit| hit["id"].as_str().unwrap().to_string())
        .collect()
}

/// The forms a coordinator types find the profile's own words (the
/// current analysis, Snowball English, shared by BM25 and the embedder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plurals_and_verb_forms_find_the_profile_words() {
    let app = spawn_app().await;
    word_forms_index(&app).await;
    for (query, expected) in [
        ("nurses", "lpn"),
        ("nursing", "lpn"),
        ("nurse", "lpn"),
        ("licensed", "lpn"),
        ("license", "lpn"),
        ("machines", "op"),
        ("operators", "op"),
    ] {
        assert_eq!(keyword_ids(&app, query).await, [expected], "{query}");
    }
    let info = app
        .get("/v1/vectors/index/forms")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(info["analysis"], "v2");
    assert_eq!(info["analysis_current"], true);
}

/// An index whose definition predates versioned analysis keeps its first
/// analysis after a restart (its stored vectors and texts were made with
/// it) and says so in its info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_built_with_the_first_analysis_keeps_answering_and_says_so() {
    let app = spawn_app().await;
    word_forms_index(&app).await;
    let (dir, guard) = app.shutdown().await;
    let path = dir.join("vectors").join("forms.index.json");
    let mut definition: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(definition["analysis"], "v2");
    definition.as_object_mut().unwrap().remove("analysis");
    std::fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();

    let app = crate::helpers::spawn_app_on(dir, &[]).await;
    let info = app
        .get("/v1/vectors/index/forms")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(info["analysis"], "v1");
    assert_eq!(info["analysis_current"], false);
    assert_eq!(info["count"], 2);
    // v1's light stripper: "nurse" and "operators" still match, "nurses"
    // does not (what the current analysis fixed).
    assert_eq!(keyword_ids(&app, "nurse").await, ["lpn"]);
    assert_eq!(keyword_ids(&app, "operators").await, ["op"]);
    assert!(keyword_ids(&app, "nurses").await.is_empty());
    drop(guard);
}

fn cosine(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap())
        .sum();
    let norm = |v: &[Value]| {
        v.iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt()
    };
    dot / (norm(a) * norm(b))
}

/// An index whose items were embedded under the first analysis is moved to
/// the current one: its commit panics after the first chunk of re-embedded
/// items is durable, the next incarnation resumes with what is left, and
/// every item ends with its metadata, the current model's vector of its
/// text (or the vector its client gave) and keyword matches of the
/// current analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_moves_an_old_index_to_the_current_analysis_through_a_panic() {
    let faults = [("faults.enabled", "true")];
    let app = crate::helpers::spawn_app_with(&faults).await;
    let dimension = app.embed(&["probe"]).await.json::<Value>().await.unwrap()["dimension"]
        .as_u64()
        .unwrap() as usize;
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "old", "dimension": dimension}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (dir, guard) = app.shutdown().await;
    let path = dir.join("vectors").join("old.index.json");
    let mut definition: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    definition.as_object_mut().unwrap().remove("analysis");
    std::fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();
    let app = crate::helpers::spawn_app_on(dir, &faults).await;

    // Embedded by lakehouse-hash-v1, as the index's analysis says.
    let text = |i: usize| {
        if i % 2 == 0 {
            format!("Licensed practical nurse {i}, home care")
        } else {
            format!("Machine operator {i}, second shift")
        }
    };
    let total = 300;
    for start in (0..total).step_by(100) {
        let items: Vec<Value> = (start..start + 100)
            .map(|i| json!({"id": format!("w{i}"), "text": text(i), "metadata": {"i": i}}))
            .collect();
        app.add_items("old", &items).await;
    }
    let mut given = vec![0.0f32; dimension];
    given[0] = 1.0;
    let response = app
        .post_json(
            "/v1/vectors/index/old/add",
            &json!({"items": [{"id": "given", "vector": given, "text": "nurses with a vector of their own"}]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        keyword_ids_in(&app, "old", "nurses").await == ["given"],
        "v1 misses the plural"
    );

    // The first write back panics after its Lance append: durable, not
    // acknowledged, the index reloaded.
    let response = app.inject_fault("index:old", "commit_panic").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = app
        .post_json("/v1/admin/indexes/old/reindex", &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"index": "old", "from": "v1", "to": "v2", "state": "started"})
    );

    crate::helpers::eventually(
        "the reindex is done",
        std::time::Duration::from_secs(60),
        || {
            let app = &app;
            async move {
                let response = app.get("/v1/vectors/index/old").await;
                response.status() == StatusCode::OK
                    && response.json::<Value>().await.unwrap()["reindex"]["state"] == "done"
            }
        },
    )
    .await;
    let info = app
        .get("/v1/vectors/index/old")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(info["analysis"], "v2", "{info}");
    assert_eq!(info["analysis_current"], true);
    assert_eq!(info["count"], total + 1, "no item lost: {info}");
    assert!(
        info["restarts"].as_u64().unwrap() >= 1,
        "the panic restarted it: {info}"
    );
    let reindex = &info["reindex"];
    assert!(
        reindex["to_reembed"].as_u64().unwrap() < total as u64,
        "the resumed pass found only what the first did not write: {info}"
    );
    assert_eq!(reindex["to_reembed"], reindex["reembedded"]);
    let persisted: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(persisted.get("reindex").is_none(), "{persisted}");
    assert_eq!(persisted["analysis"], "v2");

    for i in (0..total).step_by(37) {
        let item = app
            .get(&format!("/v1/vectors/index/old/items/w{i}"))
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(item["metadata"], json!({"i": i}));
        let current = app
            .post_json(
                "/v1/embed",
                &json!({"texts": [text(i)], "model": "lakehouse-hash-v2"}),
            )
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert!(
            cosine(&item["vector"], &current["vectors"][0]) > 0.9999,
            "w{i}"
        );
    }
    let item = app
        .get("/v1/vectors/index/old/items/given")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert!(
        cosine(&item["vector"], &json!(given)) > 0.9999,
        "a given vector stays"
    );
    let nurses = keyword_ids_in(&app, "old", "nurses").await;
    assert_eq!(nurses.len(), 5);
    assert!(nurses
        .iter()
        .all(|id| id == "given" || id[1..].parse::<usize>().unwrap() % 2 == 0));

    let again = app
        .post_json("/v1/admin/indexes/old/reindex", &json!({}))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["state"], "current");
    assert_error(
        app.post_json("/v1/admin/indexes/nowhere/reindex", &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    )
    .await;
    drop(guard);
}

async fn keyword_ids_in(app: &TestApp, index: &str, text: &str) -> Vec<String> {
    let body = app
        .post_json(
            &format!("/v1/vectors/index/{index}/search"),
            &json!({"text": text, "mode": "keyword", "k": 5}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}: {body}"))
        .iter()
        .map(|hit| hit["id"].as_str().unwrap().to_string())
        .collect()
}

/// Profiles for the ways coordinators type: a code whole and inside a
/// longer name, its words apart, a compound, a typo, synonyms.
async fn coordinator_index(app: &TestApp, synonyms: Value) {
    let dimension = app.embed(&["probe"]).await.json::<Value>().await.unwrap()["dimension"]
        .as_u64()
        .unwrap();
    let response = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "coord", "dimension": dimension, "synonyms": synonyms}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text().await
    );
    let items = json!([
        {"id": "whole", "text": "HVAC technician. Certifications: OSHA 10, EPA 608."},
        {"id": "longer", "text": "HVAC technician. Certifications: EPA 608 Universal, NATE."},
        {"id": "apart", "text": "Plumber, EPA lead-safe renovator; 608 hours on the job."},
        {"id": "fork1", "text": "Forklift operator, warehouse, night shift"},
        {"id": "fork2", "text": "Forklift operator, second shift"},
        {"id": "typed", "text": "Order picker; forklfit on the resume"},
        {"id": "truck", "text": "Lift truck driver, dock work"},
        {"id": "cna1", "text": "Certified nursing assistant, memory care"},
        {"id": "cna2", "text": "CNA, home health, weekends"},
        {"id": "cook", "text": "Nursing home cook, certified food handler"},
        {"id": "pct", "text": "Patient care technician, dialysis unit"},
    ]);
    app.add_items("coord", &items).await;
}

async fn coordinator_search(app: &TestApp, text: &str) -> Vec<Value> {
    let response = app
        .post_json(
            "/v1/vectors/index/coord/search",
            &json!({"text": text, "mode": "keyword", "k": 10, "explain": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["hits"]
        .as_array()
        .unwrap()
        .clone()
}

fn hit<'a>(hits: &'a [Value], id: &str) -> &'a Value {
    hits.iter()
        .find(|h| h["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {hits:?}"))
}

/// A code or a quoted phrase needs its words adjacent and in order, the
/// whole certification above a longer name; explain says how each holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phrase_ranks_the_exact_certification_above_a_longer_name() {
    let app = spawn_app().await;
    coordinator_index(&app, json!([])).await;
    for query in ["\"EPA 608\"", "EPA 608"] {
        let hits = coordinator_search(&app, query).await;
        assert_eq!(ids(&hits), ["whole", "longer"], "{query}");
        let quoted = query.starts_with('"');
        let phrase = |id| hit(&hits, id)["explain"]["phrases"][0].clone();
        assert_eq!(
            phrase("whole"),
            json!({"phrase": "epa 608", "quoted": quoted, "fit": "whole"})
        );
        assert_eq!(phrase("longer")["fit"], "part");
    }
    // The words alone still find the texts that hold them apart.
    let hits = coordinator_search(&app, "EPA plumber").await;
    assert_eq!(ids(&hits)[0], "apart");
    // A quoted phrase no text holds in that order finds nothing.
    assert!(coordinator_search(&app, "\"608 EPA\"").await.is_empty());
}

/// A typo of five or more characters finds the word, below the texts
/// that hold the query's own form; a compound matches its two words and
/// the reverse; explain names the forms matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_and_compounds_find_the_word_and_explain_says_which_form() {
    let app = spawn_app().await;
    coordinator_index(&app, json!([])).await;
    let hits = coordinator_search(&app, "forklfit").await;
    assert_eq!(ids(&hits)[0], "typed", "the exact form first");
    let fuzzy = hit(&hits, "fork1");
    assert_eq!(
        fuzzy["explain"]["fuzzy_terms"],
        json!([{"query": "forklfit", "matched": "forklift"}])
    );
    assert!(f(&fuzzy["explain"]["keyword_score"]) < f(&hits[0]["explain"]["keyword_score"]));
    assert!(
        hits[0]["explain"].get("fuzzy_terms").is_none(),
        "{}",
        hits[0]
    );
    // "fork lift" is "forklift"; configured synonyms add "lift truck".
    let hits = coordinator_search(&app, "fork lift").await;
    assert_eq!(
        hit(&hits, "fork1")["explain"]["synonyms"],
        json!([{"query": "fork lift", "matched": "forklift"}])
    );
    let hits = coordinator_search(&app, "forklift").await;
    assert!(ids(&hits).contains(&"truck"), "{hits:?}");
    // Four characters get no typo budget.
    assert!(coordinator_search(&app, "nate").await.len() == 1);
    assert!(coordinator_search(&app, "natx").await.is_empty());
}

/// Synonyms from configuration (`vectors.synonyms`) and from the index's
/// own definition find the other way of saying it, and explain lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synonyms_from_config_and_from_the_index_match_and_are_explained() {
    let app = spawn_app().await;
    coordinator_index(&app, json!([["PCT", "patient care technician"]])).await;
    let hits = coordinator_search(&app, "CNA").await;
    let mut found = ids(&hits);
    found.sort();
    assert_eq!(found, ["cna1", "cna2"], "not the nursing home cook");
    assert_eq!(
        hit(&hits, "cna1")["explain"]["synonyms"],
        json!([{"query": "cna", "matched": "certifi nurs assist"}])
    );
    assert_eq!(ids(&coordinator_search(&app, "pct").await), ["pct"]);
    // The definition keeps them, so a restart applies them too.
    let info: Value = app
        .get("/v1/vectors/index/coord")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["synonyms"],
        json!([["PCT", "patient care technician"]]),
        "{info}"
    );
    let (dir, guard) = app.shutdown().await;
    let app = crate::helpers::spawn_app_on(dir, &[]).await;
    assert_eq!(ids(&coordinator_search(&app, "pct").await), ["pct"]);
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_synonym_groups_are_refused_with_their_code() {
    let app = spawn_app().await;
    let many: Vec<Value> = (0..1025)
        .map(|i| json!([format!("a{i}"), format!("b{i}")]))
        .collect();
    let long = "x".repeat(65);
    for synonyms in [
        json!([["lonely"]]),
        json!([["a", ""]]),
        json!([["a", "two\nlines"]]),
        json!([["a", long]]),
        json!(many),
        json!([(0..17).map(|i| format!("m{i}")).collect::<Vec<_>>()]),
    ] {
        let response = app
            .post_json(
                "/v1/vectors/index",
                &json!({"name": "syn", "dimension": 4, "synonyms": synonyms}),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_synonyms").await;
    }
    let response = app.get("/v1/vectors/index/syn").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
