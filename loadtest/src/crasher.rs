//! `loadtest crasher`: kill -9 the real process under concurrent writers,
//! again and again, and check after every restart that nothing it
//! acknowledged was lost (after Qdrant's crasher).
//!
//! It starts the `lakehouse` binary on a fresh data dir, creates an index
//! of `items` items and seeds a small workers corpus (for playbook
//! records), then runs rounds: `writers` concurrent writers upsert,
//! overwrite and delete items (each id is owned by one writer, so its
//! latest acknowledged value is well defined) while a recorder adds
//! playbook recordings; at a random moment after the round's first
//! `min_acks_per_round` acknowledgements the process gets SIGKILL; it is
//! started again on the same data dir and, once ready, checked:
//!
//! - every id holds its latest acknowledged value — or the value of a
//!   write that was in flight when the process died (unknown outcome);
//! - no acknowledged delete came back (unless an in-flight upsert of it
//!   may have landed);
//! - every acknowledged recording is present;
//! - the index answers a search.
//!
//! After a check every id's state is known again, and the next round
//! starts from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// The index the crasher writes.
pub const INDEX: &str = "crasher";

#[derive(Debug, Clone)]
pub struct CrasherOptions {
    /// The `lakehouse` binary to run (a release build for real figures).
    pub binary: PathBuf,
    /// A fresh data dir (created; must be empty or absent).
    pub data_dir: PathBuf,
    /// SIGKILLs to deliver (the run ends after the last check).
    pub kills: u32,
    /// Bound on the whole run; it stops early (failing) past this.
    pub duration: Duration,
    /// Concurrent item writers (at least 8 for the real run).
    pub writers: usize,
    /// Items in the index before the first round.
    pub items: usize,
    /// Dimension of the index's vectors.
    pub dimension: usize,
    /// Workers seeded for the playbook recorder.
    pub workers: usize,
    /// Items per upsert request, at most (1..=this, at random).
    pub max_batch: usize,
    /// A round kills at a random moment between its `min_acks_per_round`-th
    /// acknowledgement and `max_round` after the round started.
    pub min_acks_per_round: u64,
    pub max_round: Duration,
    pub seed: u64,
    /// Extra environment for the server (e.g. `LAKEHOUSE__DATA__DURABILITY`).
    pub env: Vec<(String, String)>,
    /// Where the server's output goes (appended across restarts).
    pub server_log: Option<PathBuf>,
    /// Print progress to stderr.
    pub verbose: bool,
}

impl CrasherOptions {
    pub fn new(binary: PathBuf, data_dir: PathBuf) -> Self {
        Self {
            binary,
            data_dir,
            kills: 20,
            duration: Duration::from_secs(1800),
            writers: 8,
            items: 10_000,
            dimension: 64,
            workers: 500,
            max_batch: 4,
            min_acks_per_round: 200,
            max_round: Duration::from_secs(3),
            seed: 1,
            env: Vec::new(),
            server_log: None,
            verbose: false,
        }
    }
}

/// A check that failed: what was expected of an id, and what was found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Violation {
    pub after_kill: u32,
    pub id: String,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CrasherReport {
    pub kills: u32,
    /// Acknowledged writes (upserts, deletes, recordings) over the run;
    /// each is covered by a check after the kill that followed it.
    pub acknowledged_writes: u64,
    /// Ids and recordings whose state was checked after each kill, summed.
    pub states_checked: u64,
    /// Writes in flight at a kill (their outcome unknown; either is allowed).
    pub in_flight_at_kill: u64,
    pub recordings_acknowledged: u64,
    /// Time from each restart to a ready server, in ms.
    pub restart_ms: Vec<u64>,
    pub violations: Vec<Violation>,
    pub seconds: f64,
}

impl CrasherReport {
    pub fn summary(&self) -> String {
        format!(
            "{} kills, {} acknowledged writes checked, {} lost",
            self.kills,
            self.acknowledged_writes,
            self.violations.len()
        )
    }
}

/// What is known of one item: its latest acknowledged state, and the
/// states of writes whose outcome is unknown (in flight at a kill, or
/// answered with a server error).
#[derive(Debug, Clone, Default)]
struct ItemState {
    /// `Some(v)`: present with value `v`; `None`: absent (deleted).
    acked: Option<u64>,
    uncertain: Vec<Option<u64>>,
}

impl ItemState {
    fn allows(&self, found: Option<u64>) -> bool {
        self.acked == found || self.uncertain.contains(&found)
    }
}

