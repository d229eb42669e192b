//! `lakehouse seed`: loads the synthetic workers corpus into a running
//! service through its public API, the same path a user's tools take:
//! each worker becomes an item of the `workers` vector index (text = its
//! profile sentence, embedded by the service; metadata = its fields), and
//! the corpus is ingested as the `workers` dataset (JSON lines through
//! `/v1/ingest/workers?mode=replace`) so SQL can count, filter and join it.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::actors::matrix::WORKERS;
use crate::domain::workers::worker;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// `http://127.0.0.1:3100`
    pub target: String,
    pub workers: usize,
    pub seed: u64,
    pub batch: usize,
    pub concurrency: usize,
    /// A `write` token, when the service has tokens configured.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct SeedReport {
    pub workers: usize,
    pub seconds: f64,
    /// Items the service named as possible duplicates (0 for the
    /// generated corpus, whose workers are all distinct).
    pub possible_duplicates: usize,
}

pub async fn run(options: SeedOptions) -> Result<SeedReport> {
    if options.batch == 0 || options.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &options.token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .default_headers(headers)
        .build()?;
    let base = options.target.trim_end_matches('/').to_string();
    ensure_index(&client, &base).await?;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let hinted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..options.concurrency {
        let (client, base, next, done, hinted, options) = (
            client.clone(),
            base.clone(),
            next.clone(),
            done.clone(),
            hinted.clone(),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(options.batch, Ordering::SeqCst);
                if start >= options.workers {
                    return Ok::<(), anyhow::Error>(());
                }
                let end = (start + options.batch).min(options.workers);
                let items: Vec<Value> = (start..end)
                    .map(|i| {
                        let w = worker(options.seed, i as u64);
                        let profile = w.profile();
                        json!({"id": w.worker_id.clone(), "text": profile, "metadata": w})
                    })
                    .collect();
                let duplicates = add_batch(&client, &base, &items).await?;
                hinted.fetch_add(duplicates, Ordering::SeqCst);
                let total = done.fetch_add(end - start, Ordering::SeqCst) + end - start;
                let rate = total as f64 / started.elapsed().as_secs_f64();
                eprint!(
                    "\rseeding workers: {total}/{} ({rate:.0}/s)   ",
                    options.workers
                );
                let _ = std::io::stderr().flush();
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    eprintln!();
    ingest_dataset(&client, &base, &options).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(SeedReport {
        workers: options.workers,
        seconds,
        possible_duplicates: hinted.load(Ordering::SeqCst),
    })
}

/// Creates the `workers` index with the embedder's dimension, or checks
/// that an existing one has it.
async fn ensure_index(client: &reqwest::Client, base: &str) -> Result<()> {
    let probe: Value = client
        .post(format!("{base}/v1/embed"))
        .json(&json!({"texts": ["dimension probe"]}))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}: is `lakehouse serve` running?"))?
        .error_for_status()?
        .json()
        .await?;
    let dimension = probe["dimension"]
        .as_u64()
        .context("embed reply has no dimension")?;
    let created = client
        .post(format!("{base}/v1/vectors/index"))
        .json(&json!({"name": WORKERS, "dimension": dimension}))
        .send()
        .await?;
    let status = created.status().as_u16();
    let body: Value = created.json().await.unwrap_or(Value::Null);
    if body["error"]["code"] == "reserved_index" {
        bail!("index '{WORKERS}' is the matrix's own: seeding it needs an admin token (--token)");
    }
    match status {
        201 => Ok(()),
        409 => {
            let info: Value = client
                .get(format!("{base}/v1/vectors/index/{WORKERS}"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if info["dimension"].as_u64() != Some(dimension) {
                bail!(
                    "index '{WORKERS}' has dimension {}, the embedder gives {dimension}; drop it first",
                    info["dimension"]
                );
            }
            Ok(())
        }
        _ => bail!("creating index '{WORKERS}' ({status}): {body}"),
    }
}

/// The same workers as one ingest replacing the `workers` dataset. The same
/// seed and size give the same bytes, so seeding twice is a no-op there too.
async fn ingest_dataset(client: &reqwest::Client, base: &str, options: &SeedOptions) -> Result<()> {
    // JSON lines keep the typed fields typed: skills and certifications
    // become list columns, rates and years numbers.
    let mut lines = String::new();
    for i in 0..options.workers {
        lines.push_str(&serde_json::to_string(&worker(options.seed, i as u64))?);
        lines.push('\n');
    }
    // The dataset mirrors the corpus: a re-seed replaces it (and so moves
    // a dataset from an older corpus layout to this one).
    let response = client
        .post(format!("{base}/v1/ingest/{WORKERS}?mode=replace"))
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("ingesting the workers dataset failed ({status}): {body}");
    }
    eprintln!(
        "workers dataset: {} ({} rows, version {})",
        body["status"].as_str().unwrap_or("?"),
        body["row_count"],
        body["version"]
    );
    Ok(())
}

/// One batch, retried while the service answers 503 (an actor restarting).
/// Adds one batch; answers how many possible duplicates the service named.
async fn add_batch(client: &reqwest::Client, base: &str, items: &[Value]) -> Result<usize> {
    let url = format!("{base}/v1/vectors/index/{WORKERS}/add");
    let body = json!({ "items": items });
    for attempt in 0..100 {
        let response = client.post(&url).json(&body).send().await?;
        let status = response.status();
        if status.is_success() {
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            return Ok(answer["possible_duplicates"].as_array().map_or(0, Vec::len));
        }
        if status.as_u16() != 503 && status.as_u16() != 504 {
            bail!(
                "adding workers failed ({status}): {}",
                response.text().await?
            );
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1).min(20))).await;
    }
    bail!("the service stayed unavailable while seeding")
}
