//! Vector-index benchmark against a running `lakehouse serve`, on the
//! reference corpus written by `dataset.py --out DIR`:
//! load time, recall@10 against the exact ground truth, single-client
//! latency, throughput at N concurrent clients, restart time of the index
//! actor (from its snapshot, and with the snapshot removed), server RSS.
//!
//! The server must run with `LAKEHOUSE__FAULTS__ENABLED=true` for the
//! restart measurements, and `--data-dir` must be its data dir so the
//! snapshot can be removed for the full-rebuild measurement.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use lakehouse_loadtest::{
    client, histogram, loopback_base, read_f32, read_i64, sample_server, Latency,
};
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Folder with base.npy, queries.npy, gt_ids.npy.
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:3100")]
    target: String,
    #[arg(long, default_value = "bench")]
    index: String,
    #[arg(long, default_value_t = 32)]
    m: u32,
    #[arg(long, default_value_t = 40)]
    ef_construction: u32,
    #[arg(long, default_value_t = 80)]
    ef_search: u32,
    /// Items per add request while loading.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent add requests while loading.
    #[arg(long, default_value_t = 4)]
    load_clients: usize,
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of the concurrent search phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The server's data dir (enables the full-rebuild restart measurement).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep an existing index of that name instead of recreating it.
    #[arg(long)]
    reuse: bool,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Stop after loading (measures the load alone, e.g. one client
    /// sending 500-item batches as a Python script would).
    #[arg(long)]
    load_only: bool,
    /// Client counts of a concurrency sweep run after the main phase,
    /// comma-separated (e.g. 1,10,50,100).
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// Seconds per step of the sweep.
    #[arg(long, default_value_t = 10)]
    sweep_seconds: u64,
}

#[derive(Serialize)]
struct SweepStep {
    clients: usize,
    searches_per_second: f64,
    latency: Latency,
}

#[derive(Serialize)]
struct Report {
    vectors: usize,
    dimension: usize,
    load_seconds: Option<f64>,
    load_vectors_per_second: Option<f64>,
    recall_at_10: f64,
    single_client: Latency,
    concurrent_clients: usize,
    concurrent: Latency,
    searches_per_second: f64,
    restart_from_snapshot_ms: Option<f64>,
    restart_full_rebuild_ms: Option<f64>,
    rss_mb: f64,
    sweep: Vec<SweepStep>,
}

#[derive(Serialize)]
struct LoadReport {
    vectors: usize,
    dimension: usize,
    batch: usize,
    load_clients: usize,
    load_seconds: f64,
    load_vectors_per_second: f64,
    rss_mb: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.load_only && args.reuse {
        bail!("--load-only measures a load; --reuse skips it");
    }
    let base_url = loopback_base(&args.target)?;
    let most = args.sweep.iter().copied().fold(args.clients, usize::max);
    let http = client(most)?;
    let base = read_f32(&args.dataset.join("base.npy"))?;
    let queries = read_f32(&args.dataset.join("queries.npy"))?;
    let truth = read_i64(&args.dataset.join("gt_ids.npy"))?;
    let (n, dimension) = (base.shape[0], base.shape[1]);
    let k_truth = truth.shape[1];
    let index_url = format!("{base_url}/v1/vectors/index/{}", args.index);
    eprintln!("corpus: {n} x {dimension}, {} queries", queries.shape[0]);

    let (load_seconds, load_rate) = if args.reuse {
        (None, None)
    } else {
        let _ = http.delete(&index_url).send().await?;
        let created = http
            .post(format!("{base_url}/v1/vectors/index"))
            .json(&json!({"name": args.index, "dimension": dimension,
                "hnsw": {"m": args.m, "ef_construction": args.ef_construction, "ef_search": args.ef_search}}))
            .send()
            .await?;
        if !created.status().is_success() {
            bail!("create failed: {}", created.text().await?);
        }
        let started = Instant::now();
        load(
            &http,
            &index_url,
            &base.data,
            dimension,
            args.batch,
            args.load_clients,
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "loaded {n} vectors in {seconds:.1} s ({:.0}/s)",
            n as f64 / seconds
        );
        if args.load_only {
            let report = LoadReport {
                vectors: n,
                dimension,
                batch: args.batch,
                load_clients: args.load_clients,
                load_seconds: seconds,
                load_vectors_per_second: n as f64 / seconds,
                rss_mb: sample_server(&http, &base_url).await?.rss_bytes / 1e6,
            };
            return write_report(&report, args.json.as_deref());
        }
        (Some(seconds), Some(n as f64 / seconds))
    };

    // Recall and single-client latency: every query once, one at a time.
    let mut single = histogram();
    let mut found = 0usize;
    let nq = queries.shape[0];
    for q in 0..nq {
        let vector = &queries.data[q * dimension..(q + 1) * dimension];
        let started = Instant::now();
        let hits = search(&http, &index_url, vector, 10).await?;
        single.record(started.elapsed().as_micros() as u64)?;
        let expected: Vec<String> = truth.data[q * k_truth..q * k_truth + 10]
            .iter()
            .map(|id| id.to_string())
            .collect();
        found += hits.iter().filter(|h| expected.contains(h)).count();
    }
    let recall = found as f64 / (nq * 10) as f64;
    eprintln!(
        "recall@10 {recall:.4}, single client {:?}",
        Latency::of(&single)
    );

