//! `loadtest abuse`: hostile inputs beside a normal load.
//!
//! First a quiet phase: `--normal-clients` clients search workers
//! (`/v1/matrix/search`, the hybrid default) and record placements for
//! `--duration` seconds. Then, for each hostile kind in turn, the same
//! normal load runs again while `--hostile-clients` clients send only that
//! kind for `--duration` seconds. Reported per phase: the normal load's
//! p50/p99 and errors, and the hostile requests' statuses.
//!
//! The targets: no 5xx among hostile answers (a documented cap's `503
//! too_many_*` is counted apart: it is the bound doing its job), no actor
//! restart and no process restart, and the normal p99 within 2x of the
//! quiet phase's.
//!
//! Needs a seeded server (`lakehouse seed`); with tokens, a write token in
//! `$LAKEHOUSE_TOKEN` (hostile bypass attempts are sent without it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{client, histogram, loopback_base, Latency};

pub struct AbuseOptions {
    pub target: String,
    pub duration: Duration,
    pub normal_clients: usize,
    pub hostile_clients: usize,
    /// Only these kinds (all when empty).
    pub kinds: Vec<String>,
}

/// Every hostile kind, in the order they run (`oversized_body` alternates
/// a body over its route's limit and a compressed one).
pub const KINDS: [&str; 13] = [
    "encoded_path",
    "deep_sql",
    "long_sql",
    "function_bomb",
    "validate_brackets",
    "chat_flood",
    "fresh_filter_fields",
    "oversized_body",
    "end_of_time",
    "bad_ingest",
    "bad_object_keys",
    "mcp_sessions",
    "wrong_host",
];

#[derive(Debug, Serialize)]
pub struct Phase {
    pub kind: String,
    pub normal: Latency,
    pub normal_errors: u64,
    /// Hostile answers by status.
    pub hostile: BTreeMap<u16, u64>,
    /// Hostile 5xx that are not a documented cap (`503 too_many_*`).
    pub hostile_server_errors: u64,
    /// `503 too_many_*`: the caps answering.
    pub capped: u64,
}

#[derive(Debug, Serialize)]
pub struct AbuseReport {
    pub quiet: Phase,
    pub phases: Vec<Phase>,
    pub actor_restarts: u64,
    pub process_restarted: bool,
    pub worst_p99_ratio: f64,
}

const QUERIES: [(&str, &str); 6] = [
    ("forklift operator with OSHA 10", "Forklift Operator"),
    ("reliable night shift welder", "Welder"),
    ("CDL driver with hazmat endorsement", "CDL Driver"),
    ("picker packer for a warehouse surge", "Picker/Packer"),
    ("CNC operator who reads blueprints", "CNC Operator"),
    ("machine operator, second shift", "Machine Operator"),
];

pub async fn run(options: AbuseOptions) -> Result<AbuseReport> {
    let base = loopback_base(&options.target)?;
    let http = client(options.normal_clients + options.hostile_clients)?;
    let bare = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let restarts_before = restarts(&http, &base).await?;
    let started_before = process_start(&http, &base).await?;

    let quiet = phase(&http, &bare, &base, &options, None).await?;
    let mut phases = Vec::new();
    for kind in KINDS {
        if !options.kinds.is_empty() && !options.kinds.iter().any(|k| k == kind) {
            continue;
        }
        let phase = phase(&http, &bare, &base, &options, Some(kind)).await?;
        eprintln!(
            "{kind:>20}: normal p99 {:.1} ms ({} errors); hostile {:?}",
            phase.normal.p99_ms, phase.normal_errors, phase.hostile
        );
        phases.push(phase);
    }
    let actor_restarts = restarts(&http, &base).await? - restarts_before;
    let process_restarted = process_start(&http, &base).await? != started_before;
    let worst_p99_ratio = phases
        .iter()
        .map(|p| p.normal.p99_ms / quiet.normal.p99_ms.max(0.001))
        .fold(0.0, f64::max);
    Ok(AbuseReport {
        quiet,
        phases,
        actor_restarts,
        process_restarted,
        worst_p99_ratio,
    })
}

