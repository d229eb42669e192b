//! Matrix search and the playbook learning loop through HTTP, on a small
//! seeded corpus.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp};
use reqwest::StatusCode;

async fn seeded_app(workers: usize) -> TestApp {
    let app = spawn_app().await;
    crate::helpers::seed_workers(&app, workers, None).await;
    app
}

async fn search(app: &TestApp, body: Value) -> Value {
    let response = app.post_json("/v1/matrix/search", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn record(app: &TestApp, query: &str, role: &str, workers: &[&str], score: f64) {
    let response = app
        .post_json(
            "/v1/matrix/playbooks/record",
            &json!({"query": query, "role": role, "worker_ids": workers, "score": score}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
}

fn hits(body: &Value) -> &Vec<Value> {
    body["hits"].as_array().unwrap()
}

fn distance_of(body: &Value, id: &str) -> Option<f64> {
    hits(body)
        .iter()
        .find(|h| h["worker_id"] == id)
        .map(|h| h["distance"].as_f64().unwrap())
}

const FORKLIFT: &str = "Forklift Operator";
const CNC: &str = "CNC Operator";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forklift_search_returns_forklift_operators() {
    let app = seeded_app(1500).await;
    let body = search(
        &app,
        json!({"query": "forklift operator with OSHA forklift certification", "k": 10}),
    )
    .await;
    let roles: Vec<&str> = hits(&body)
        .iter()
        .map(|h| h["worker"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.len(), 10);
    assert!(roles[..5].iter().all(|r| *r == FORKLIFT), "{roles:?}");
    assert!(
        roles.iter().filter(|r| **r == FORKLIFT).count() >= 8,
        "{roles:?}"
    );
    for hit in hits(&body) {
        assert_eq!(hit["boosted"], false);
        assert_eq!(hit["injected"], false);
        assert!(hit["worker"]["worker_id"] == hit["worker_id"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_with_score_one_halves_the_distance_and_respects_the_role_gate() {
    let app = seeded_app(1500).await;
    let query = "reliable forklift driver for night shifts";
    let forklift = json!({"query": query, "k": 10, "role": FORKLIFT, "use_playbook": true});
    let cnc = json!({"query": query, "k": 10, "role": CNC, "use_playbook": true});
    let before = search(&app, forklift.clone()).await;
    let cnc_before = search(&app, cnc.clone()).await;
    let chosen = hits(&before)[3]["worker_id"].as_str().unwrap().to_string();
    let original = distance_of(&before, &chosen).unwrap();

    record(&app, query, FORKLIFT, &[&chosen], 1.0).await;

    let after = search(&app, forklift.clone()).await;
    let boosted = distance_of(&after, &chosen).expect("still in the top k");
    assert_eq!(
        format!("{:.4}", boosted),
        format!("{:.4}", original * 0.5),
        "exactly halved"
    );
    let hit = hits(&after)
        .iter()
        .find(|h| h["worker_id"] == chosen.as_str())
        .unwrap();
    assert_eq!(hit["boosted"], true);
    assert_eq!(hit["injected"], false);
    assert_eq!(after["boosted"], 1);
    let sorted: Vec<f64> = hits(&after)
        .iter()
        .map(|h| h["distance"].as_f64().unwrap())
        .collect();
    assert!(
        sorted.windows(2).all(|w| w[0] <= w[1]),
        "re-sorted: {sorted:?}"
    );

    // The role gate, one way: a Forklift recording leaves a CNC search alone...
    assert_eq!(search(&app, cnc.clone()).await["hits"], cnc_before["hits"]);
    // ...and the other way: a CNC recording leaves the Forklift search alone.
    let cnc_worker = hits(&cnc_before)[0]["worker_id"]
        .as_str()
        .unwrap()
        .to_string();
    record(&app, query, CNC, &[&cnc_worker], 1.0).await;
    assert_eq!(search(&app, forklift).await["hits"], after["hits"]);
    let cnc_after = search(&app, cnc).await;
    assert_eq!(hits(&cnc_after)[0]["worker_id"], cnc_worker.as_str());
    assert_eq!(hits(&cnc_after)[0]["boosted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_workers_outside_the_top_k_are_injected_but_never_excluded_ones() {
    let app = seeded_app(1500).await;
    let query = "forklift operator warehouse loading docks";
    let wide = search(&app, json!({"query": query, "k": 20, "role": FORKLIFT})).await;
    let outsider = hits(&wide)[12]["worker_id"].as_str().unwrap().to_string();
    let outsider_distance = hits(&wide)[12]["distance"].as_f64().unwrap();
    let top = json!({"query": query, "k": 10, "role": FORKLIFT, "use_playbook": true});
    assert!(distance_of(&search(&app, top.clone()).await, &outsider).is_none());

    record(&app, query, FORKLIFT, &[&outsider], 1.0).await;

    let body = search(&app, top).await;
    let hit = hits(&body)
        .iter()
        .find(|h| h["worker_id"] == outsider.as_str())
        .expect("injected into the top k");
    assert_eq!(hit["injected"], true);
    assert_eq!(hit["boosted"], true);
    assert_eq!(
        format!("{:.4}", hit["distance"].as_f64().unwrap()),
        format!("{:.4}", outsider_distance * 0.5)
    );
    assert_eq!(body["injected"], 1);
    assert_eq!(hits(&body).len(), 10);

    let excluded = search(
        &app,
        json!({"query": query, "k": 10, "role": FORKLIFT, "use_playbook": true, "exclude_ids": [outsider]}),
    )
    .await;
    assert!(
        distance_of(&excluded, &outsider).is_none(),
        "excluded ids are never returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_honoured_even_by_injection() {
    let app = seeded_app(1500).await;
    let query = "forklift operator";
    let any_city = search(&app, json!({"query": query, "k": 30, "role": FORKLIFT})).await;
    let first = &hits(&any_city)[0];
    let (city, state) = (
        first["worker"]["city"].as_str().unwrap(),
        first["worker"]["state"].as_str().unwrap(),
    );
    let elsewhere = hits(&any_city)
        .iter()
        .find(|h| h["worker"]["city"] != city)
        .unwrap()["worker_id"]
        .as_str()
        .unwrap()
        .to_string();
    record(&app, query, FORKLIFT, &[&elsewhere], 1.0).await;

    let body = search(
        &app,
        json!({"query": query, "k": 10, "role": FORKLIFT, "city": city, "state": state, "use_playbook": true}),
    )
    .await;
    assert!(!hits(&body).is_empty());
    for hit in hits(&body) {
        assert_eq!(hit["worker"]["city"], city);
        assert_eq!(hit["worker"]["state"], state);
        assert_eq!(hit["worker"]["role"], FORKLIFT);
    }
    assert!(distance_of(&body, &elsewhere).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_matrix_requests_are_refused() {
    let app = spawn_app().await;
    let response = app
        .post_json("/v1/matrix/search", &json!({"query": "x", "k": 5}))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "no_workers").await;

    let app = seeded_app(50).await;
    let cases = [
        (
            "/v1/matrix/search",
            json!({"query": "", "k": 5}),
            "empty_query",
        ),
        (
            "/v1/matrix/search",
            json!({"query": "x", "k": 0}),
            "invalid_k",
        ),
        (
            "/v1/matrix/search",
            json!({"query": "x", "k": 5, "surprise": 1}),
            "invalid_body",
        ),
        (
            "/v1/matrix/playbooks/record",
            json!({"query": "x", "role": FORKLIFT, "worker_ids": ["W0000001"], "score": 1.5}),
            "invalid_score",
        ),
        (
            "/v1/matrix/playbooks/record",
            json!({"query": "x", "role": FORKLIFT, "worker_ids": [], "score": 0.5}),
            "invalid_worker_ids",
        ),
        (
            "/v1/matrix/playbooks/record",
            json!({"query": "x", "role": FORKLIFT, "worker_ids": ["W0000001", "nobody"], "score": 0.5}),
            "unknown_workers",
        ),
    ];
    for (path, body, code) in cases {
        let response = app.post_json(path, &body).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
        if code == "unknown_workers" {
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("nobody"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_parameters_and_the_filter_language_narrow_the_workers() {
    let app = seeded_app(2000).await;
    let body = search(
        &app,
        json!({
            "query": "forklift operator", "k": 20, "role": "Forklift Operator",
            "min_years": 3, "max_rate": 24.0, "certifications_any": ["OSHA Forklift Certification"],
            "available_by": "2026-12-07",
            "filter": {"shift": {"in": ["day", "night", "swing"]}},
        }),
    )
    .await;
    let hits = body["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "{body}");
    for hit in hits {
        let w = &hit["worker"];
        assert_eq!(w["role"], "Forklift Operator");
        assert!(w["years_experience"].as_u64().unwrap() >= 3, "{w}");
        assert!(w["hourly_rate"].as_f64().unwrap() <= 24.0, "{w}");
        assert!(
            w["certifications"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "OSHA Forklift Certification"),
            "{w}"
        );
        assert!(
            w["available_from"].as_str().unwrap() <= "2026-12-07T23:59:59Z",
            "{w}"
        );
        assert!(
            ["day", "night", "swing"].contains(&w["shift"].as_str().unwrap()),
            "{w}"
        );
    }
    // Exactly the workers that satisfy all of it, nearest first: the same
    // set as a brute-force read of every Forklift Operator.
    let all = search(
        &app,
        json!({"query": "forklift operator", "k": 200, "role": "Forklift Operator"}),
    )
    .await;
    let expected: Vec<&Value> = all["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            let w = &h["worker"];
            w["years_experience"].as_u64().unwrap() >= 3
                && w["hourly_rate"].as_f64().unwrap() <= 24.0
                && w["certifications"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == "OSHA Forklift Certification")
                && w["available_from"].as_str().unwrap() <= "2026-12-07T23:59:59Z"
                && ["day", "night", "swing"].contains(&w["shift"].as_str().unwrap())
        })
        .take(20)
        .collect();
    let got: Vec<&Value> = hits.iter().map(|h| &h["worker_id"]).collect();
    let want: Vec<&Value> = expected.iter().map(|h| &h["worker_id"]).collect();
    assert_eq!(got, want);

    let response = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "x", "k": 5, "available_by": "next monday"}),
        )
        .await;
    let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("available_by"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_finds_exact_terms_and_explains_the_playbook_boost() {
    let app = seeded_app(2000).await;
    // Typed parameters over the typed fields: CDL-A at $25/h or less.
    let body = search(
        &app,
        json!({"query": "truck driver", "k": 20, "skills_all": ["CDL-A"], "max_rate": 25}),
    )
    .await;
    assert!(!hits(&body).is_empty(), "{body}");
    for hit in hits(&body) {
        let w = &hit["worker"];
        assert!(
            w["skills"].as_array().unwrap().iter().any(|s| s == "CDL-A"),
            "{w}"
        );
        assert!(w["hourly_rate"].as_f64().unwrap() <= 25.0, "{w}");
    }

    // An exact certification: its holders fill the top 5.
    let query = "HazMat Endorsement";
    let body = search(&app, json!({"query": query, "k": 5, "explain": true})).await;
    for hit in hits(&body) {
        let certifications = hit["worker"]["certifications"].as_array().unwrap();
        assert!(
            certifications.iter().any(|c| c == "HazMat Endorsement"),
            "{hit}"
        );
        assert_eq!(hit["explain"]["mode"], "hybrid");
        assert_eq!(hit["explain"]["matched_terms"], json!(["hazmat", "endors"]));
    }

    // After a recording, the boost's arithmetic and its recording.
    let role = "CDL Driver";
    let asked =
        json!({"query": query, "k": 10, "role": role, "use_playbook": true, "explain": true});
    let before = search(&app, asked.clone()).await;
    let chosen = hits(&before)[6]["worker_id"].as_str().unwrap().to_string();
    let response = app
        .post_json(
            "/v1/matrix/playbooks/record",
            &json!({"query": query, "role": role, "worker_ids": [chosen], "score": 0.8}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let recording: Value = response.json().await.unwrap();
    let after = search(&app, asked).await;
    let hit = hits(&after)
        .iter()
        .find(|h| h["worker_id"] == chosen.as_str())
        .expect("still in the top 10");
    let explain = &hit["explain"];
    assert_eq!(hit["boosted"], true);
    assert!(
        (explain["boost_factor"].as_f64().unwrap() - 0.6).abs() < 1e-6,
        "{explain}"
    );
    let fused = explain["fused_distance"].as_f64().unwrap();
    assert!(
        (hit["distance"].as_f64().unwrap() - fused * 0.6).abs() < 1e-5,
        "{explain}"
    );
    assert_eq!(
        fused,
        distance_of(&before, &chosen).unwrap(),
        "the ranking before the boost is the one before the recording"
    );
    let recordings = explain["playbook"]["recordings"].as_array().unwrap();
    assert_eq!(recordings[0]["recording_id"], recording["recording_id"]);
    assert_eq!(recordings[0]["score"], 0.8);
    assert!(
        recordings[0]["query_distance"].as_f64().unwrap() < 1e-4,
        "same query"
    );
    // Workers without a boost say so.
    let other = hits(&after)
        .iter()
        .find(|h| h["worker_id"] != chosen.as_str())
        .unwrap();
    assert_eq!(other["explain"]["boost_factor"], 1.0);
    assert!(other["explain"]["playbook"].is_null());
}

/// Every worker recorded for a query comes back boosted, however many
/// times the query was recorded: the recordings share one playbook entry,
/// so they cannot crowd each other out of the lookup's
/// `matrix.playbook_candidates` (20) nearest items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_recorded_more_often_than_the_lookup_reads_keeps_every_boost() {
    let app = seeded_app(1500).await;
    let query = "forklift operator for the weekend";
    let wide = json!({"query": query, "k": 60, "role": FORKLIFT, "use_playbook": true});
    let before = search(&app, wide.clone()).await;
    let recorded: Vec<String> = hits(&before)
        .iter()
        .take(30)
        .map(|h| h["worker_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded.len(), 30, "the corpus has 30 forklift operators");
    let mut entry_ids = Vec::new();
    for worker in &recorded {
        let response = app
            .post_json(
                "/v1/matrix/playbooks/record",
                &json!({"query": query, "role": FORKLIFT, "worker_ids": [worker], "score": 0.6}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        entry_ids.push(answer["entry_id"].as_str().unwrap().to_string());
    }
    assert!(entry_ids.windows(2).all(|w| w[0] == w[1]), "one entry");

    let after = search(&app, wide).await;
    let boosted: Vec<&str> = hits(&after)
        .iter()
        .filter(|h| h["boosted"] == true)
        .map(|h| h["worker_id"].as_str().unwrap())
        .collect();
    for worker in &recorded {
        assert!(
            boosted.contains(&worker.as_str()),
            "{worker} lost its boost"
        );
    }
    let playbook: Value = app
        .get("/v1/vectors/index/playbook_memory")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(playbook["count"], 1, "one item for the query and role");
    let entry: Value = app
        .get(&format!(
            "/v1/vectors/index/playbook_memory/items/{}",
            entry_ids[0]
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(entry["metadata"]["recordings"], 30);
    assert_eq!(entry["metadata"]["workers"].as_object().unwrap().len(), 30);
}

/// Concurrent recordings of one query are folded in one at a time: none is
/// lost to another's read-modify-write, and each answer counts itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recordings_of_one_query_all_count() {
    let app = seeded_app(1500).await;
    let query = "forklift operator, early shift";
    let found = search(
        &app,
        json!({"query": query, "k": 16, "role": FORKLIFT, "use_playbook": false}),
    )
    .await;
    let workers: Vec<String> = hits(&found)
        .iter()
        .map(|h| h["worker_id"].as_str().unwrap().to_string())
        .collect();
    let bodies: Vec<Value> = workers
        .iter()
        .map(|worker| json!({"query": query, "role": FORKLIFT, "worker_ids": [worker], "score": 1.0}))
        .collect();
    let answers = futures::future::join_all(
        bodies
            .iter()
            .map(|body| app.post_json("/v1/matrix/playbooks/record", body)),
    )
    .await;
    let mut counts = Vec::new();
    let mut entry_id = String::new();
    for response in answers {
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        counts.push(answer["recordings"].as_u64().unwrap());
        entry_id = answer["entry_id"].as_str().unwrap().to_string();
    }
    counts.sort_unstable();
    let expected: Vec<u64> = (1..=workers.len() as u64).collect();
    assert_eq!(counts, expected, "each recording folded in on its own turn");
    let entry: Value = app
        .get(&format!(
            "/v1/vectors/index/playbook_memory/items/{entry_id}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(entry["metadata"]["recordings"], workers.len());
    for worker in &workers {
        assert_eq!(entry["metadata"]["workers"][worker]["best"]["score"], 1.0);
    }
}

/// The playbook the matrix creates is flat (it is only ever searched with
/// a role filter, an exact scan either way, so a graph only cost inserts
/// and rebuilds). The same recordings give exactly the same boosts as a
/// playbook created with an HNSW graph, as the matrix made it before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_playbook_gives_the_boosts_a_graph_playbook_gave() {
    let graph = seeded_app(1500).await;
    let flat = seeded_app(1500).await;
    let response = graph
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "playbook_memory", "dimension": 256, "kind": "hnsw",
                    "hnsw": {"m": 16, "ef_construction": 32, "ef_search": 64}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let queries = [
        ("reliable forklift driver for night shifts", FORKLIFT),
        ("forklift operator warehouse loading docks", FORKLIFT),
        ("cnc machinist with setup experience", CNC),
        ("forklift operator for the weekend", FORKLIFT),
    ];
    let searches: Vec<Value> = queries
        .iter()
        .map(|(query, role)| {
            json!({"query": query, "k": 15, "role": role, "use_playbook": true, "explain": true})
        })
        .collect();
    // The workers to record, chosen once (both corpora are the same seed).
    let before = search(&graph, searches[0].clone()).await;
    assert_eq!(
        before["hits"],
        search(&flat, searches[0].clone()).await["hits"]
    );
    for (round, (query, role)) in queries.iter().cycle().take(14).enumerate() {
        let top = search(&graph, json!({"query": query, "k": 12, "role": role})).await;
        let ids: Vec<&str> = hits(&top)
            .iter()
            .skip(round % 5)
            .step_by(3)
            .take(1 + round % 3)
            .map(|h| h["worker_id"].as_str().unwrap())
            .collect();
        let score = [1.0, 0.6, 0.25][round % 3];
        for app in [&graph, &flat] {
            record(app, query, role, &ids, score).await;
        }
    }
    let mut kinds = Vec::new();
    for app in [&graph, &flat] {
        let info = app.get("/v1/vectors/index/playbook_memory").await;
        kinds.push(info.json::<Value>().await.unwrap());
    }
    assert_eq!(kinds[0]["kind"], "hnsw");
    assert_eq!(kinds[1]["kind"], "flat");
    assert_eq!(kinds[0]["count"], kinds[1]["count"]);
    let mut boosted = 0;
    for body in &searches {
        let a = search(&graph, body.clone()).await;
        let b = search(&flat, body.clone()).await;
        let view = |answer: &Value| -> Vec<(String, String, Value, Value, Value)> {
            hits(answer)
                .iter()
                .map(|h| {
                    (
                        h["worker_id"].as_str().unwrap().to_string(),
                        format!("{:.5}", h["distance"].as_f64().unwrap()),
                        h["boosted"].clone(),
                        h["injected"].clone(),
                        h["explain"]["boost_factor"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(view(&a), view(&b), "{body}");
        boosted += a["boosted"].as_u64().unwrap();
    }
    assert!(boosted >= 8, "the recordings boost: {boosted}");
}

/// A recording that meets a panicking playbook is not refused: a batch
/// the ended incarnation never wrote goes to the next one (the entry's
/// turn is still the recording's), and every recording is kept. The chaos
/// mix counted 14 `503 index_unavailable` records in one such window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_during_playbook_panics_are_all_acknowledged_and_kept() {
    let app = crate::helpers::spawn_app_with(&[("faults.enabled", "true")]).await;
    crate::helpers::seed_workers(&app, 40, None).await;
    let found = search(
        &app,
        json!({"query": "forklift", "k": 1, "mode": "semantic"}),
    )
    .await;
    let worker = hits(&found)[0]["worker_id"].as_str().unwrap().to_string();
    record(&app, "warm up", "Forklift Operator", &[&worker], 1.0).await;
    let mut recorded = 0;
    for round in 0..10 {
        // The last round's panic may have landed after its recordings: the
        // fault needs a loaded incarnation to be delivered to.
        crate::helpers::eventually(
            "the playbook is loaded",
            std::time::Duration::from_secs(30),
            || async {
                app.get("/v1/vectors/index/playbook_memory").await.status() == StatusCode::OK
            },
        )
        .await;
        let records = (0..12).map(|i| {
            let app = &app;
            let worker = worker.clone();
            async move {
                let body = json!({"query": format!("round {round} query {i}"), "role": "Forklift Operator",
                                  "worker_ids": [worker], "score": 0.5});
                let response = app.post_json("/v1/matrix/playbooks/record", &body).await;
                (response.status(), response.text().await.unwrap())
            }
        });
        let panic = app.inject_fault("index:playbook_memory", "panic");
        let (results, panicked) = futures::join!(futures::future::join_all(records), panic);
        assert_eq!(
            panicked.status(),
            StatusCode::ACCEPTED,
            "{}",
            panicked.text().await.unwrap()
        );
        for (status, body) in results {
            assert_eq!(status, StatusCode::OK, "{body}");
            recorded += 1;
        }
    }
    // Every acknowledged recording is in the playbook: one entry per query.
    let info: Value = app
        .get("/v1/vectors/index/playbook_memory")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["count"].as_u64(), Some(recorded + 1), "{info}");
}

/// The great-circle distance in miles, by the chord between the points'
/// unit vectors (not the service's haversine).
fn chord_miles(a: (f64, f64), b: (f64, f64)) -> f64 {
    let unit = |(lat, lon): (f64, f64)| {
        let (lat, lon) = (f64::to_radians(lat), f64::to_radians(lon));
        [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
    };
    let (u, v) = (unit(a), unit(b));
    let chord = u
        .iter()
        .zip(&v)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    2.0 * 6371.0088 * (chord / 2.0).asin() / 1.609344
}

/// `near` keeps exactly the workers living within the radius, of a city
/// of the shipped table or of a point: the same set as a distance
/// computed here over every seeded worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_keeps_exactly_the_workers_within_the_radius() {
    const WORKERS: u64 = 2000;
    let app = seeded_app(WORKERS as usize).await;
    let joliet = (41.5250, -88.0817);
    for (near, miles) in [
        (json!({"city": "Joliet", "state": "IL", "miles": 25}), 25.0),
        (
            json!({"city": "joliet", "state": "il", "km": 64.0}),
            64.0 / 1.609344,
        ),
        (json!({"lat": joliet.0, "lon": joliet.1, "miles": 40}), 40.0),
    ] {
        let mut want: Vec<String> = (0..WORKERS)
            .map(|i| lakehouse::domain::workers::worker(7, i))
            .filter(|w| {
                let at = w.location.expect("every corpus city has a place");
                chord_miles((at.lat, at.lon), joliet) <= miles
            })
            .map(|w| w.worker_id)
            .collect();
        want.sort();
        assert!(
            want.len() > 10 && want.len() < 200,
            "{near}: {}",
            want.len()
        );
        let body = search(
            &app,
            json!({"query": "warehouse work", "k": 200, "near": near, "explain": true}),
        )
        .await;
        // explain says how far each one lives from the centre.
        for hit in body["hits"].as_array().unwrap() {
            let at = &hit["worker"]["location"];
            let expected = chord_miles(
                (at["lat"].as_f64().unwrap(), at["lon"].as_f64().unwrap()),
                joliet,
            );
            let said = hit["explain"]["distance_miles"].as_f64().unwrap();
            assert!((said - expected).abs() < 1e-6 && said <= miles, "{hit}");
        }
        let mut got: Vec<String> = body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["worker_id"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        assert_eq!(got, want, "{near}");
    }
    // Joliet and Aurora (18 miles off) are inside 25 miles; Chicago (35) is not.
    let body = search(
        &app,
        json!({"query": "warehouse work", "k": 200, "near": {"city": "Joliet", "state": "IL", "miles": 25}}),
    )
    .await;
    let cities: std::collections::BTreeSet<&str> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["worker"]["city"].as_str().unwrap())
        .collect();
    assert_eq!(cities, ["Aurora", "Joliet"].into());

    let response = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "x", "k": 5, "near": {"city": "Atlantis", "state": "GA", "miles": 5}}),
        )
        .await;
    let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "unknown_city").await;
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("city table"));
    for (near, says) in [
        (json!({"city": "Joliet", "miles": 5}), "city and state"),
        (
            json!({"city": "Joliet", "state": "IL", "lat": 41.0, "lon": -88.0, "miles": 5}),
            "city and state",
        ),
        (json!({"lat": 95.0, "lon": 0.0, "miles": 5}), "lat"),
        (json!({"city": "Joliet", "state": "IL"}), "radius"),
        (
            json!({"city": "Joliet", "state": "IL", "miles": 0}),
            "radius",
        ),
        (
            json!({"city": "Joliet", "state": "IL", "miles": 1e12}),
            "radius",
        ),
        (
            json!({"city": "Joliet", "state": "IL", "miles": 5, "km": 8}),
            "not both",
        ),
    ] {
        let response = app
            .post_json(
                "/v1/matrix/search",
                &json!({"query": "x", "k": 5, "near": near}),
            )
            .await;
        let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("near") && message.contains(says),
            "{near}: {message}"
        );
    }
    let response = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "x", "k": 5, "near": {"city": "Joliet", "state": "IL", "miles": 5, "zip": "60431"}}),
        )
        .await;
    assert!(response.status().is_client_error(), "{}", response.status());
}

/// A worker free on every day of `from..=to`, as the matrix reads it.
fn free_between(w: &Value, from: &str, to: &str) -> bool {
    let started = w["available_from"].as_str().unwrap()[..10] <= *from;
    let stays = w["available_to"].as_str().is_none_or(|last| last >= to);
    let off = w["unavailable"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|range| {
            range["from"].as_str().unwrap() <= to && range["to"].as_str().unwrap() >= from
        });
    started && stays && !off
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_windows_shifts_and_valid_certifications_narrow_the_workers() {
    let app = seeded_app(2000).await;
    // Exactly the CDL drivers free on every day of the window and on
    // nights or weekends: the same set as a brute-force read of them all.
    let (from, to) = ("2026-12-10", "2026-12-20");
    let narrowed = search(
        &app,
        json!({"query": "truck driver", "k": 200, "role": "CDL Driver",
               "available_between": {"from": from, "to": to}, "shift_any": ["night", "weekend"]}),
    )
    .await;
    let all = search(
        &app,
        json!({"query": "truck driver", "k": 200, "role": "CDL Driver"}),
    )
    .await;
    let ids = |hits: Vec<&Value>| -> std::collections::BTreeSet<String> {
        hits.iter()
            .map(|h| h["worker_id"].as_str().unwrap().to_string())
            .collect()
    };
    let expected = ids(hits(&all)
        .iter()
        .filter(|h| {
            let w = &h["worker"];
            free_between(w, from, to)
                && ["night", "weekend"].contains(&w["shift"].as_str().unwrap())
        })
        .collect());
    // The seeded corpus has both kinds: some drivers are off or gone
    // inside the window, and some are not.
    let off = hits(&all)
        .iter()
        .filter(|h| !free_between(&h["worker"], from, to))
        .count();
    assert!(off > 0 && !expected.is_empty(), "{off} off, {expected:?}");
    assert_eq!(ids(hits(&narrowed).iter().collect()), expected);

    // Certifications with an expiry, beside the plain form.
    let drivers = [
        (
            "X1",
            json!([{"name": "CDL Class A", "expires": "2026-12-15"}]),
        ),
        (
            "X2",
            json!([{"name": "CDL Class A", "expires": "2026-12-18"}]),
        ),
        ("X3", json!(["CDL Class A"])),
        (
            "X4",
            json!([{"name": "CDL Class A", "expires": "2026-12-17"}, "OSHA 10"]),
        ),
        ("X5", json!([{"name": "CDL Class A", "expires": null}])),
    ];
    let items: Vec<Value> = drivers
        .iter()
        .map(|(id, certifications)| {
            json!({"id": id, "text": format!("Yard jockey {id} in Joliet, IL"),
                   "metadata": {"worker_id": id, "role": "Yard Jockey", "city": "Joliet", "state": "IL",
                                "available_from": "2026-12-01T08:00:00Z",
                                "unavailable": [{"from": "2026-12-12", "to": "2026-12-14"}],
                                "certifications": certifications}})
        })
        .collect();
    app.add_items("workers", &items).await;
    let found = |body: &Value| ids(hits(body).iter().collect());
    let held = search(
        &app,
        json!({"query": "yard jockey", "k": 10, "role": "Yard Jockey",
               "certifications_any": ["CDL Class A"]}),
    )
    .await;
    assert_eq!(
        found(&held).len(),
        5,
        "the object form is held by name: {held}"
    );
    // Valid on the 18th: an expiry on that very day counts, the 17th's
    // does not; the plain form and a null expiry never expire.
    let valid = search(
        &app,
        json!({"query": "yard jockey", "k": 10, "role": "Yard Jockey",
               "certifications_any": ["CDL Class A"], "certifications_valid_on": "2026-12-18"}),
    )
    .await;
    assert_eq!(found(&valid), ["X2", "X3", "X5"].map(String::from).into());
    // A window touching the days off on its last day finds none of them;
    // the day after them finds all.
    for (from, to, expected) in [
        ("2026-12-10", "2026-12-12", 0),
        ("2026-12-15", "2026-12-16", 5),
    ] {
        let body = search(
            &app,
            json!({"query": "yard jockey", "k": 10, "role": "Yard Jockey",
                   "available_between": {"from": from, "to": to}}),
        )
        .await;
        assert_eq!(found(&body).len(), expected, "{from}..{to}: {body}");
    }

    // The fill validator says the same, with the dates.
    let fill = |from: &str, to: &str, workers: &[&str]| {
        json!({"kind": "fill", "worker_ids": workers,
               "order": {"role": "Yard Jockey", "city": "Joliet", "state": "IL", "count": workers.len(),
                         "dates": {"from": from, "to": to}, "certifications": ["CDL Class A"]}})
    };
    let response = app
        .post_json(
            "/v1/validate",
            &fill("2026-12-15", "2026-12-18", &["X2", "X3"]),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
    let response = app
        .post_json(
            "/v1/validate",
            &fill("2026-12-14", "2026-12-17", &["X1", "X5"]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let verdict: Value = response.json().await.unwrap();
    let errors: Vec<(String, String)> = verdict["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let kinds: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["unavailable", "expired_certification", "unavailable"],
        "{verdict}"
    );
    assert!(
        errors[0].1.contains("2026-12-12") && errors[0].1.contains("2026-12-14"),
        "{verdict}"
    );
    assert!(errors[1].1.contains("2026-12-15"), "{verdict}");

    // A worker's typed fields are checked on write.
    for (metadata, field) in [
        (json!({"shift": "graveyard"}), "items[0].metadata.shift"),
        (
            json!({"unavailable": [{"from": "2026-12-12", "to": "2026-12-01"}]}),
            "items[0].metadata.unavailable[0]",
        ),
        (
            json!({"certifications": [{"name": "CDL Class A", "expires": "whenever"}]}),
            "items[0].metadata.certifications[0]",
        ),
    ] {
        let response = app
            .post_json(
                "/v1/vectors/index/workers/add",
                &json!({"items": [{"id": "bad", "text": "a worker", "metadata": metadata}]}),
            )
            .await;
        let body = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
        )
        .await;
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }

    // Hostile windows and days.
    for (body, code) in [
        (
            json!({"available_between": {"from": "2026-12-20", "to": "2026-12-10"}}),
            "invalid_window",
        ),
        (
            json!({"available_between": {"from": "2026-02-30", "to": "2026-03-01"}}),
            "invalid_window",
        ),
        (
            json!({"available_between": {"from": "9999-12-31", "to": "9999-12-31"}}),
            "invalid_window",
        ),
        (
            json!({"certifications_valid_on": "2026-12-18"}),
            "invalid_body",
        ),
        (
            json!({"certifications_any": ["CDL Class A"], "certifications_valid_on": "soon"}),
            "invalid_body",
        ),
        (json!({"shift_any": []}), "invalid_body"),
    ] {
        let mut request = json!({"query": "driver", "k": 5});
        request
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let response = app.post_json("/v1/matrix/search", &request).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    let response = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "driver", "k": 5, "shift_any": ["graveyard"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
