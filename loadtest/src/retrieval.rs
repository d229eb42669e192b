//! `loadtest retrieval`: what hybrid search buys and costs on the seeded
//! corpus, against a running `lakehouse serve`.
//!
//! Quality: every certification of the `workers` dataset, and a sample of
//! its skills, is asked as the query itself ("HazMat Endorsement",
//! "CDL-A") through `/v1/matrix/search` in each mode, without any filter;
//! the share of the top 10 that holds exactly that certification or skill
//! is the precision@10 of the mode. The terms come from the server (SQL
//! over the `workers` dataset), so the check follows the corpus.
//!
//! Latency: the same queries, in turn, from 1 and from `clients` clients
//! for `duration` seconds per mode. Run the server with
//! `LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0`: semantic searches would
//! otherwise be answered from the result cache and hybrid ones not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{histogram, Latency};

pub const MODES: [&str; 3] = ["semantic", "hybrid", "keyword"];

pub struct RetrievalOptions {
    pub base: String,
    pub clients: usize,
    pub duration: Duration,
    /// Skills asked besides every certification.
    pub skills: usize,
    pub k: usize,
}

/// One term asked as a query, and what each mode found.
#[derive(Debug, Serialize)]
pub struct TermRow {
    pub term: String,
    /// `certification` or `skill`.
    pub field: &'static str,
    /// Workers holding it, in the whole corpus.
    pub holders: u64,
    /// Per mode (in [`MODES`] order): holders in the top k / k.
    pub precision: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct ModeLatency {
    pub mode: String,
    pub clients: usize,
    pub searches_per_second: f64,
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct RetrievalReport {
    pub k: usize,
    pub terms: Vec<TermRow>,
    /// Mean precision@k per mode, in [`MODES`] order.
    pub mean_precision: Vec<f64>,
    pub latency: Vec<ModeLatency>,
}

impl RetrievalReport {
    pub fn summary(&self) -> String {
        let mut out = format!(
            "precision@{} over {} exact terms (mean):",
            self.k,
            self.terms.len()
        );
        for (mode, p) in MODES.iter().zip(&self.mean_precision) {
            out.push_str(&format!(" {mode} {p:.3}"));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<44} {:>8} {:>9} {:>9} {:>9}\n",
            "term", "holders", MODES[0], MODES[1], MODES[2]
        ));
        for row in &self.terms {
            out.push_str(&format!(
                "{:<44} {:>8} {:>9.2} {:>9.2} {:>9.2}\n",
                format!("{} ({})", row.term, row.field),
                row.holders,
                row.precision[0],
                row.precision[1],
                row.precision[2]
            ));
        }
        out.push_str(&format!(
            "{:<10} {:>8} {:>12} {:>9} {:>9}\n",
            "mode", "clients", "searches/s", "p50 ms", "p99 ms"
        ));
        for row in &self.latency {
            out.push_str(&format!(
                "{:<10} {:>8} {:>12.0} {:>9.2} {:>9.2}\n",
                row.mode,
                row.clients,
                row.searches_per_second,
                row.latency.p50_ms,
                row.latency.p99_ms
            ));
        }
        out
    }
}

pub async fn run(http: &reqwest::Client, options: &RetrievalOptions) -> Result<RetrievalReport> {
    let mut terms = distinct(http, &options.base, "certifications", usize::MAX).await?;
    let certifications = terms.len();
    terms.extend(distinct(http, &options.base, "skills", options.skills).await?);
    if terms.is_empty() {
        bail!("the workers dataset has no certifications: run `lakehouse seed --workers N` first");
    }
    let mut rows = Vec::with_capacity(terms.len());
    for (i, (term, holders)) in terms.iter().enumerate() {
        let field = if i < certifications {
            "certifications"
        } else {
            "skills"
        };
        let mut precision = Vec::with_capacity(MODES.len());
        for mode in MODES {
            let hits = search(http, &options.base, term, mode, options.k).await?;
            let holding = hits
                .iter()
                .filter(|h| {
                    h["worker"][field]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == term.as_str()))
                })
                .count();
            precision.push(holding as f64 / options.k as f64);
        }
        rows.push(TermRow {
            term: term.clone(),
            field: if i < certifications {
                "certification"
            } else {
                "skill"
            },
            holders: *holders,
            precision,
        });
    }
    let mean_precision = (0..MODES.len())
        .map(|m| rows.iter().map(|r| r.precision[m]).sum::<f64>() / rows.len() as f64)
        .collect();

    let queries: Arc<Vec<String>> = Arc::new(terms.into_iter().map(|(t, _)| t).collect());
    let mut latency = Vec::new();
    for mode in MODES {
        for clients in [1, options.clients] {
            latency.push(load(http, options, mode, clients, queries.clone()).await?);
        }
    }
    Ok(RetrievalReport {
        k: options.k,
        terms: rows,
        mean_precision,
        latency,
    })
}

/// The distinct values of a list column of `workers` with their holder
/// counts, most held first, at most `limit`.
async fn distinct(
    http: &reqwest::Client,
    base: &str,
    column: &str,
    limit: usize,
) -> Result<Vec<(String, u64)>> {
    let sql = format!(
        "SELECT term, count(*) AS holders FROM (SELECT unnest({column}) AS term FROM workers) \
         GROUP BY term ORDER BY holders DESC, term"
    );
    let response = http
        .post(format!("{base}/v1/sql"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("listing {column} failed ({status}): {body}");
    }
    Ok(body["rows"]
        .as_array()
        .context("no rows")?
        .iter()
        .filter_map(|r| Some((r[0].as_str()?.to_string(), r[1].as_u64()?)))
        .take(limit)
        .collect())
}

async fn search(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    mode: &str,
    k: usize,
) -> Result<Vec<Value>> {
    let response = http
        .post(format!("{base}/v1/matrix/search"))
        .json(&json!({"query": query, "k": k, "mode": mode}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("search '{query}' ({mode}) failed ({status}): {body}");
    }
    Ok(body["hits"].as_array().cloned().unwrap_or_default())
}

/// `clients` clients searching in `mode` for the duration.
async fn load(
    http: &reqwest::Client,
    options: &RetrievalOptions,
    mode: &'static str,
    clients: usize,
    queries: Arc<Vec<String>>,
) -> Result<ModeLatency> {
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, base, stop, all, queries) = (
            http.clone(),
            options.base.clone(),
            stop.clone(),
            all.clone(),
            queries.clone(),
        );
        let k = options.k;
        tasks.push(tokio::spawn(async move {
            let mut mine = histogram();
            let mut next = client;
            while !stop.load(Ordering::Relaxed) {
                let query = &queries[next % queries.len()];
                next += clients;
                let sent = Instant::now();
                search(&http, &base, query, mode, k).await?;
                mine.saturating_record(sent.elapsed().as_micros() as u64);
            }
            all.lock().await.add(&mine)?;
            Ok::<(), anyhow::Error>(())
        }));
    }
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let all = all.lock().await;
    Ok(ModeLatency {
        mode: mode.to_string(),
        clients,
        searches_per_second: all.len() as f64 / seconds,
        latency: Latency::of(&all),
    })
}
