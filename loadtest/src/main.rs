//! `loadtest`: the multi-tier scenario mix against a running, seeded
//! `lakehouse serve` (loopback only), with an optional chaos mode.
//!
//! Each client loops: pick a scenario by weight, run its steps (each a real
//! request, with checks between them), record the scenario's latency and
//! outcome. Bounded by `--duration` and `--max-scenarios`; stops by itself.
//!
//! Chaos mode (`--chaos-every S`) panics `index:workers`,
//! `index:playbook_memory` and `embed` in turn through `/v1/admin/faults`,
//! and makes the indexes' next commit panic inside its commit task,
//! measures each actor's recovery, counts the scenarios that failed inside
//! restart windows, and at the end checks that every playbook recording the
//! harness saw acknowledged is present: zero acknowledged writes lost.
//!
//! Soak mode (`--sample-every S --then-quiet Q --svg FILE`) records a
//! timeline every S seconds — throughput, failures, server RSS, recordings
//! acknowledged, playbook entries — then runs Q seconds of searches only
//! (writes stopped) on the same timeline, and plots it (see
//! [`lakehouse_loadtest::plot`]).
//!
//! `loadtest crasher` (see [`lakehouse_loadtest::crasher`]) runs the real
//! binary itself and kills it with SIGKILL under concurrent writers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use lakehouse_loadtest::crasher::CrasherOptions;
use lakehouse_loadtest::plot::{self, TimelinePoint};
use lakehouse_loadtest::{
    audit_recordings, client, histogram, loopback_base, sample_server, AckedRecording, Latency,
    ServerSample,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// The six scenarios of the mix, then two single-step ones (weight 0 by
/// default) for focused measurements: `search_only`, `record_only`.
const SCENARIOS: [&str; 8] = [
    "cold_search_email",
    "surge_fill_validate",
    "profile_swap",
    "repeat_cache",
    "sms_validate",
    "playbook_record_replay",
    "search_only",
    "record_only",
];
const DEFAULT_WEIGHTS: [u32; 8] = [35, 15, 15, 15, 10, 10, 0, 0];
/// Chaos faults in turn: a panic in an actor's handler, and a panic inside
/// an index's commit task (after its Lance append, before the reply).
const CHAOS_TARGETS: [(&str, &str); 4] = [
    ("index:workers", "panic"),
    ("index:playbook_memory", "panic"),
    ("embed", "panic"),
    ("index:playbook_memory", "commit_panic"),
];

#[derive(Parser)]
#[command(
    about = "Multi-tier load and chaos harness for lakehouse (loopback only)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    mix: Args,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Start the lakehouse binary on a fresh data dir and kill -9 it under
    /// concurrent writers, checking after every restart that no
    /// acknowledged write was lost.
    Crasher(CrasherArgs),
    /// Hostile inputs (deep SQL, function bombs, encoded paths, floods,
    /// …) kind by kind beside a normal search and record load: the normal
    /// load's p99 and errors with and without them, and every hostile
    /// answer's status.
    Abuse(AbuseArgs),
    /// Precision@10 of semantic, hybrid and keyword search for queries
    /// naming an exact certification or skill of the seeded corpus, and
    /// each mode's latency at 1 and N clients.
    Retrieval(RetrievalArgs),
}