    let (concurrent, rate) = throughput(
        &http,
        &index_url,
        &queries.data,
        dimension,
        args.clients,
        args.seconds,
    )
    .await?;
    eprintln!(
        "{} clients: {rate:.0} searches/s, {:?}",
        args.clients, concurrent
    );
    let rss_mb = sample_server(&http, &base_url).await?.rss_bytes / 1e6;

    let mut sweep = Vec::new();
    for &clients in &args.sweep {
        let (latency, rate) = throughput(
            &http,
            &index_url,
            &queries.data,
            dimension,
            clients,
            args.sweep_seconds,
        )
        .await?;
        eprintln!("sweep: {clients} clients, {rate:.0} searches/s, {latency:?}");
        sweep.push(SweepStep {
            clients,
            searches_per_second: rate,
            latency,
        });
    }

    let actor = format!("index:{}", args.index);
    let restart_from_snapshot = restart(&http, &base_url, &index_url, &actor, None)
        .await
        .ok();
    let restart_full = match &args.data_dir {
        Some(dir) => {
            let snapshot = dir.join("vectors").join(format!("{}.faiss", args.index));
            restart(&http, &base_url, &index_url, &actor, Some(snapshot))
                .await
                .ok()
        }
        None => None,
    };

    let report = Report {
        vectors: n,
        dimension,
        load_seconds,
        load_vectors_per_second: load_rate,
        recall_at_10: recall,
        single_client: Latency::of(&single),
        concurrent_clients: args.clients,
        concurrent,
        searches_per_second: rate,
        restart_from_snapshot_ms: restart_from_snapshot,
        restart_full_rebuild_ms: restart_full,
        rss_mb,
        sweep,
    };
    write_report(&report, args.json.as_deref())
}

/// Prints the report and writes it to `path` if given.
fn write_report(report: &impl Serialize, path: Option<&std::path::Path>) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    println!("{json}");
    if let Some(path) = path {
        std::fs::write(path, &json)?;
    }
    Ok(())
}

async fn load(
    http: &reqwest::Client,
    index_url: &str,
    data: &[f32],
    dimension: usize,
    batch: usize,
    clients: usize,
) -> Result<()> {
    let n = data.len() / dimension;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = http.clone();
        let url = format!("{index_url}/add");
        let next = next.clone();
        let data = data.to_vec();
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(batch, Ordering::SeqCst);
                if start >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let end = (start + batch).min(n);
                let items: Vec<Value> = (start..end)
                    .map(|i| json!({"id": i.to_string(), "vector": &data[i * dimension..(i + 1) * dimension]}))
                    .collect();
                let body = json!({ "items": items });
                loop {
                    let response = http.post(&url).json(&body).send().await?;
                    if response.status().is_success() {
                        break;
                    }
                    // 503 (restarting) and 504 (the commit queue is long) are
                    // retried: an upsert by id is idempotent.
                    if !matches!(response.status().as_u16(), 503 | 504) {
                        bail!("add failed: {}", response.text().await?);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn search(
    http: &reqwest::Client,
    index_url: &str,
    vector: &[f32],
    k: usize,
) -> Result<Vec<String>> {
    let response = http
        .post(format!("{index_url}/search"))
        .json(&json!({"vector": vector, "k": k}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "search failed: {} {}",
            response.status(),
            response.text().await?
        );
    }
    let body: Value = response.json().await?;
    Ok(body["hits"]
        .as_array()
        .context("no hits")?
        .iter()
        .filter_map(|h| h["id"].as_str().map(str::to_string))
        .collect())
}

async fn throughput(
    http: &reqwest::Client,
    index_url: &str,
    queries: &[f32],
    dimension: usize,
    clients: usize,
    seconds: u64,
) -> Result<(Latency, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let nq = queries.len() / dimension;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = index_url.to_string();
        let stop = stop.clone();
        let queries = queries.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut q = c * 7919 % nq;
            while !stop.load(Ordering::Relaxed) {
                let vector = &queries[q * dimension..(q + 1) * dimension];
                let started = Instant::now();
                search(&http, &url, vector, 10).await?;
                h.record(started.elapsed().as_micros() as u64)?;
                q = (q + 1) % nq;
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = histogram();
    for task in tasks {
        all.add(task.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((Latency::of(&all), all.len() as f64 / elapsed))
}

/// Panics the index actor and times until it answers again with one more
/// restart. With `remove`, the snapshot file is deleted first (full rebuild).
async fn restart(
    http: &reqwest::Client,
    base_url: &str,
    index_url: &str,
    actor: &str,
    remove: Option<PathBuf>,
) -> Result<f64> {
    let info: Value = http.get(index_url).send().await?.json().await?;
    let before = info["restarts"].as_u64().unwrap_or(0);
    if let Some(path) = remove {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    let started = Instant::now();
    let fault = http
        .post(format!("{base_url}/v1/admin/faults"))
        .json(&json!({"actor": actor, "fault": "panic"}))
        .send()
        .await?;
    if !fault.status().is_success() {
        bail!(
            "fault injection refused ({}): is faults.enabled set?",
            fault.status()
        );
    }
    loop {
        let response = http
            .get(index_url)
            .timeout(Duration::from_secs(300))
            .send()
            .await?;
        if response.status().is_success() {
            let info: Value = response.json().await?;
            if info["restarts"].as_u64().unwrap_or(0) > before {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                eprintln!("{actor} answered again after {ms:.0} ms");
                return Ok(ms);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{actor} did not come back");
        }
    }
}