async fn phase(
    http: &reqwest::Client,
    bare: &reqwest::Client,
    base: &str,
    options: &AbuseOptions,
    kind: Option<&'static str>,
) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let capped = Arc::new(AtomicU64::new(0));
    let server_errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client_id in 0..options.normal_clients {
        let (http, base, stop, latencies, errors) = (
            http.clone(),
            base.to_string(),
            stop.clone(),
            latencies.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = client_id;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let ok = normal_step(&http, &base, n).await;
                let us = started.elapsed().as_micros() as u64;
                let _ = latencies.lock().await.record(us.max(1));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    if let Some(kind) = kind {
        for client_id in 0..options.hostile_clients {
            let (http, bare, base, stop) =
                (http.clone(), bare.clone(), base.to_string(), stop.clone());
            let (statuses, capped, server_errors) =
                (statuses.clone(), capped.clone(), server_errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = client_id;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let Ok(response) = hostile(&http, &bare, &base, kind, n).await else {
                        continue;
                    };
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let code = body["error"]["code"].as_str().unwrap_or("");
                    *statuses.lock().await.entry(status).or_default() += 1;
                    if status == 503 && code.starts_with("too_many_") {
                        capped.fetch_add(1, Ordering::Relaxed);
                    } else if status >= 500 {
                        server_errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{kind}: {status} {body}");
                    }
                }
            }));
        }
    }
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let normal = Latency::of(&*latencies.lock().await);
    let hostile = statuses.lock().await.clone();
    Ok(Phase {
        kind: kind.unwrap_or("quiet").to_string(),
        normal,
        normal_errors: errors.load(Ordering::Relaxed),
        hostile,
        hostile_server_errors: server_errors.load(Ordering::Relaxed),
        capped: capped.load(Ordering::Relaxed),
    })
}

/// A matrix search; every fifth step also records its first hit.
async fn normal_step(http: &reqwest::Client, base: &str, n: usize) -> bool {
    let (query, role) = QUERIES[n % QUERIES.len()];
    let searched = http
        .post(format!("{base}/v1/matrix/search"))
        .json(&json!({"query": query, "k": 10, "role": role, "use_playbook": true}))
        .send()
        .await;
    let Ok(searched) = searched else { return false };
    if !searched.status().is_success() {
        return false;
    }
    let Ok(found) = searched.json::<Value>().await else {
        return false;
    };
    if n % 5 != 0 {
        return true;
    }
    let Some(worker) = found["hits"][0]["worker_id"].as_str() else {
        return true;
    };
    let recorded = http
        .post(format!("{base}/v1/matrix/playbooks/record"))
        .json(&json!({"query": query, "role": role, "worker_ids": [worker], "score": 0.8}))
        .send()
        .await;
    recorded.is_ok_and(|r| r.status().is_success())
}

fn sql_chain(terms: usize) -> Value {
    json!({"sql": format!("SELECT {}", vec!["1"; terms].join("+"))})
}