/// The writers' model of the index: per owner, its ids.
struct Model {
    items: Vec<Mutex<HashMap<String, ItemState>>>,
    recordings: Mutex<Vec<crate::AckedRecording>>,
    next_value: AtomicU64,
}

struct Server {
    child: Child,
    base: String,
}

/// Runs the crasher to the end and reports; `Err` only when the harness
/// itself cannot go on (the server does not start, …).
pub async fn run(options: CrasherOptions) -> Result<CrasherReport> {
    let started = Instant::now();
    if options.writers == 0 || options.items < options.writers {
        bail!("need at least one writer and as many items as writers");
    }
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    if std::fs::read_dir(&options.data_dir)?.next().is_some() {
        bail!(
            "{} is not empty: the crasher needs a fresh data dir",
            options.data_dir.display()
        );
    }
    let port = free_port()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(options.writers * 2)
        .build()?;
    let mut report = CrasherReport::default();
    let mut server = start(&options, port, &http).await?;

    let model = Arc::new(Model {
        items: (0..options.writers)
            .map(|_| Mutex::new(HashMap::new()))
            .collect(),
        recordings: Mutex::new(Vec::new()),
        next_value: AtomicU64::new(1),
    });
    prepare(&options, &server, &http, &model).await?;
    let mut rng = Rng(options.seed);

    for kill in 1..=options.kills {
        if started.elapsed() > options.duration {
            bail!(
                "the run took longer than {:?} (after {} kills)",
                options.duration,
                kill - 1
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for owner in 0..options.writers {
            tasks.push(tokio::spawn(writer(
                options.clone(),
                http.clone(),
                server.base.clone(),
                model.clone(),
                owner,
                rng.next(),
                stop.clone(),
                acks.clone(),
            )));
        }
        tasks.push(tokio::spawn(recorder(
            options.clone(),
            http.clone(),
            server.base.clone(),
            model.clone(),
            rng.next(),
            stop.clone(),
            acks.clone(),
        )));

        // Kill at a random moment once writes are flowing.
        let round = Instant::now();
        while acks.load(Ordering::SeqCst) < options.min_acks_per_round {
            if round.elapsed() > options.max_round * 20 {
                bail!(
                    "round {kill}: only {} writes acknowledged",
                    acks.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let extra = rng.below(options.max_round.as_millis().max(1) as u64);
        tokio::time::sleep(Duration::from_millis(extra)).await;
        server.child.start_kill().context("SIGKILL")?;
        let _ = server.child.wait().await;
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            let (acked, in_flight) = task.await.context("a writer task failed")?;
            report.acknowledged_writes += acked;
            report.in_flight_at_kill += in_flight;
        }
        report.kills = kill;
        say(
            &options,
            format!(
                "kill {kill}: SIGKILL after {} acks this round",
                acks.load(Ordering::SeqCst)
            ),
        );

        let restarted = Instant::now();
        server = start(&options, port, &http).await?;
        report
            .restart_ms
            .push(restarted.elapsed().as_millis() as u64);
        let (checked, violations) = check(&server, &http, &model, kill, &options).await?;
        report.states_checked += checked;
        for violation in &violations {
            say(
                &options,
                format!("VIOLATION after kill {kill}: {violation:?}"),
            );
        }
        report.violations.extend(violations);
    }
    report.recordings_acknowledged = model.recordings.lock().await.len() as u64;
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn say(options: &CrasherOptions, line: String) {
    if options.verbose {
        eprintln!("crasher: {line}");
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Starts the binary on the data dir and waits until it is ready.
async fn start(options: &CrasherOptions, port: u16, http: &reqwest::Client) -> Result<Server> {
    let (stdout, stderr) = match &options.server_log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let mut command = Command::new(&options.binary);
    command
        .arg("serve")
        .arg("--port")
        .arg(port.to_string())
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--data-dir")
        .arg(&options.data_dir)
        // No config/ directory next to it: the compiled-in defaults.
        .current_dir(options.data_dir.parent().unwrap_or(Path::new("/")))
        .env("LAKEHOUSE__LOG__LEVEL", "warn")
        .envs(options.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", options.binary.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited while starting: {status}");
        }
        let ready = http
            .get(format!("{base}/ready"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(Server { child, base });
        }
        if Instant::now() > deadline {
            bail!("the server was not ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates the index, loads its items, seeds the workers.
async fn prepare(
    options: &CrasherOptions,
    server: &Server,
    http: &reqwest::Client,
    model: &Model,
) -> Result<()> {
    let created = http
        .post(format!("{}/v1/vectors/index", server.base))
        .json(&json!({"name": INDEX, "dimension": options.dimension}))
        .send()
        .await?;
    if !created.status().is_success() {
        bail!("creating the index: {}", created.text().await?);
    }
    let ids: Vec<usize> = (0..options.items).collect();
    for chunk in ids.chunks(500) {
        let value = model.next_value.fetch_add(1, Ordering::SeqCst);
        let items: Vec<Value> = chunk
            .iter()
            .map(|&i| item_json(&item_id(i), value, options.dimension))
            .collect();
        let added = http
            .post(format!("{}/v1/vectors/index/{INDEX}/add", server.base))
            .json(&json!({ "items": items }))
            .send()
            .await?;
        if !added.status().is_success() {
            bail!("loading the index: {}", added.text().await?);
        }
        for &i in chunk {
            model.items[i % options.writers].lock().await.insert(
                item_id(i),
                ItemState {
                    acked: Some(value),
                    uncertain: Vec::new(),
                },
            );
        }
    }
    let seeded = Command::new(&options.binary)
        .arg("seed")
        .arg("--workers")
        .arg(options.workers.to_string())
        .arg("--target")
        .arg(&server.base)
        .current_dir(options.data_dir.parent().unwrap_or(Path::new("/")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await?;
    if !seeded.status.success() {
        bail!(
            "seeding workers: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
    }
    Ok(())
}

fn item_id(i: usize) -> String {
    format!("item-{i:06}")
}

/// A vector that depends on the value, so overwrites really change it.
fn item_json(id: &str, value: u64, dimension: usize) -> Value {
    let mut rng = Rng(value.wrapping_mul(0x9e37_79b9) ^ id.len() as u64);
    let vector: Vec<f32> = (0..dimension)
        .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 + 0.01)
        .collect();
    json!({"id": id, "vector": vector, "metadata": {"v": value}})
}

/// One writer: random upserts (1..=max_batch items), overwrites and
/// deletes over the ids it owns, until `stop`. Returns (acknowledged
/// writes, writes whose outcome is unknown).
#[allow(clippy::too_many_arguments)]
async fn writer(
    options: CrasherOptions,
    http: reqwest::Client,
    base: String,
    model: Arc<Model>,
    owner: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> (u64, u64) {
    let mut rng = Rng(seed);
    let (mut acked, mut unknown) = (0u64, 0u64);
    let owned: Vec<String> = model.items[owner].lock().await.keys().cloned().collect();
    while !stop.load(Ordering::SeqCst) {
        let count = 1 + rng.below(options.max_batch.max(1) as u64) as usize;
        let picked: Vec<String> = (0..count)
            .map(|_| owned[rng.below(owned.len() as u64) as usize].clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let present = model.items[owner]
            .lock()
            .await
            .get(&picked[0])
            .is_some_and(|s| s.acked.is_some());
        let delete = picked.len() == 1 && present && rng.below(100) < 30;
        let (outcome, intended) = if delete {
            let id = &picked[0];
            let sent = http
                .delete(format!("{base}/v1/vectors/index/{INDEX}/items/{id}"))
                .send()
                .await;
            (classify(sent).await, vec![(id.clone(), None)])
        } else {
            let value = model.next_value.fetch_add(1, Ordering::SeqCst);
            let items: Vec<Value> = picked
                .iter()
                .map(|id| item_json(id, value, options.dimension))
                .collect();
            let sent = http
                .post(format!("{base}/v1/vectors/index/{INDEX}/add"))
                .json(&json!({ "items": items }))
                .send()
                .await;
            let intended = picked.iter().map(|id| (id.clone(), Some(value))).collect();
            (classify(sent).await, intended)
        };
        let mut items = model.items[owner].lock().await;
        match outcome {
            Outcome::Acked => {
                acked += 1;
                acks.fetch_add(1, Ordering::SeqCst);
                for (id, state) in intended {
                    let entry = items.entry(id).or_default();
                    entry.acked = state;
                    entry.uncertain.clear();
                }
            }
            Outcome::Unknown => {
                unknown += 1;
                for (id, state) in intended {
                    items.entry(id).or_default().uncertain.push(state);
                }
            }
            Outcome::Refused => {}
        }
        drop(items);
        if matches!(outcome, Outcome::Unknown) {
            // The server is going down or restarting: do not spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    (acked, unknown)
}

/// Records playbook placements until `stop`; keeps the acknowledged ids.
async fn recorder(
    options: CrasherOptions,
    http: reqwest::Client,
    base: String,
    model: Arc<Model>,
    seed: u64,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> (u64, u64) {
    let mut rng = Rng(seed);
    let (mut acked, mut unknown) = (0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let worker = format!("W{:07}", 1 + rng.below(options.workers as u64));
        let found = http
            .get(format!("{base}/v1/vectors/index/workers/items/{worker}"))
            .send()
            .await;
        let Ok(found) = found else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let Ok(body) = found.json::<Value>().await else {
            continue;
        };
        let Some(role) = body["metadata"]["role"].as_str() else {
            continue;
        };
        let sent = http
            .post(format!("{base}/v1/matrix/playbooks/record"))
            .json(&json!({
                "query": format!("{role} for a night shift"),
                "role": role,
                "worker_ids": [worker],
                "score": 0.5,
            }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                let workers = [worker.to_string()];
                if let Some(recording) = response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|answer| crate::AckedRecording::from_answer(&workers, &answer))
                {
                    model.recordings.lock().await.push(recording);
                    acked += 1;
                    acks.fetch_add(1, Ordering::SeqCst);
                }
            }
            _ => unknown += 1,
        }
    }
    (acked, unknown)
}

enum Outcome {
    /// 2xx: the write is acknowledged.
    Acked,
    /// A 4xx: refused, nothing written.
    Refused,
    /// No answer, or a server error: it may or may not have been written.
    Unknown,
}

async fn classify(sent: reqwest::Result<reqwest::Response>) -> Outcome {
    match sent {
        Ok(response) if response.status().is_success() => {
            // Only a complete answer is an acknowledgement.
            match response.bytes().await {
                Ok(_) => Outcome::Acked,
                Err(_) => Outcome::Unknown,
            }
        }
        Ok(response) if response.status().is_client_error() => Outcome::Refused,
        _ => Outcome::Unknown,
    }
}

/// Checks every id and recording against the model, then makes what was
/// found the new known state. Returns (states checked, violations).
async fn check(
    server: &Server,
    http: &reqwest::Client,
    model: &Model,
    kill: u32,
    options: &CrasherOptions,
) -> Result<(u64, Vec<Violation>)> {
    let mut violations = Vec::new();
    let mut checked = 0u64;
    for owner in &model.items {
        let mut items = owner.lock().await;
        for (id, state) in items.iter_mut() {
            let found = item_value(http, &server.base, INDEX, id).await?;
            checked += 1;
            if !state.allows(found) {
                violations.push(Violation {
                    after_kill: kill,
                    id: id.clone(),
                    expected: format!("{:?} (or one of {:?})", state.acked, state.uncertain),
                    found: format!("{found:?}"),
                });
            }
            state.acked = found;
            state.uncertain.clear();
        }
    }
    let recordings = model.recordings.lock().await;
    checked += recordings.len() as u64;
    for violation in crate::audit_recordings(http, &server.base, &recordings).await? {
        violations.push(Violation {
            after_kill: kill,
            id: "recordings".into(),
            expected: "every acknowledged recording counted".into(),
            found: violation,
        });
    }
    drop(recordings);
    let probe: Vec<f32> = (0..options.dimension).map(|i| 1.0 + i as f32).collect();
    let search = http
        .post(format!("{}/v1/vectors/index/{INDEX}/search", server.base))
        .json(&json!({"vector": probe, "k": 5}))
        .send()
        .await?;
    let hits = search.json::<Value>().await?["hits"]
        .as_array()
        .map_or(0, Vec::len);
    if hits == 0 {
        violations.push(Violation {
            after_kill: kill,
            id: "search".into(),
            expected: "hits".into(),
            found: "no hits".into(),
        });
    }
    Ok((checked, violations))
}

/// The `v` of an item, or `None` if it is absent.
async fn item_value(
    http: &reqwest::Client,
    base: &str,
    index: &str,
    id: &str,
) -> Result<Option<u64>> {
    let response = http
        .get(format!("{base}/v1/vectors/index/{index}/items/{id}"))
        .send()
        .await?;
    match response.status() {
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        reqwest::StatusCode::OK => {
            let body: Value = response.json().await?;
            body["metadata"]["v"]
                .as_u64()
                .map(Some)
                .with_context(|| format!("{id}: no value in {body}"))
        }
        status => bail!("{id}: HTTP {status}: {}", response.text().await?),
    }
}

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