#[derive(clap::Args)]
struct AbuseArgs {
    #[arg(long, default_value = "http://127.0.0.1:3100")]
    target: String,
    /// Seconds of each phase (quiet, then one per hostile kind).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    #[arg(long, default_value_t = 8)]
    normal_clients: usize,
    #[arg(long, default_value_t = 8)]
    hostile_clients: usize,
    /// Only these hostile kinds (comma-separated; all by default).
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RetrievalArgs {
    #[arg(long, default_value = "http://127.0.0.1:3100")]
    target: String,
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of load per mode and concurrency.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Skills asked besides every certification (the most held first).
    #[arg(long, default_value_t = 20)]
    skills: usize,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CrasherArgs {
    /// The lakehouse binary (default: $LAKEHOUSE_BIN, else the release
    /// build under $CARGO_TARGET_DIR or /var/tmp/lakehouse-target).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// A fresh data dir (default: a new temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Bound on the whole run, in seconds.
    #[arg(long, default_value_t = 1800)]
    duration: u64,
    #[arg(long, default_value_t = 8)]
    writers: usize,
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dimension: usize,
    /// Workers seeded for the playbook recorder.
    #[arg(long, default_value_t = 500)]
    workers: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `process` or `fsync` (the server's data.durability).
    #[arg(long, default_value = "process")]
    durability: String,
    /// Append the server's output here.
    #[arg(long)]
    server_log: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:3100")]
    target: String,
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of measured load (per concurrency level).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Stop after this many scenarios in total (0 = no bound but the duration).
    #[arg(long, default_value_t = 0)]
    max_scenarios: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `name=weight,…` over the six scenarios (default 35/15/15/15/10/10).
    #[arg(long)]
    weights: Option<String>,
    /// Run only this scenario (e.g. `search_only`, `record_only`).
    #[arg(long, conflicts_with = "weights")]
    only: Option<String>,
    /// Run once per concurrency level, e.g. `10,50,100,200`.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// Inject a panic every S seconds (chaos mode).
    #[arg(long)]
    chaos_every: Option<u64>,
    /// Workers sampled from the corpus to draw queries from.
    #[arg(long, default_value_t = 200)]
    sample: usize,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Record a timeline point every S seconds (0 = none): the soak mode.
    #[arg(long, default_value_t = 0)]
    sample_every: u64,
    /// After the run, Q more seconds of searches only (writes stopped), on
    /// the same timeline.
    #[arg(long, default_value_t = 0)]
    then_quiet: u64,
    /// Plot the timeline (throughput, RSS, recordings) to this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
}

/// A worker drawn from the seeded corpus (queries come from these).
#[derive(Clone, Debug)]
struct Sample {
    worker_id: String,
    role: String,
    city: String,
    state: String,
}

#[derive(Default)]
struct Stats {
    runs: u64,
    failures: u64,
    latency: Option<Histogram<u64>>,
    errors: HashMap<String, u64>,
}

struct Shared {
    http: reqwest::Client,
    base: String,
    samples: Vec<Sample>,
    weights: Vec<u32>,
    stats: Mutex<HashMap<&'static str, Stats>>,
    search: Mutex<Histogram<u64>>,
    record: Mutex<Histogram<u64>>,
    /// Recording ids the server acknowledged (chaos audit).
    acked: Mutex<Vec<AckedRecording>>,
    /// (start, end) of scenario failures, for the restart windows.
    failure_times: Mutex<Vec<Instant>>,
    measuring: AtomicBool,
}

#[derive(Serialize)]
struct ScenarioRow {
    scenario: String,
    runs: u64,
    fail_pct: f64,
    latency: Latency,
    top_errors: Vec<(String, u64)>,
}

#[derive(Serialize)]
struct FaultReport {
    actor: String,
    at_secs: f64,
    recovery_ms: Option<f64>,
    scenarios_failed_in_window: usize,
}

#[derive(Serialize)]
struct Report {
    clients: usize,
    duration_secs: f64,
    scenarios: Vec<ScenarioRow>,
    total_runs: u64,
    total_failures: u64,
    scenarios_per_second: f64,
    search: Latency,
    record: Latency,
    server_rss_mb_max: f64,
    server_rss_mb_mean: f64,
    server_cpu_pct: f64,
    chaos: Option<ChaosReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    timeline: Vec<TimelinePoint>,
}

#[derive(Serialize)]
struct ChaosReport {
    faults: Vec<FaultReport>,
    restarts_observed: u64,
    acknowledged_recordings: usize,
    lost_recordings: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crasher(args)) => crasher(args).await,
        Some(Command::Retrieval(args)) => retrieval(args).await,
        Some(Command::Abuse(args)) => abuse(args).await,
        None => mix(cli.mix).await,
    }
}

async fn abuse(args: AbuseArgs) -> Result<()> {
    let report = lakehouse_loadtest::abuse::run(lakehouse_loadtest::abuse::AbuseOptions {
        target: args.target,
        duration: Duration::from_secs(args.duration),
        normal_clients: args.normal_clients,
        hostile_clients: args.hostile_clients,
        kinds: args.kinds,
    })
    .await?;
    println!(
        "{:>20} | normal p50 ms | p99 ms | p99 / quiet | errors | hostile answers | 5xx | capped 503",
        "phase"
    );
    for phase in std::iter::once(&report.quiet).chain(&report.phases) {
        println!(
            "{:>20} | {:>13.2} | {:>6.2} | {:>11.2} | {:>6} | {:?} | {} | {}",
            phase.kind,
            phase.normal.p50_ms,
            phase.normal.p99_ms,
            phase.normal.p99_ms / report.quiet.normal.p99_ms.max(0.001),
            phase.normal_errors,
            phase.hostile,
            phase.hostile_server_errors,
            phase.capped
        );
    }
    println!(
        "actor restarts: {}; process restarted: {}; worst p99 ratio: {:.2}",
        report.actor_restarts, report.process_restarted, report.worst_p99_ratio
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn crasher(args: CrasherArgs) -> Result<()> {
    let binary = args.binary.unwrap_or_else(|| {
        std::env::var_os("LAKEHOUSE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/var/tmp/lakehouse-target"));
                target.join("release").join("lakehouse")
            })
    });
    let scratch = tempfile_dir()?;
    let data_dir = args.data_dir.unwrap_or_else(|| scratch.join("data"));
    let mut options = CrasherOptions::new(binary, data_dir);
    options.kills = args.kills;
    options.duration = Duration::from_secs(args.duration);
    options.writers = args.writers;
    options.items = args.items;
    options.dimension = args.dimension;
    options.workers = args.workers;
    options.seed = args.seed;
    options.env = vec![(
        "LAKEHOUSE__DATA__DURABILITY".into(),
        args.durability.clone(),
    )];
    options.server_log = args.server_log;
    options.verbose = true;
    eprintln!(
        "crasher: {} writers over {} items (+ playbook records), {} kills, data dir {}",
        options.writers,
        options.items,
        options.kills,
        options.data_dir.display()
    );
    let report = lakehouse_loadtest::crasher::run(options).await?;
    println!("{}", report.summary());
    let restarts = &report.restart_ms;
    if !restarts.is_empty() {
        let mut sorted = restarts.clone();
        sorted.sort_unstable();
        println!(
            "restart to ready: median {} ms, max {} ms; {} writes in flight at the kills; {} s",
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
            report.in_flight_at_kill,
            report.seconds.round()
        );
    }
    for violation in &report.violations {
        println!(
            "LOST after kill {}: {} expected {} found {}",
            violation.after_kill, violation.id, violation.expected, violation.found
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if !report.violations.is_empty() {
        bail!("{} acknowledged writes were lost", report.violations.len());
    }
    Ok(())
}

async fn retrieval(args: RetrievalArgs) -> Result<()> {
    let options = lakehouse_loadtest::retrieval::RetrievalOptions {
        base: loopback_base(&args.target)?,
        clients: args.clients,
        duration: Duration::from_secs(args.duration),
        skills: args.skills,
        k: args.k,
    };
    let http = client(args.clients)?;
    let report = lakehouse_loadtest::retrieval::run(&http, &options).await?;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// A new directory under the system's temporary directory.
fn tempfile_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("lakehouse-crasher-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn mix(args: Args) -> Result<()> {
    let base = loopback_base(&args.target)?;
    let levels = if args.sweep.is_empty() {
        vec![args.clients]
    } else {
        args.sweep.clone()
    };
    if levels.len() > 1 && (args.svg.is_some() || args.then_quiet > 0) {
        bail!("--svg and --then-quiet plot one run: use --clients, not --sweep");
    }
    let max_clients = *levels.iter().max().unwrap_or(&args.clients);
    let http = client(max_clients)?;
    let samples = sample_corpus(&http, &base, args.sample, args.seed).await?;
    let weights = match &args.only {
        Some(name) => {
            let index = SCENARIOS
                .iter()
                .position(|s| s == name)
                .with_context(|| format!("unknown scenario '{name}'"))?;
            let mut weights = vec![0; SCENARIOS.len()];
            weights[index] = 1;
            weights
        }
        None => parse_weights(args.weights.as_deref())?,
    };
    let mut reports = Vec::new();
    for clients in levels {
        let report = run_level(&args, &http, &base, &samples, &weights, clients).await?;
        print_report(&report);
        reports.push(report);
    }
    if args.then_quiet > 0 {
        // Writes stop: searches only, on the same timeline.
        let quiet_args = Args {
            duration: args.then_quiet,
            warmup: 0,
            max_scenarios: 0,
            chaos_every: None,
            ..args.clone()
        };
        let mut only_search = vec![0; SCENARIOS.len()];
        only_search[SCENARIOS
            .iter()
            .position(|s| *s == "search_only")
            .context("no search_only scenario")?] = 1;
        let clients = *reports.last().map(|r| &r.clients).unwrap_or(&args.clients);
        let mut quiet =
            run_level(&quiet_args, &http, &base, &samples, &only_search, clients).await?;
        let offset = reports.last().map_or(0.0, |r| r.duration_secs);
        let before = reports
            .last()
            .and_then(|r| r.timeline.last())
            .cloned()
            .unwrap_or_default();
        // One timeline: times, counts and failures go on from the run's.
        for point in quiet.timeline.iter_mut() {
            point.at_secs += offset;
            point.runs += before.runs;
            point.failures += before.failures;
            point.recordings = before.recordings;
        }
        print_report(&quiet);
        reports.push(quiet);
    }
    if let Some(path) = &args.svg {
        let timeline: Vec<TimelinePoint> =
            reports.iter().flat_map(|r| r.timeline.clone()).collect();
        let quiet_from = (args.then_quiet > 0)
            .then(|| reports.iter().rev().nth(1).map(|r| r.duration_secs))
            .flatten();
        let clients = reports.last().map_or(args.clients, |r| r.clients);
        std::fs::write(path, plot::soak_svg(&timeline, quiet_from, clients))?;
        eprintln!("plot written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let value = if reports.len() == 1 {
            serde_json::to_value(&reports[0])?
        } else {
            serde_json::to_value(&reports)?
        };
        std::fs::write(path, serde_json::to_string_pretty(&value)?)?;
        eprintln!("report written to {}", path.display());
    }
    let lost: usize = reports
        .iter()
        .filter_map(|r| r.chaos.as_ref())
        .map(|c| c.lost_recordings)
        .sum();
    if lost > 0 {
        bail!("{lost} acknowledged recordings were lost");
    }
    Ok(())
}

fn parse_weights(spec: Option<&str>) -> Result<Vec<u32>> {
    let mut weights = DEFAULT_WEIGHTS.to_vec();
    if let Some(spec) = spec {
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').context("weights are name=weight")?;
            let index = SCENARIOS
                .iter()
                .position(|s| *s == name.trim())
                .with_context(|| format!("unknown scenario '{name}'"))?;
            weights[index] = weight.trim().parse()?;
        }
    }
    if weights.iter().sum::<u32>() == 0 {
        bail!("at least one scenario needs a positive weight");
    }
    Ok(weights)
}

/// Draws workers from the `workers` index (ids W0000001…) to build queries.
async fn sample_corpus(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    seed: u64,
) -> Result<Vec<Sample>> {
    let info: Value = http
        .get(format!("{base}/v1/vectors/index/workers"))
        .send()
        .await?
        .error_for_status()
        .context("no 'workers' index: run `lakehouse seed --workers N` first")?
        .json()
        .await?;
    let count = info["count"].as_u64().unwrap_or(0);
    if count == 0 {
        bail!("the workers index is empty");
    }
    let mut rng = Rng(seed);
    let mut samples = Vec::new();
    while samples.len() < n {
        let id = format!("W{:07}", 1 + rng.below(count));
        let item: Value = match http
            .get(format!("{base}/v1/vectors/index/workers/items/{id}"))
            .send()
            .await?
            .json()
            .await
        {
            Ok(item) => item,
            Err(_) => continue,
        };
        let meta = &item["metadata"];
        let text = |f: &str| meta[f].as_str().unwrap_or_default().to_string();
        if text("role").is_empty() {
            continue;
        }
        samples.push(Sample {
            worker_id: id.clone(),
            role: text("role"),
            city: text("city"),
            state: text("state"),
        });
    }
    Ok(samples)
}

async fn run_level(
    args: &Args,
    http: &reqwest::Client,
    base: &str,
    samples: &[Sample],
    weights: &[u32],
    clients: usize,
) -> Result<Report> {
    let shared = Arc::new(Shared {
        http: http.clone(),
        base: base.to_string(),
        samples: samples.to_vec(),
        weights: weights.to_vec(),
        stats: Mutex::new(HashMap::new()),
        search: Mutex::new(histogram()),
        record: Mutex::new(histogram()),
        acked: Mutex::new(Vec::new()),
        failure_times: Mutex::new(Vec::new()),
        measuring: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicU64::new(if args.max_scenarios == 0 {
        u64::MAX
    } else {
        args.max_scenarios
    }));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (shared, stop, budget) = (shared.clone(), stop.clone(), budget.clone());
        let mut rng = Rng(args.seed.wrapping_mul(1_000_003).wrapping_add(c as u64));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let scenario = pick(&shared.weights, &mut rng);
                let started = Instant::now();
                let outcome = run_scenario(&shared, scenario, &mut rng).await;
                if shared.measuring.load(Ordering::Relaxed) {
                    let mut stats = shared.stats.lock().await;
                    let entry = stats.entry(SCENARIOS[scenario]).or_default();
                    entry.runs += 1;
                    let latency = entry.latency.get_or_insert_with(histogram);
                    let _ = latency.record(started.elapsed().as_micros() as u64);
                    if let Err(err) = outcome {
                        entry.failures += 1;
                        *entry.errors.entry(err).or_default() += 1;
                        drop(stats);
                        shared.failure_times.lock().await.push(Instant::now());
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let measure_start = Instant::now();
    let sample_start = sample_server(http, base).await.unwrap_or_default();
    let restarts_before = total_restarts(http, base).await.unwrap_or(0);

    // Server sampling and chaos run beside the load.
    let samples_task = {
        let (http, base, stop) = (http.clone(), base.to_string(), stop.clone());
        let (shared, every) = (shared.clone(), args.sample_every);
        tokio::spawn(async move {
            let mut out: Vec<ServerSample> = Vec::new();
            let mut timeline: Vec<TimelinePoint> = Vec::new();
            let mut last = (measure_start, 0u64);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = sample_server(&http, &base).await {
                    out.push(s);
                    if every > 0 && last.0.elapsed() >= Duration::from_secs(every) {
                        let point =
                            timeline_point(&shared, &http, &base, s, measure_start, last).await;
                        last = (Instant::now(), point.runs);
                        timeline.push(point);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (out, timeline)
        })
    };
    let chaos_task = args.chaos_every.map(|every| {
        let (http, base, stop) = (http.clone(), base.to_string(), stop.clone());
        tokio::spawn(async move { chaos(&http, &base, every, &stop, measure_start).await })
    });

    let deadline = measure_start + Duration::from_secs(args.duration);
    while Instant::now() < deadline && budget.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = measure_start.elapsed().as_secs_f64();
    let (server_samples, timeline) = samples_task.await.unwrap_or_default();
    let sample_end = sample_server(http, base).await.unwrap_or_default();
    let faults = match chaos_task {
        Some(task) => Some(task.await??),
        None => None,
    };

    let stats = shared.stats.lock().await;
    let mut rows = Vec::new();
    let (mut total_runs, mut total_failures) = (0, 0);
    for name in SCENARIOS {
        let Some(s) = stats.get(name) else { continue };
        total_runs += s.runs;
        total_failures += s.failures;
        let mut errors: Vec<(String, u64)> =
            s.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1));
        errors.truncate(3);
        rows.push(ScenarioRow {
            scenario: name.to_string(),
            runs: s.runs,
            fail_pct: if s.runs == 0 {
                0.0
            } else {
                100.0 * s.failures as f64 / s.runs as f64
            },
            latency: Latency::of(s.latency.as_ref().unwrap_or(&histogram())),
            top_errors: errors,
        });
    }
    let rss: Vec<f64> = server_samples.iter().map(|s| s.rss_bytes / 1e6).collect();
    let chaos = match faults {
        Some(mut faults) => {
            let failures = shared.failure_times.lock().await.clone();
            for fault in faults.iter_mut() {
                let start = measure_start + Duration::from_secs_f64(fault.at_secs);
                let end = start
                    + Duration::from_secs_f64(fault.recovery_ms.unwrap_or(5000.0) / 1000.0 + 0.2);
                fault.scenarios_failed_in_window = failures
                    .iter()
                    .filter(|t| **t >= start && **t <= end)
                    .count();
            }
            let acked = shared.acked.lock().await.clone();
            let lost = audit(http, base, &acked).await?;
            let restarts_after = total_restarts(http, base).await.unwrap_or(0);
            Some(ChaosReport {
                faults,
                restarts_observed: restarts_after.saturating_sub(restarts_before),
                acknowledged_recordings: acked.len(),
                lost_recordings: lost,
            })
        }
        None => None,
    };
    let search = Latency::of(&*shared.search.lock().await);
    let record = Latency::of(&*shared.record.lock().await);
    Ok(Report {
        clients,
        duration_secs: elapsed,
        scenarios: rows,
        total_runs,
        total_failures,
        scenarios_per_second: total_runs as f64 / elapsed,
        search,
        record,
        server_rss_mb_max: rss.iter().cloned().fold(0.0, f64::max),
        server_rss_mb_mean: if rss.is_empty() {
            0.0
        } else {
            rss.iter().sum::<f64>() / rss.len() as f64
        },
        server_cpu_pct: 100.0 * (sample_end.cpu_seconds - sample_start.cpu_seconds) / elapsed,
        chaos,
        timeline,
    })
}

/// The run so far, for the soak's timeline: `since` is the previous
/// point's time and scenario count.
async fn timeline_point(
    shared: &Shared,
    http: &reqwest::Client,
    base: &str,
    server: ServerSample,
    start: Instant,
    since: (Instant, u64),
) -> TimelinePoint {
    let (runs, failures) = {
        let stats = shared.stats.lock().await;
        stats
            .values()
            .fold((0, 0), |(r, f), s| (r + s.runs, f + s.failures))
    };
    let entries = async {
        let info: Value = http
            .get(format!("{base}/v1/vectors/index/playbook_memory"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        info["count"].as_u64()
    }
    .await;
    TimelinePoint {
        at_secs: start.elapsed().as_secs_f64(),
        runs,
        scenarios_per_second: (runs - since.1) as f64 / since.0.elapsed().as_secs_f64(),
        failures,
        rss_mb: server.rss_bytes / 1e6,
        recordings: shared.acked.lock().await.len() as u64,
        playbook_entries: entries.unwrap_or(0),
    }
}

fn pick(weights: &[u32], rng: &mut Rng) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.below(total as u64) as u32;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// POSTs JSON and returns the body, or a short error naming the step.
async fn post(
    shared: &Shared,
    step: &str,
    path: &str,
    body: &Value,
    expect: u16,
) -> Result<Value, String> {
    let response = shared
        .http
        .post(format!("{}{path}", shared.base))
        .json(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "{step}: {}",
                if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                }
            )
        })?;
    let status = response.status().as_u16();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if status != expect {
        let code = value["error"]["code"].as_str().unwrap_or("");
        return Err(format!("{step}: {status} {code}"));
    }
    Ok(value)
}

async fn search(shared: &Shared, body: &Value) -> Result<Vec<Value>, String> {
    let started = Instant::now();
    let result = post(shared, "search", "/v1/matrix/search", body, 200).await?;
    let _ = shared
        .search
        .lock()
        .await
        .record(started.elapsed().as_micros() as u64);
    Ok(result["hits"].as_array().cloned().unwrap_or_default())
}

async fn record(
    shared: &Shared,
    query: &str,
    role: &str,
    ids: &[String],
    score: f64,
) -> Result<(), String> {
    let started = Instant::now();
    let body = json!({"query": query, "role": role, "worker_ids": ids, "score": score});
    let result = post(shared, "record", "/v1/matrix/playbooks/record", &body, 200).await?;
    let _ = shared
        .record
        .lock()
        .await
        .record(started.elapsed().as_micros() as u64);
    if let Some(acked) = AckedRecording::from_answer(ids, &result) {
        shared.acked.lock().await.push(acked);
    }
    Ok(())
}

fn first_name(worker: &Value) -> String {
    worker["name"]
        .as_str()
        .unwrap_or("there")
        .split(' ')
        .next()
        .unwrap_or("there")
        .to_string()
}

async fn run_scenario(shared: &Shared, scenario: usize, rng: &mut Rng) -> Result<(), String> {
    let sample = &shared.samples[rng.below(shared.samples.len() as u64) as usize];
    let phrasing = [
        "experienced",
        "reliable",
        "certified",
        "available now",
        "top rated",
    ][rng.below(5) as usize];
    let query = format!(
        "{phrasing} {} in {}, {}",
        sample.role, sample.city, sample.state
    );
    match SCENARIOS[scenario] {
        "cold_search_email" => {
            let hits = search(
                shared,
                &json!({"query": query, "k": 5, "role": sample.role}),
            )
            .await?;
            let top = hits.first().ok_or("search: no hits")?;
            let worker = &top["worker"];
            let email = json!({
                "kind": "email",
                "to": worker["email"],
                "subject": format!("{} shift in {}", sample.role, worker["city"].as_str().unwrap_or("your area")),
                "body": format!(
                    "Hi {},\n\nWe have a {} opening near {}. Reply to this e-mail or call 555-123-4567.\n\nThanks",
                    first_name(worker), sample.role, worker["city"].as_str().unwrap_or("you")
                ),
            });
            post(shared, "validate_email", "/v1/validate", &email, 200).await?;
        }
        "surge_fill_validate" => {
            let hits = search(
                shared,
                &json!({"query": query, "k": 20, "role": sample.role}),
            )
            .await?;
            let mut by_place: HashMap<(String, String), Vec<&Value>> = HashMap::new();
            for hit in &hits {
                let w = &hit["worker"];
                let key = (
                    w["city"].as_str().unwrap_or("").to_string(),
                    w["state"].as_str().unwrap_or("").to_string(),
                );
                by_place.entry(key).or_default().push(hit);
            }
            let ((city, state), group) = by_place
                .into_iter()
                .max_by_key(|(_, g)| g.len())
                .ok_or("search: no hits")?;
            let chosen: Vec<String> = group
                .iter()
                .take(2)
                .filter_map(|h| h["worker_id"].as_str().map(str::to_string))
                .collect();
            let fill = json!({"kind": "fill", "order": {"role": sample.role, "city": city, "state": state, "count": chosen.len()}, "worker_ids": chosen});
            post(shared, "validate_fill", "/v1/validate", &fill, 200).await?;
            record(shared, &query, &sample.role, &chosen, 0.8).await?;
        }
        "profile_swap" => {
            let body = json!({"query": query, "k": 5, "role": sample.role});
            let first = search(shared, &body).await?;
            let ids: Vec<Value> = first.iter().map(|h| h["worker_id"].clone()).collect();
            let second = search(
                shared,
                &json!({"query": query, "k": 5, "role": sample.role, "exclude_ids": ids}),
            )
            .await?;
            if second.iter().any(|h| ids.contains(&h["worker_id"])) {
                return Err("profile_swap: an excluded worker came back".into());
            }
        }
        "repeat_cache" => {
            let body = json!({"query": query, "k": 5, "role": sample.role});
            let mut first: Option<Vec<Value>> = None;
            for _ in 0..5 {
                let hits = search(shared, &body).await?;
                let ids: Vec<Value> = hits.iter().map(|h| h["worker_id"].clone()).collect();
                match &first {
                    None => first = Some(ids),
                    Some(expected) if *expected != ids => {
                        return Err("repeat_cache: results changed".into())
                    }
                    Some(_) => {}
                }
            }
        }
        "sms_validate" => {
            let hits = search(
                shared,
                &json!({"query": query, "k": 3, "role": sample.role}),
            )
            .await?;
            let worker = &hits.first().ok_or("search: no hits")?["worker"];
            let mut body = format!(
                "Hi {}, {} shift in {} tomorrow 7am. Call 555-123-4567 to confirm.",
                first_name(worker),
                sample.role,
                sample.city
            );
            body = body.chars().take(160).collect();
            let sms = json!({"kind": "sms", "to": worker["phone"], "body": body});
            post(shared, "validate_sms", "/v1/validate", &sms, 200).await?;
        }
        "search_only" => {
            search(
                shared,
                &json!({"query": query, "k": 10, "role": sample.role, "use_playbook": true}),
            )
            .await?;
        }
        "record_only" => {
            let worker = format!("W{:07}", 1 + rng.below(shared.samples.len() as u64));
            let workers = [sample.worker_id.clone(), worker];
            let ids: Vec<String> = if workers[0] == workers[1] {
                vec![workers[0].clone()]
            } else {
                workers.to_vec()
            };
            record(shared, &query, &sample.role, &ids, 0.5).await?;
        }
        _ => {
            let body = json!({"query": query, "k": 5, "role": sample.role, "use_playbook": true});
            let hits = search(shared, &body).await?;
            let chosen = hits
                .get(hits.len().saturating_sub(1))
                .and_then(|h| h["worker_id"].as_str())
                .ok_or("search: no hits")?
                .to_string();
            record(
                shared,
                &query,
                &sample.role,
                std::slice::from_ref(&chosen),
                1.0,
            )
            .await?;
            // Other clients record the same role and city meanwhile, and
            // their boosts may push this worker down a few places: look in
            // a wider list, as a coordinator scrolling the page would.
            let replay = search(
                shared,
                &json!({"query": query, "k": 20, "role": sample.role, "use_playbook": true}),
            )
            .await?;
            let boosted = replay
                .iter()
                .any(|h| h["worker_id"] == chosen.as_str() && h["boosted"] == true);
            if !boosted {
                return Err(
                    "playbook_record_replay: the recorded worker did not come back boosted".into(),
                );
            }
        }
    }
    Ok(())
}

/// Panics the chaos targets in turn and times each recovery.
async fn chaos(
    http: &reqwest::Client,
    base: &str,
    every: u64,
    stop: &AtomicBool,
    start: Instant,
) -> Result<Vec<FaultReport>> {
    let mut faults = Vec::new();
    let mut turn = 0;
    loop {
        let next = start + Duration::from_secs(every * (turn as u64 + 1));
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                return Ok(faults);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (actor, fault) = CHAOS_TARGETS[turn % CHAOS_TARGETS.len()];
        turn += 1;
        let restarted_before = node_restarts(http, base, actor).await.unwrap_or(0);
        let at = Instant::now();
        let injected = http
            .post(format!("{base}/v1/admin/faults"))
            .json(&json!({"actor": actor, "fault": fault}))
            .send()
            .await?;
        if !injected.status().is_success() {
            bail!("fault injection into {actor} refused ({}): start the server with LAKEHOUSE__FAULTS__ENABLED=true", injected.status());
        }
        let probe = |http: reqwest::Client| async move {
            let response = if actor == "embed" {
                http.post(format!("{base}/v1/embed"))
                    .json(&json!({"texts": ["chaos probe"]}))
                    .send()
                    .await
            } else {
                let index = actor.trim_start_matches("index:");
                http.get(format!("{base}/v1/vectors/index/{index}"))
                    .send()
                    .await
            };
            response.map(|r| r.status().is_success()).unwrap_or(false)
        };
        // Recovery: the first success after the actor has restarted (a
        // commit panic waits for the next record to reach the index).
        let mut recovery = None;
        while at.elapsed() < Duration::from_secs(10) {
            let restarted = node_restarts(http, base, actor).await.unwrap_or(0) > restarted_before;
            if restarted && probe(http.clone()).await {
                recovery = Some(at.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        faults.push(FaultReport {
            actor: format!("{actor} ({fault})"),
            at_secs: at.duration_since(start).as_secs_f64(),
            recovery_ms: recovery,
            scenarios_failed_in_window: 0,
        });
    }
}

async fn supervision(http: &reqwest::Client, base: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/v1/supervision"))
        .send()
        .await?
        .json()
        .await?)
}

fn walk<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node["children"].as_array().into_iter().flatten() {
        walk(child, out);
    }
}

async fn total_restarts(http: &reqwest::Client, base: &str) -> Result<u64> {
    let tree = supervision(http, base).await?;
    let mut nodes = Vec::new();
    walk(&tree, &mut nodes);
    Ok(nodes.iter().filter_map(|n| n["restarts"].as_u64()).sum())
}

async fn node_restarts(http: &reqwest::Client, base: &str, name: &str) -> Result<u64> {
    let tree = supervision(http, base).await?;
    let mut nodes = Vec::new();
    walk(&tree, &mut nodes);
    Ok(nodes
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["restarts"].as_u64())
        .unwrap_or(0))
}

/// Every acknowledged recording must still count in `playbook_memory`.
async fn audit(http: &reqwest::Client, base: &str, acked: &[AckedRecording]) -> Result<usize> {
    let violations = audit_recordings(http, base, acked).await?;
    for violation in &violations {
        eprintln!("LOST: {violation}");
    }
    Ok(violations.len())
}

fn print_report(r: &Report) {
    println!("\n== {} clients, {:.0} s ==", r.clients, r.duration_secs);
    println!(
        "{:<24} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "runs", "fail%", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for row in &r.scenarios {
        println!(
            "{:<24} {:>8} {:>7.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            row.scenario,
            row.runs,
            row.fail_pct,
            row.latency.p50_ms,
            row.latency.p95_ms,
            row.latency.p99_ms,
            row.latency.max_ms
        );
        for (error, n) in &row.top_errors {
            println!("    {n} x {error}");
        }
    }
    println!(
        "total {} scenarios, {} failed, {:.0} scenarios/s",
        r.total_runs, r.total_failures, r.scenarios_per_second
    );
    println!(
        "search p50 {:.2} ms p99 {:.2} ms | record p50 {:.2} ms p99 {:.2} ms",
        r.search.p50_ms, r.search.p99_ms, r.record.p50_ms, r.record.p99_ms
    );
    println!(
        "server RSS max {:.0} MB (mean {:.0} MB), CPU {:.0}%",
        r.server_rss_mb_max, r.server_rss_mb_mean, r.server_cpu_pct
    );
    if let Some(c) = &r.chaos {
        println!("chaos: {} restarts observed", c.restarts_observed);
        for f in &c.faults {
            println!(
                "  {:>6.1} s  panic {:<22} recovered in {:>8} ms, {} scenarios failed in the window",
                f.at_secs,
                f.actor,
                f.recovery_ms.map_or("never".to_string(), |ms| format!("{ms:.0}")),
                f.scenarios_failed_in_window
            );
        }
        println!(
            "acknowledged recordings: {}, lost: {}",
            c.acknowledged_recordings, c.lost_recordings
        );
    }
}

/// splitmix64, seeded per client: same seed, same choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}