async fn hostile(
    http: &reqwest::Client,
    bare: &reqwest::Client,
    base: &str,
    kind: &str,
    n: usize,
) -> Result<reqwest::Response> {
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let response = match kind {
        // No token, one letter encoded: the bypass the front door closed.
        "encoded_path" => {
            let paths = [
                ("POST", "/v1/%73ql"),
                ("GET", "/v1/wh%6Fami"),
                ("DELETE", "/v1/vector%73/index/probe"),
                ("POST", "/v1/matrix/playbooks/recor%64"),
                ("POST", "/mc%70"),
            ];
            let (method, path) = paths[n % paths.len()];
            bare.request(method.parse()?, format!("{base}{path}"))
                .json(&json!({"sql": "SELECT 1"}))
                .send()
                .await?
        }
        "deep_sql" => {
            post(
                "/v1/sql",
                sql_chain(if n % 2 == 0 { 2_000 } else { 20_000 }),
            )
            .await?
        }
        "long_sql" => post("/v1/sql", sql_chain(200_000)).await?,
        "function_bomb" => {
            let bombs = [
                "SELECT length(repeat('x', 1500000000))",
                "SELECT cardinality(range(1, 2000000000))",
                "SELECT length(lpad('x', 2000000000))",
                "SELECT cardinality(array_repeat(1, 2000000000))",
                // Within the per-row cap, past the batch's.
                "SELECT max(length(repeat(cast(value AS varchar), 100000))) FROM range(100000)",
                "SELECT max(length(repeat('x', 250000))) FROM range(1000000)",
                "SELECT cardinality(array_repeat(array_repeat(array_repeat(1, 1000), 1000), 1000))",
                "SELECT length(replace(repeat('x', 1000), 'x', repeat('y', 1000)))",
            ];
            post("/v1/sql", json!({"sql": bombs[n % bombs.len()]})).await?
        }
        "validate_brackets" => {
            post(
                "/v1/validate",
                json!({"kind": "sms", "to": "555-123-4567", "body": "[".repeat(1_000_000)}),
            )
            .await?
        }
        "chat_flood" => {
            post(
                "/v1/chat",
                json!({"messages": [{"role": "user", "content": "who can weld in Joliet?"}],
                       "context": {"source": "workers", "k": 20}}),
            )
            .await?
        }
        "fresh_filter_fields" => {
            let mut filter = serde_json::Map::new();
            for i in 0..16 {
                filter.insert(format!("fresh_{n}_{i}"), json!("x"));
            }
            post(
                "/v1/vectors/index/workers/search",
                json!({"text": "welder", "k": 10, "filter": filter}),
            )
            .await?
        }
        "oversized_body" if n % 2 == 1 => {
            // A small body that would inflate: refused before it is read.
            http.post(format!("{base}/v1/matrix/search"))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])
                .send()
                .await?
        }
        "oversized_body" => {
            post(
                "/v1/matrix/search",
                json!({"query": "welder", "k": 10, "exclude_ids": ["x".repeat(300_000)]}),
            )
            .await?
        }
        "end_of_time" => {
            post(
                "/v1/matrix/search",
                json!({"query": "welder", "k": 5, "available_by": "+262142-12-31"}),
            )
            .await?
        }
        "bad_ingest" => {
            let (content_type, body) = if n % 2 == 0 {
                ("text/csv", "a,a\n1,2\n")
            } else {
                ("text/plain", "a,b\n1,2\n")
            };
            http.post(format!("{base}/v1/ingest/abuse_{}", n % 4))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await?
        }
        "bad_object_keys" => {
            let keys = ["x%231", "abuse/a%0Aforged", "abuse/%2e%2e/etc"];
            http.put(format!(
                "{base}/v1/storage/objects/{}",
                keys[n % keys.len()]
            ))
            .body("x")
            .send()
            .await?
        }
        "mcp_sessions" => {
            let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-03-26", "capabilities": {},
                "clientInfo": {"name": "abuse", "version": "1"}}});
            http.post(format!("{base}/mcp"))
                .header("accept", "application/json, text/event-stream")
                .json(&initialize)
                .send()
                .await?
        }
        "wrong_host" => {
            http.get(format!("{base}/v1/whoami"))
                .header("host", "rebound.attacker.example")
                .send()
                .await?
        }
        other => anyhow::bail!("no hostile kind '{other}'"),
    };
    Ok(response)
}

/// Restarts of every node in the supervision tree.
async fn restarts(http: &reqwest::Client, base: &str) -> Result<u64> {
    fn sum(node: &Value) -> u64 {
        node["restarts"].as_u64().unwrap_or(0)
            + node["children"]
                .as_array()
                .map_or(0, |c| c.iter().map(sum).sum())
    }
    let tree: Value = http
        .get(format!("{base}/v1/supervision"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(sum(&tree))
}

/// `process_start_time_seconds` from `/metrics`.
async fn process_start(http: &reqwest::Client, base: &str) -> Result<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_start_time_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .context("no process_start_time_seconds in /metrics")
}
