//! Actor-level tests of the index actor: one actor (or the vectors
//! supervisor with its children) on a temporary data dir, driven through
//! its mailbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use serde_json::json;

use super::index::{actor_name, IndexActor, IndexArguments, IndexMessage};
use super::IndexError;
use super::VectorsContext;
use crate::config::Settings;
use crate::domain::vectors::{
    Hit, HnswParams, IndexDefinition, ItemInput, Metric, SearchRequest, UpsertOutcome,
    VectorStorage,
};
use crate::supervision::{Directory, Fault, StatusBoard, Strategy, Supervisor};
use crate::telemetry::Metrics;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Tracing output, only when `TEST_LOG` is set.
fn trace() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            crate::telemetry::init_tracing(
                "debug",
                crate::config::LogFormat::Human,
                std::io::stdout,
            );
        }
    });
}

/// A small deterministic generator (splitmix64), so tests need no RNG crate
/// (the keyword index's tests use it too).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [-1, 1).
    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn unit_vector(&mut self, dimension: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dimension).map(|_| self.float()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

fn settings(dir: &Path) -> Arc<Settings> {
    settings_with(dir, &[])
}

fn settings_with(dir: &Path, overrides: &[(&str, &str)]) -> Arc<Settings> {
    Arc::new(Settings::for_tests(dir, overrides))
}

fn definition(name: &str, dimension: usize, hnsw: HnswParams) -> IndexDefinition {
    IndexDefinition {
        name: name.to_string(),
        dimension,
        metric: Metric::Cosine,
        hnsw,
        kind: Default::default(),
        storage: Default::default(),
        analysis: crate::domain::analysis::Analysis::CURRENT,
        created_at: chrono::Utc::now(),
        synonyms: Vec::new(),
        reindex: None,
    }
}

fn params() -> HnswParams {
    HnswParams {
        m: 16,
        ef_construction: 64,
        ef_search: 64,
    }
}

async fn spawn_index(dir: &Path, definition: IndexDefinition) -> ActorRef<IndexMessage> {
    spawn_index_with(dir, definition, &[]).await
}

async fn spawn_index_with(
    dir: &Path,
    definition: IndexDefinition,
    overrides: &[(&str, &str)],
) -> ActorRef<IndexMessage> {
    spawn_index_in(dir, definition, overrides, Directory::new()).await
}

async fn spawn_index_in(
    dir: &Path,
    definition: IndexDefinition,
    overrides: &[(&str, &str)],
    directory: Directory,
) -> ActorRef<IndexMessage> {
    let settings = settings_with(dir, overrides);
    let arguments = IndexArguments {
        definition,
        dir: dir.join("vectors"),
        settings: settings.vectors.clone(),
        durability: settings.data.durability,
        fence: Default::default(),
        hot_fields: Default::default(),
        directory,
        metrics: Arc::new(Metrics::new().unwrap()),
        board: StatusBoard::new(Strategy::OneForOne),
        call_timeout: TIMEOUT,
        embed_chunk: 64,
        lance: Default::default(),
    };
    let (actor, _) = Actor::spawn(None, IndexActor, arguments).await.unwrap();
    actor
}

fn item(id: &str, vector: Vec<f32>, metadata: serde_json::Value) -> ItemInput {
    ItemInput {
        id: id.to_string(),
        vector: Some(vector),
        text: None,
        metadata: Some(metadata),
    }
}

async fn upsert(actor: &ActorRef<IndexMessage>, items: Vec<ItemInput>) -> UpsertOutcome {
    actor
        .call(|reply| IndexMessage::Upsert { items, reply }, Some(TIMEOUT))
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn query(vector: Vec<f32>, k: usize) -> SearchRequest {
    SearchRequest::for_vector(vector, k)
}

async fn search(actor: &ActorRef<IndexMessage>, request: SearchRequest) -> Vec<Hit> {
    actor
        .call(
            |reply| IndexMessage::Search { request, reply },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

async fn count(actor: &ActorRef<IndexMessage>) -> usize {
    actor
        .call(|reply| IndexMessage::Info { reply }, Some(TIMEOUT))
        .await
        .unwrap()
        .unwrap()
        .count
}

fn axis(dimension: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; dimension];
    v[i] = 1.0;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_search_upsert_get_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("basics", 4, params())).await;

    let outcome = upsert(
        &actor,
        vec![
            item("a", axis(4, 0), json!({"role": "welder"})),
            item("b", axis(4, 1), json!({"role": "cook"})),
            item("c", vec![1.0, 1.0, 0.0, 0.0], json!({"role": "welder"})),
        ],
    )
    .await;
    assert_eq!(
        outcome,
        UpsertOutcome {
            inserted: 3,
            updated: 0
        }
    );

    let hits = search(&actor, query(axis(4, 0), 2)).await;
    assert_eq!(hits[0].id, "a");
    assert!(
        hits[0].distance.abs() < 1e-5,
        "cosine distance of a vector to itself"
    );
    assert_eq!(hits[1].id, "c");
    assert!((hits[1].distance - (1.0 - 0.5f32.sqrt())).abs() < 1e-4);

    // Upsert by id replaces the vector and the metadata.
    let outcome = upsert(
        &actor,
        vec![item("a", axis(4, 2), json!({"role": "driver"}))],
    )
    .await;
    assert_eq!(
        outcome,
        UpsertOutcome {
            inserted: 0,
            updated: 1
        }
    );
    let hits = search(&actor, query(axis(4, 2), 1)).await;
    assert_eq!(
        (hits[0].id.as_str(), &hits[0].metadata),
        ("a", &json!({"role": "driver"}))
    );
    assert_eq!(count(&actor).await, 3);

    let item = actor
        .call(
            |reply| IndexMessage::Get {
                id: "a".into(),
                reply,
            },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(item.vector, axis(4, 2));

    actor
        .call(
            |reply| IndexMessage::Delete {
                id: "a".into(),
                reply,
            },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let hits = search(&actor, query(axis(4, 2), 3)).await;
    assert!(
        hits.iter().all(|h| h.id != "a"),
        "deleted items are never returned"
    );
    assert_eq!(count(&actor).await, 2);
    let missing = actor
        .call(
            |reply| IndexMessage::Delete {
                id: "a".into(),
                reply,
            },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        missing,
        Err(super::IndexError::ItemNotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_at_10_is_at_least_095_against_exact_search() {
    recall_at_10_of(VectorStorage::F32).await;
}

/// fp16 storage (faiss `SQfp16`) keeps recall@10 at 0.95 or more on the
/// same 10,000 vectors, and its distances within 1e-3 of the exact ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fp16_storage_keeps_recall_at_10_at_least_095() {
    recall_at_10_of(VectorStorage::Fp16).await;
}

async fn recall_at_10_of(storage: VectorStorage) {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 128;
    let hnsw = HnswParams {
        m: 32,
        ef_construction: 128,
        ef_search: 128,
    };
    let directory = Directory::new();
    let definition = IndexDefinition {
        storage,
        ..definition("recall", dimension, hnsw)
    };
    let actor = spawn_index_in(dir.path(), definition, &[], directory.clone()).await;

    let mut rng = Rng(42);
    let vectors: Vec<Vec<f32>> = (0..10_000).map(|_| rng.unit_vector(dimension)).collect();
    for (chunk_index, chunk) in vectors.chunks(1000).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| item(&(chunk_index * 1000 + i).to_string(), v.clone(), json!({})))
            .collect();
        upsert(&actor, items).await;
    }

    let mut found = 0;
    let queries = 100;
    for _ in 0..queries {
        let q = rng.unit_vector(dimension);
        let mut exact: Vec<(usize, f32)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>()))
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: BTreeSet<String> = exact[..10].iter().map(|(i, _)| i.to_string()).collect();
        // The published reader (how HTTP and the matrix search) and the
        // mailbox give the same hits.
        let reader = crate::actors::vectors::index::reader(&directory, "recall")
            .expect("a loaded index publishes its reader");
        let direct = reader.search(query(q.clone(), 10)).await.unwrap();
        let hits = search(&actor, query(q, 10)).await;
        let pairs = |hits: &[Hit]| -> Vec<(String, f32)> {
            hits.iter().map(|h| (h.id.clone(), h.distance)).collect()
        };
        assert_eq!(pairs(&direct), pairs(&hits));
        found += direct.iter().filter(|h| truth.contains(&h.id)).count();
        for hit in &direct {
            let i: usize = hit.id.parse().unwrap();
            let exact = 1.0 - exact.iter().find(|(j, _)| *j == i).unwrap().1;
            assert!(
                (hit.distance - exact).abs() < 1e-3,
                "{storage:?}: {} vs {exact}",
                hit.distance
            );
        }
    }
    let recall = found as f64 / (queries * 10) as f64;
    assert!(recall >= 0.95, "{storage:?}: recall@10 = {recall}");

    // The reader goes with its incarnation: searches then ask the actor.
    actor.stop_and_wait(None, Some(TIMEOUT)).await.unwrap();
    assert!(crate::actors::vectors::index::reader(&directory, "recall").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_ids_are_never_returned_and_filters_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("filters", 8, params())).await;
    let mut rng = Rng(7);
    let items: Vec<ItemInput> = (0..300)
        .map(|i| {
            let role = ["welder", "cook", "driver"][i % 3];
            item(
                &format!("w{i}"),
                rng.unit_vector(8),
                json!({"role": role, "shift": i % 2 == 0}),
            )
        })
        .collect();
    upsert(&actor, items).await;

    let q = rng.unit_vector(8);
    let top = search(&actor, query(q.clone(), 20)).await;
    let excluded: Vec<String> = top[..10].iter().map(|h| h.id.clone()).collect();
    let mut request = query(q.clone(), 20);
    request.exclude_ids = Some(excluded.clone());
    let hits = search(&actor, request).await;
    assert_eq!(hits.len(), 20);
    assert!(hits.iter().all(|h| !excluded.contains(&h.id)));

    let mut request = query(q.clone(), 50);
    request.filter = Some(
        json!({"role": "cook", "shift": true})
            .as_object()
            .unwrap()
            .clone(),
    );
    request.exclude_ids = Some(vec!["w4".into()]);
    let hits = search(&actor, request).await;
    assert_eq!(
        hits.len(),
        49,
        "50 cooks on even shifts exist, w4 is excluded"
    );
    for hit in &hits {
        assert_eq!(hit.metadata["role"], "cook");
        assert_eq!(hit.metadata["shift"], true);
        assert_ne!(hit.id, "w4");
    }
    assert!(
        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
        "sorted by distance"
    );

    let mut request = query(q, 5);
    request.filter = Some(json!({"role": "astronaut"}).as_object().unwrap().clone());
    assert!(search(&actor, request).await.is_empty());
}

/// The vectors supervisor with one index, as `serve` runs it.
struct Tree {
    context: VectorsContext,
    supervisor: ActorRef<crate::supervision::SupervisorMessage>,
}

async fn start_tree(dir: &Path, definition: IndexDefinition) -> Tree {
    trace();
    let settings = settings(dir);
    let context = VectorsContext::new(
        settings,
        Directory::new(),
        Arc::new(Metrics::new().unwrap()),
        StatusBoard::new(Strategy::OneForOne),
    );
    std::fs::create_dir_all(&context.dir).unwrap();
    let path = context.definition_path(&definition.name);
    if !path.exists() {
        crate::durability::write_atomically(
            &path,
            &serde_json::to_vec(&definition).unwrap(),
            crate::config::Durability::Process,
        )
        .unwrap();
    }
    let spec = context.supervisor_spec();
    let root_board = StatusBoard::new(Strategy::OneForOne);
    let (supervisor, _) = Actor::spawn(
        Some(context.directory.registered_name("root")),
        Supervisor,
        crate::supervision::SupervisorArguments {
            name: "root".into(),
            strategy: Strategy::OneForOne,
            intensity: crate::supervision::Intensity {
                max_restarts: 100,
                period: Duration::from_secs(10),
            },
            backoff: crate::supervision::Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(10),
            },
            children: vec![spec],
            board: root_board,
            directory: context.directory.clone(),
            metrics: context.metrics.clone(),
        },
    )
    .await
    .unwrap();
    Tree {
        context,
        supervisor,
    }
}

impl Tree {
    fn index(&self, name: &str) -> Option<ActorRef<IndexMessage>> {
        self.context.directory.lookup(&actor_name(name))
    }

    async fn call<T: Send + 'static>(
        &self,
        name: &str,
        build: impl FnOnce(ractor::RpcReplyPort<T>) -> IndexMessage,
    ) -> Result<T, crate::supervision::CallError> {
        self.context
            .directory
            .call(&actor_name(name), build, TIMEOUT)
            .await
    }

    async fn stop(self) {
        self.supervisor
            .stop_and_wait(None, Some(Duration::from_secs(30)))
            .await
            .unwrap();
    }
}

/// Writes at least `count` items and goes on until `stop` is set, retrying
/// each until it is acknowledged (so the set written equals the set
/// acknowledged); returns the acked ids.
async fn write_until_acked(tree: &Tree, name: &str, count: usize, dimension: usize) -> Vec<String> {
    write_while(
        tree,
        name,
        count,
        dimension,
        &std::sync::atomic::AtomicBool::new(true),
    )
    .await
}

async fn write_while(
    tree: &Tree,
    name: &str,
    count: usize,
    dimension: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<String> {
    let mut rng = Rng(99);
    let mut acked = Vec::new();
    for i in 0.. {
        if i >= count && stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let id = format!("item-{i}");
        let vector = rng.unit_vector(dimension);
        loop {
            let items = vec![item(&id, vector.clone(), json!({"i": i}))];
            match tree
                .call(name, |reply| IndexMessage::Upsert { items, reply })
                .await
            {
                Ok(Ok(_)) => break,
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        acked.push(id);
    }
    acked
}

async fn assert_all_present(tree: &Tree, name: &str, acked: &[String], dimension: usize) {
    let info = loop {
        if let Ok(info) = tree.call(name, |reply| IndexMessage::Info { reply }).await {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        info.count,
        acked.len(),
        "count matches the acknowledged writes"
    );
    for id in acked {
        let item = tree
            .call(name, |reply| IndexMessage::Get {
                id: id.clone(),
                reply,
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{id} missing: {e}"));
        let request = query(item.vector.clone(), 1);
        let hits = tree
            .call(name, |reply| IndexMessage::Search { request, reply })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hits[0].id, *id, "{id} is searchable");
    }
    let _ = dimension;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_during_writes_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 16;
    let tree = Arc::new(start_tree(dir.path(), definition("heal", dimension, params())).await);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (tree, stop) = (tree.clone(), stop.clone());
        tokio::spawn(async move { write_while(&tree, "heal", 200, dimension, &stop).await })
    };
    // Four panics while the writer runs, each after the previous restart.
    for n in 1..=4u64 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        loop {
            if let Some(actor) = tree.index("heal") {
                if actor
                    .send_message(IndexMessage::Fault(Fault::panic()))
                    .is_ok()
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tree
            .context
            .board
            .restarts(&actor_name("heal"))
            .unwrap_or(0)
            < n
        {
            assert!(
                std::time::Instant::now() < deadline,
                "restart {n} did not happen"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = writer.await.unwrap();

    let restarts = tree.context.board.restarts(&actor_name("heal")).unwrap();
    assert!(restarts >= 4, "restarts = {restarts}");
    assert!(acked.len() >= 200);
    assert_all_present(&tree, "heal", &acked, dimension).await;

    // The same after a whole-process restart on the same data dir.
    let tree = Arc::try_unwrap(tree).ok().expect("writer finished");
    tree.stop().await;
    let tree = start_tree(dir.path(), definition("heal", dimension, params())).await;
    assert_all_present(&tree, "heal", &acked, dimension).await;
    tree.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_snapshot_is_ignored_and_the_index_rebuilt_from_lance() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 8;
    let tree = start_tree(dir.path(), definition("snap", dimension, params())).await;
    let acked = write_until_acked(&tree, "snap", 50, dimension).await;
    tree.stop().await; // a graceful stop writes a snapshot

    let snapshot = dir.path().join("vectors/snap.faiss");
    let bytes = std::fs::read(&snapshot).expect("snapshot written at shutdown");
    let mut corrupted = bytes.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(&snapshot, corrupted).unwrap();

    let tree = start_tree(dir.path(), definition("snap", dimension, params())).await;
    assert_all_present(&tree, "snap", &acked, dimension).await;
    let info = tree
        .call("snap", |reply| IndexMessage::Info { reply })
        .await
        .unwrap();
    assert_eq!(info.graph_vectors, 50, "rebuilt from the live rows only");
    tree.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_past_the_share_are_dropped_by_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("rebuild", 8, params())).await;
    let mut rng = Rng(5);
    let first: Vec<ItemInput> = (0..50)
        .map(|i| item(&format!("i{i}"), rng.unit_vector(8), json!({"v": 1})))
        .collect();
    upsert(&actor, first).await;
    let replacements: Vec<Vec<f32>> = (0..50).map(|_| rng.unit_vector(8)).collect();
    let second: Vec<ItemInput> = replacements
        .iter()
        .enumerate()
        .map(|(i, v)| item(&format!("i{i}"), v.clone(), json!({"v": 2})))
        .collect();
    assert_eq!(
        upsert(&actor, second).await,
        UpsertOutcome {
            inserted: 0,
            updated: 50
        }
    );

    // The rebuild runs in the commit task right after the reply.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let info = loop {
        let info = actor
            .call(|reply| IndexMessage::Info { reply }, Some(TIMEOUT))
            .await
            .unwrap()
            .unwrap();
        if info.tombstones == 0 || std::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(info.count, 50);
    assert_eq!(
        (info.graph_vectors, info.tombstones),
        (50, 0),
        "50 tombstones > 30% of 100: rebuilt"
    );
    for (i, vector) in replacements.iter().enumerate().take(10) {
        let hits = search(&actor, query(vector.clone(), 1)).await;
        assert_eq!(hits[0].id, format!("i{i}"));
        assert_eq!(hits[0].metadata, json!({"v": 2}));
    }
}

/// The ids of the `k` live items of `group` nearest `q` by brute force.
fn brute_force(
    live: &HashMap<String, (Vec<f32>, &'static str)>,
    group: &str,
    q: &[f32],
    k: usize,
) -> Vec<String> {
    let mut scored: Vec<(f32, &String)> = live
        .iter()
        .filter(|(_, (_, g))| *g == group)
        .map(|(id, (v, _))| (1.0 - v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.clone())
        .collect()
}

fn in_group(q: &[f32], k: usize, group: &str) -> SearchRequest {
    let mut request = query(q.to_vec(), k);
    request.filter = Some(json!({"group": group}).as_object().unwrap().clone());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_searches_are_exact_and_follow_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 48;
    let actor = spawn_index(dir.path(), definition("exact", dimension, params())).await;
    let mut rng = Rng(11);
    let groups = ["a", "b", "c"];
    let mut live: HashMap<String, (Vec<f32>, &'static str)> = HashMap::new();
    let mut items = Vec::new();
    for i in 0..3000 {
        let (vector, group) = (rng.unit_vector(dimension), groups[i % 3]);
        items.push(item(
            &format!("i{i}"),
            vector.clone(),
            json!({"group": group}),
        ));
        live.insert(format!("i{i}"), (vector, group));
    }
    for chunk in items.chunks(1000) {
        upsert(&actor, chunk.to_vec()).await;
    }
    let queries: Vec<Vec<f32>> = (0..15).map(|_| rng.unit_vector(dimension)).collect();
    let check = |live: &HashMap<String, (Vec<f32>, &'static str)>, hits: &[Hit], q: &[f32]| {
        let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(ids, brute_force(live, "a", q, 10));
        for hit in hits {
            let exact = 1.0
                - live[&hit.id]
                    .0
                    .iter()
                    .zip(q)
                    .map(|(a, b)| a * b)
                    .sum::<f32>();
            assert!(
                (hit.distance - exact).abs() < 1e-5,
                "reported distances are exact"
            );
        }
    };
    for q in &queries {
        check(&live, &search(&actor, in_group(q, 10, "a")).await, q);
    }

    // After the first filtered search: inserts, moves between groups,
    // deletes; the same queries again (no stale cached results either).
    let mut writes = Vec::new();
    for i in 3000..3200 {
        let vector = rng.unit_vector(dimension);
        writes.push(item(
            &format!("i{i}"),
            vector.clone(),
            json!({"group": "a"}),
        ));
        live.insert(format!("i{i}"), (vector, "a"));
    }
    for i in (0..600).step_by(3) {
        let vector = live[&format!("i{i}")].0.clone();
        writes.push(item(
            &format!("i{i}"),
            vector.clone(),
            json!({"group": "b"}),
        ));
        live.insert(format!("i{i}"), (vector, "b"));
    }
    upsert(&actor, writes).await;
    for i in (600..900).step_by(3) {
        actor
            .call(
                |reply| IndexMessage::Delete {
                    id: format!("i{i}"),
                    reply,
                },
                Some(TIMEOUT),
            )
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        live.remove(&format!("i{i}"));
    }
    for q in &queries {
        check(&live, &search(&actor, in_group(q, 10, "a")).await, q);
    }

    // A repeated search sees a write made between the two.
    let q = &queries[0];
    let before = search(&actor, in_group(q, 10, "a")).await;
    assert_ne!(before[0].id, "twin");
    upsert(&actor, vec![item("twin", q.clone(), json!({"group": "a"}))]).await;
    let after = search(&actor, in_group(q, 10, "a")).await;
    assert_eq!(after[0].id, "twin");
    assert!(after[0].distance < 1e-5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_version_cleanup_keep_the_log_small_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = [
        ("vectors.max_fragments", "4"),
        ("vectors.version_retention_secs", "0"),
    ];
    let dimension = 8;
    let actor = spawn_index_with(
        dir.path(),
        definition("log", dimension, params()),
        &overrides,
    )
    .await;
    let mut rng = Rng(3);
    let vectors: Vec<Vec<f32>> = (0..60).map(|_| rng.unit_vector(dimension)).collect();
    for (i, vector) in vectors.iter().enumerate() {
        // One commit each: 60 versions and 60 fragments without upkeep.
        upsert(
            &actor,
            vec![item(&format!("i{i}"), vector.clone(), json!({"i": i}))],
        )
        .await;
    }
    let dataset = dir.path().join("vectors/log.lance");
    let versions = || {
        std::fs::read_dir(dataset.join("_versions"))
            .unwrap()
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while versions() > 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(versions() <= 20, "{} versions kept", versions());

    // The idle snapshot is written beside the commits and installed whole.
    let meta_path = dir.path().join("vectors/log.faiss.json");
    let covered = || -> Option<u64> {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).ok()?).ok()?;
        meta["max_seq"].as_u64()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while covered() != Some(60) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(covered(), Some(60), "the snapshot covers every write");
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("vectors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Everything is still there, in memory and (after a restart) in Lance.
    actor.stop_and_wait(None, Some(TIMEOUT)).await.unwrap();
    let actor = spawn_index_with(
        dir.path(),
        definition("log", dimension, params()),
        &overrides,
    )
    .await;
    assert_eq!(count(&actor).await, 60);
    // Compaction runs beside the commits (a trigger while one runs is
    // skipped), so some of the last appends may still be separate.
    let info = actor
        .call(|reply| IndexMessage::Info { reply }, Some(TIMEOUT))
        .await
        .unwrap()
        .unwrap();
    assert!(
        info.fragments < 20,
        "{} fragments of 60 appends",
        info.fragments
    );
    for (i, vector) in vectors.iter().enumerate() {
        let hits = search(&actor, query(vector.clone(), 1)).await;
        assert_eq!(hits[0].id, format!("i{i}"));
        assert_eq!(hits[0].metadata, json!({"i": i}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_that_stops_being_written_drops_its_old_versions() {
    let dir = tempfile::tempdir().unwrap();
    // No compaction is due (10 fragments < 100): only the idle upkeep,
    // once the last write is older than the retention, removes versions.
    let overrides = [
        ("vectors.max_fragments", "100"),
        ("vectors.version_retention_secs", "1"),
    ];
    let actor = spawn_index_with(dir.path(), definition("aged", 8, params()), &overrides).await;
    let mut rng = Rng(9);
    for i in 0..10 {
        upsert(
            &actor,
            vec![item(&format!("i{i}"), rng.unit_vector(8), json!({}))],
        )
        .await;
    }
    let versions_dir = dir.path().join("vectors/aged.lance/_versions");
    let versions = || std::fs::read_dir(&versions_dir).unwrap().count();
    assert!(versions() >= 10, "one version per commit: {}", versions());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while versions() > 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(versions() <= 3, "{} versions kept", versions());
    assert_eq!(count(&actor).await, 10);
}

// ---------------------------------------------------------------------
// Recovery edges: torn manifests, other open errors, snapshots that claim
// too much, a panic inside the commit task, concurrent ef_search.
// ---------------------------------------------------------------------

async fn start_tree_with(
    dir: &Path,
    definition: IndexDefinition,
    overrides: &[(&str, &str)],
) -> Tree {
    let settings = settings_with(dir, overrides);
    let context = VectorsContext::new(
        settings,
        Directory::new(),
        Arc::new(Metrics::new().unwrap()),
        StatusBoard::new(Strategy::OneForOne),
    );
    std::fs::create_dir_all(&context.dir).unwrap();
    let path = context.definition_path(&definition.name);
    if !path.exists() {
        crate::durability::write_atomically(
            &path,
            &serde_json::to_vec(&definition).unwrap(),
            crate::config::Durability::Process,
        )
        .unwrap();
    }
    let (supervisor, _) = Actor::spawn(
        Some(context.directory.registered_name("root")),
        Supervisor,
        crate::supervision::SupervisorArguments {
            name: "root".into(),
            strategy: Strategy::OneForOne,
            intensity: crate::supervision::Intensity {
                max_restarts: 100,
                period: Duration::from_secs(10),
            },
            backoff: crate::supervision::Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(10),
            },
            children: vec![context.supervisor_spec()],
            board: StatusBoard::new(Strategy::OneForOne),
            directory: context.directory.clone(),
            metrics: context.metrics.clone(),
        },
    )
    .await
    .unwrap();
    Tree {
        context,
        supervisor,
    }
}

/// The manifests of an index's dataset, newest first.
fn manifests(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir.join(format!("vectors/{name}.lance/_versions")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
            .collect();
    // V2 names are u64::MAX - version: the newest sorts first.
    found.sort();
    found
}

/// Waits (bounded, as a failure guard) until `condition` holds.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn running(tree: &Tree, name: &str) {
    let actor = actor_name(name);
    wait_for(&format!("{actor} running"), || {
        tree.context.board.status(&actor) == Some(crate::supervision::ChildStatus::Running)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_newest_manifest_is_set_aside_and_the_version_before_it_opened() {
    for damage in ["empty", "cut in half"] {
        let dir = tempfile::tempdir().unwrap();
        let dimension = 8;
        let tree = start_tree(dir.path(), definition("torn", dimension, params())).await;
        let kept = write_until_acked(&tree, "torn", 20, dimension).await;
        // One more commit: the one a power loss tears.
        let items = vec![item("torn-away", axis(dimension, 0), json!({}))];
        tree.call("torn", |reply| IndexMessage::Upsert { items, reply })
            .await
            .unwrap()
            .unwrap();
        tree.stop().await;

        let all = manifests(dir.path(), "torn");
        let newest = all[0].clone();
        let bytes = std::fs::read(&newest).unwrap();
        let torn = if damage == "empty" {
            Vec::new()
        } else {
            bytes[..bytes.len() / 2].to_vec()
        };
        std::fs::write(&newest, torn).unwrap();

        let tree = start_tree(dir.path(), definition("torn", dimension, params())).await;
        assert_all_present(&tree, "torn", &kept, dimension).await;
        let recoveries = tree
            .context
            .metrics
            .vector_manifest_recoveries
            .with_label_values(&["torn"])
            .get();
        assert_eq!(recoveries, 1, "{damage}: the recovery is counted");
        assert_eq!(
            manifests(dir.path(), "torn"),
            all[1..].to_vec(),
            "{damage}: only the newest moved"
        );
        let quarantined: Vec<_> = std::fs::read_dir(dir.path().join("vectors/torn.quarantine"))
            .unwrap()
            .collect();
        assert_eq!(quarantined.len(), 1, "{damage}: set aside, not deleted");

        // The index goes on: the version number is reused by the next commit.
        let items = vec![item("after", axis(dimension, 1), json!({}))];
        tree.call("torn", |reply| IndexMessage::Upsert { items, reply })
            .await
            .unwrap()
            .unwrap();
        let mut expected = kept.clone();
        expected.push("after".into());
        assert_all_present(&tree, "torn", &expected, dimension).await;
        tree.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_error_that_is_not_a_torn_manifest_fails_the_index_and_moves_nothing() {
    let overrides = [
        ("supervision.index_max_restarts", "2"),
        ("supervision.index_period_secs", "60"),
    ];
    for damage in ["manifest unreadable", "data file missing"] {
        let dir = tempfile::tempdir().unwrap();
        let tree = start_tree_with(dir.path(), definition("hurt", 8, params()), &overrides).await;
        write_until_acked(&tree, "hurt", 5, 8).await;
        tree.stop().await;

        let before = manifests(dir.path(), "hurt");
        match damage {
            // Not torn: it cannot be read at all (a directory in its place).
            "manifest unreadable" => {
                std::fs::remove_file(&before[0]).unwrap();
                std::fs::create_dir(&before[0]).unwrap();
            }
            _ => {
                let data = dir.path().join("vectors/hurt.lance/data");
                let file = std::fs::read_dir(&data)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path();
                std::fs::rename(&file, dir.path().join("moved-away.lance")).unwrap();
            }
        }

        let tree = start_tree_with(dir.path(), definition("hurt", 8, params()), &overrides).await;
        let actor = actor_name("hurt");
        wait_for(&format!("{damage}: the index is left failed"), || {
            tree.context.board.status(&actor) == Some(crate::supervision::ChildStatus::Failed)
        })
        .await;
        let failure = tree.context.board.last_failure(&actor).unwrap();
        assert!(
            failure.reason.contains("gave up"),
            "{damage}: {}",
            failure.reason
        );
        assert_eq!(
            manifests(dir.path(), "hurt"),
            before,
            "{damage}: nothing moved"
        );
        assert!(
            !dir.path().join("vectors/hurt.quarantine").exists(),
            "{damage}"
        );
        assert_eq!(
            tree.context
                .metrics
                .vector_manifest_recoveries
                .with_label_values(&["hurt"])
                .get(),
            0
        );
        // Callers are told at once, with the reason.
        let outcome = tree
            .call("hurt", |reply| IndexMessage::Info { reply })
            .await;
        assert!(
            matches!(&outcome, Err(crate::supervision::CallError::Failed { reason, .. }) if reason.contains("gave up")),
            "{damage}: {outcome:?}"
        );
        tree.supervisor.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_claims_more_than_lance_holds_is_rejected_and_rebuilt() {
    let dimension = 8;
    // A newer Lance version: the snapshot was written after a commit that
    // a power loss then tore away.
    let dir = tempfile::tempdir().unwrap();
    let tree = start_tree(dir.path(), definition("claim", dimension, params())).await;
    let kept = write_until_acked(&tree, "claim", 20, dimension).await;
    let ghost = axis(dimension, 3);
    let items = vec![item("ghost", ghost.clone(), json!({}))];
    tree.call("claim", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    tree.stop().await; // the snapshot covers "ghost"
    let newest = manifests(dir.path(), "claim")[0].clone();
    std::fs::write(&newest, b"").unwrap();

    let tree = start_tree(dir.path(), definition("claim", dimension, params())).await;
    assert_all_present(&tree, "claim", &kept, dimension).await;
    // The next write reuses the ghost's seq: a graph from the snapshot
    // would answer the ghost's vector with it.
    let items = vec![item("fresh", axis(dimension, 5), json!({}))];
    tree.call("claim", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    let info = tree
        .call("claim", |reply| IndexMessage::Info { reply })
        .await
        .unwrap();
    assert_eq!(
        info.graph_vectors, info.count as u64,
        "no vector Lance lacks"
    );
    let request = query(ghost, 1);
    let hits = tree
        .call("claim", |reply| IndexMessage::Search { request, reply })
        .await
        .unwrap()
        .unwrap();
    assert!(hits[0].distance > 1e-3, "the ghost is gone: {:?}", hits[0]);
    tree.stop().await;

    // A larger seq than Lance holds: rejected, rebuilt, and a snapshot
    // with the true figures replaces it.
    let dir = tempfile::tempdir().unwrap();
    let tree = start_tree(dir.path(), definition("seq", dimension, params())).await;
    let kept = write_until_acked(&tree, "seq", 20, dimension).await;
    tree.stop().await;
    let meta_path = dir.path().join("vectors/seq.faiss.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let true_seq = meta["max_seq"].as_u64().unwrap();
    meta["max_seq"] = json!(true_seq + 5);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let tree = start_tree(dir.path(), definition("seq", dimension, params())).await;
    assert_all_present(&tree, "seq", &kept, dimension).await;
    let covered = || -> Option<u64> {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).ok()?).ok()?;
        meta["max_seq"].as_u64()
    };
    wait_for("a snapshot with the true max_seq", || {
        covered() == Some(true_seq)
    })
    .await;
    tree.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_the_commit_task_fails_its_callers_and_the_index_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 8;
    let tree = Arc::new(start_tree(dir.path(), definition("cp", dimension, params())).await);
    let acked = write_until_acked(&tree, "cp", 20, dimension).await;

    tree.context
        .directory
        .inject(&actor_name("cp"), Fault::commit_panic(), true)
        .unwrap();
    // Concurrent writers: the first commit panics after its Lance append;
    // the queued ones die with the actor. Every caller gets an answer.
    let mut rng = Rng(77);
    let doomed: Vec<(String, Vec<f32>)> = (0..4)
        .map(|i| (format!("doomed-{i}"), rng.unit_vector(dimension)))
        .collect();
    let calls = doomed.iter().map(|(id, vector)| {
        let tree = tree.clone();
        let items = vec![item(id, vector.clone(), json!({}))];
        async move {
            tree.call("cp", |reply| IndexMessage::Upsert { items, reply })
                .await
        }
    });
    let outcomes = futures::future::join_all(calls).await;
    assert!(
        outcomes
            .iter()
            .all(|o| !matches!(o, Err(crate::supervision::CallError::Timeout { .. }))),
        "no caller hangs: {outcomes:?}"
    );
    let failed = outcomes.iter().filter(|o| !matches!(o, Ok(Ok(_)))).count();
    assert!(
        failed >= 1,
        "the callers of the panicked commit got errors: {outcomes:?}"
    );

    wait_for("the index restarted", || {
        tree.context.board.restarts(&actor_name("cp")) == Some(1)
    })
    .await;
    running(&tree, "cp").await;
    let reason = tree
        .context
        .board
        .last_failure(&actor_name("cp"))
        .unwrap()
        .reason;
    assert!(reason.contains("commit task"), "{reason}");

    // Later writes succeed; nothing acknowledged is lost.
    let mut more = Vec::new();
    for i in 0..10 {
        let id = format!("later-{i}");
        let items = vec![item(&id, rng.unit_vector(dimension), json!({}))];
        tree.call("cp", |reply| IndexMessage::Upsert { items, reply })
            .await
            .unwrap()
            .unwrap();
        more.push(id);
    }
    let acknowledged: Vec<String> = acked
        .iter()
        .chain(&more)
        .cloned()
        .chain(
            doomed
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Ok(Ok(_))))
                .map(|((id, _), _)| id.clone()),
        )
        .collect();
    for id in &acknowledged {
        tree.call("cp", |reply| IndexMessage::Get {
            id: id.clone(),
            reply,
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{id} lost: {e}"));
    }
    let count = tree
        .call("cp", |reply| IndexMessage::Info { reply })
        .await
        .unwrap()
        .count;
    // Rows of the panicked commit were durable though never acknowledged:
    // they may be there too, but nothing else is.
    assert!(
        (acknowledged.len()..=acknowledged.len() + doomed.len()).contains(&count),
        "{count} items for {} acknowledged",
        acknowledged.len()
    );
    Arc::try_unwrap(tree).ok().unwrap().stop().await;
}

#[test]
fn a_search_with_its_own_ef_search_runs_while_another_reader_holds_the_graph() {
    use super::core::{Core, Entry, Query};
    use super::hnsw::Hnsw;

    let dimension = 16;
    let definition = definition("ef", dimension, params());
    let hnsw = Hnsw::new(&definition).unwrap();
    let core = Core::new(definition, hnsw, 0, 0, Default::default());
    let mut rng = Rng(21);
    let vectors: Vec<Vec<f32>> = (0..300).map(|_| rng.unit_vector(dimension)).collect();
    let labels: Vec<u64> = (1..=300).collect();
    core.add_vectors(&vectors.concat(), &labels).unwrap();
    let rows = labels
        .iter()
        .map(|&seq| {
            (
                format!("v{seq}"),
                Entry {
                    seq,
                    metadata: Arc::from("{}"),
                },
            )
        })
        .collect();
    core.install(rows, Vec::new(), 300, 1);
    let query = |vector: &[f32], ef_search: Option<u32>| Query {
        ef_search,
        ..Query::nearest(vector.to_vec(), 5)
    };

    let holding = std::sync::Barrier::new(2);
    let (done, finished) = std::sync::mpsc::channel();
    let (core, holding_ref) = (&core, &holding);
    std::thread::scope(|scope| {
        // A reader holds the graph until the two searches report back; a
        // search that needed exclusive access would wait for it forever
        // (and this reader would give up and fail the test).
        scope.spawn(move || {
            core.with_graph(|_, _, _| {
                holding_ref.wait();
                finished
                    .recv_timeout(Duration::from_secs(60))
                    .expect("both searches ran while the graph was held");
            })
        });
        holding.wait();
        let custom = core.search(&query(&vectors[7], Some(400))).unwrap();
        let default = core.search(&query(&vectors[7], None)).unwrap();
        done.send(()).unwrap();
        assert_eq!(custom[0].id, "v8");
        assert_eq!(default[0].id, "v8");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_on_more_fields_than_the_cap_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 16;
    let actor = spawn_index_with(
        dir.path(),
        definition("fields", dimension, params()),
        &[("vectors.max_hot_fields", "2")],
    )
    .await;
    let mut rng = Rng(31);
    let mut vectors = Vec::new();
    let items: Vec<ItemInput> = (0..600)
        .map(|i| {
            let vector = rng.unit_vector(dimension);
            vectors.push(vector.clone());
            let metadata: serde_json::Map<String, serde_json::Value> = (0..6)
                .map(|f| (format!("f{f}"), json!((i + f) % 3)))
                .collect();
            item(
                &format!("i{i}"),
                vector,
                serde_json::Value::Object(metadata),
            )
        })
        .collect();
    upsert(&actor, items).await;
    // Six fields in turn, twice: lookups are evicted and rebuilt.
    for round in 0..12 {
        let field = round % 6;
        let q = rng.unit_vector(dimension);
        let mut request = query(q.clone(), 5);
        request.filter = Some(
            json!({ format!("f{field}"): 1 })
                .as_object()
                .unwrap()
                .clone(),
        );
        let hits = search(&actor, request).await;
        let mut expected: Vec<(f32, String)> = (0..600)
            .filter(|i| (i + field) % 3 == 1)
            .map(|i| {
                let d = 1.0 - vectors[i].iter().zip(&q).map(|(a, b)| a * b).sum::<f32>();
                (d, format!("i{i}"))
            })
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
        let expected: Vec<String> = expected.into_iter().take(5).map(|(_, id)| id).collect();
        assert_eq!(ids, expected, "round {round}, field f{field}");
    }
}

/// One item's metadata in the filter property test, and the conditions
/// the test checks independently of the filter code.
struct Facts {
    n: Option<i64>,
    s: &'static str,
    tags: Vec<&'static str>,
    day: u32,
    /// `(lat, lon)`: around Joliet, IL, or across the antimeridian.
    place: Option<(f64, f64)>,
}

/// The great-circle distance in km by the chord between the two points'
/// unit vectors (independent of the haversine the filter uses).
fn chord_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let unit = |(lat, lon): (f64, f64)| {
        let (lat, lon) = (lat.to_radians(), lon.to_radians());
        [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
    };
    let (u, v) = (unit(a), unit(b));
    let chord = ((u[0] - v[0]).powi(2) + (u[1] - v[1]).powi(2) + (u[2] - v[2]).powi(2)).sqrt();
    2.0 * crate::domain::geo::EARTH_RADIUS_KM * (chord / 2.0).asin()
}

/// A random place: near Joliet mostly, some near the antimeridian.
fn place(rng: &mut Rng) -> (f64, f64) {
    let jitter = |rng: &mut Rng| (rng.next() % 20_001) as f64 / 10_000.0 - 1.0;
    if rng.next() % 4 == 0 {
        (10.0 + jitter(rng), 179.5 + jitter(rng) * 0.9)
    } else {
        (41.5 + jitter(rng), -88.0 + jitter(rng))
    }
}

fn wrap(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else {
        lon
    }
}

impl Facts {
    fn metadata(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(n) = self.n {
            m.insert("n".into(), json!(n));
        }
        m.insert("s".into(), json!(self.s));
        m.insert("tags".into(), json!(self.tags));
        m.insert(
            "d".into(),
            json!(format!("2026-12-{:02}T08:00:00Z", self.day)),
        );
        if let Some((lat, lon)) = self.place {
            m.insert("location".into(), json!({"lat": lat, "lon": wrap(lon)}));
        }
        serde_json::Value::Object(m)
    }
}

type Check = Box<dyn Fn(&Facts) -> bool>;

/// A random leaf condition of `operator`: its JSON and what it means.
fn leaf(rng: &mut Rng, operator: &str) -> (serde_json::Value, Check) {
    const STRINGS: [&str; 3] = ["a", "b", "c"];
    const TAGS: [&str; 4] = ["x", "y", "z", "w"];
    let n = (rng.next() % 10) as i64;
    let m = (rng.next() % 10) as i64;
    let s = STRINGS[(rng.next() % 3) as usize];
    let t = TAGS[(rng.next() % 4) as usize];
    let u = TAGS[(rng.next() % 4) as usize];
    let day = 1 + (rng.next() % 9) as u32;
    let date = format!("2026-12-{day:02}T08:00:00Z");
    match operator {
        "eq" => (json!({"n": n}), Box::new(move |f: &Facts| f.n == Some(n))),
        "eq_string" => (json!({"s": {"eq": s}}), Box::new(move |f: &Facts| f.s == s)),
        "ne" => (
            json!({"n": {"ne": n}}),
            Box::new(move |f: &Facts| f.n != Some(n)),
        ),
        "in" => (
            json!({"n": {"in": [n, m]}}),
            Box::new(move |f: &Facts| f.n == Some(n) || f.n == Some(m)),
        ),
        "nin" => (
            json!({"s": {"nin": [s]}}),
            Box::new(move |f: &Facts| f.s != s),
        ),
        "gt" => (
            json!({"n": {"gt": n}}),
            Box::new(move |f: &Facts| f.n.is_some_and(|x| x > n)),
        ),
        "gte" => (
            json!({"n": {"gte": n}}),
            Box::new(move |f: &Facts| f.n.is_some_and(|x| x >= n)),
        ),
        "lt" => (
            json!({"d": {"lt": date}}),
            Box::new(move |f: &Facts| f.day < day),
        ),
        "lte" => (
            json!({"d": {"lte": date}}),
            Box::new(move |f: &Facts| f.day <= day),
        ),
        "contains" => (
            json!({"tags": {"contains": t}}),
            Box::new(move |f: &Facts| f.tags.contains(&t)),
        ),
        "contains_any" => (
            json!({"tags": {"contains_any": [t, u]}}),
            Box::new(move |f: &Facts| f.tags.contains(&t) || f.tags.contains(&u)),
        ),
        "contains_all" => (
            json!({"tags": {"contains_all": [t, u]}}),
            Box::new(move |f: &Facts| f.tags.contains(&t) && f.tags.contains(&u)),
        ),
        "exists" => {
            let want = rng.next() % 2 == 0;
            (
                json!({"n": {"exists": want}}),
                Box::new(move |f: &Facts| f.n.is_some() == want),
            )
        }
        "geo_radius" => {
            let center = place(rng);
            let miles = 5.0 + (rng.next() % 60) as f64;
            let km = miles * crate::domain::geo::KM_PER_MILE;
            let (lat, lon) = (center.0, wrap(center.1));
            (
                json!({"location": {"geo_radius": {"lat": lat, "lon": lon, "miles": miles}}}),
                Box::new(move |f: &Facts| {
                    f.place
                        .is_some_and(|p| chord_km((p.0, wrap(p.1)), (lat, lon)) <= km)
                }),
            )
        }
        "geo_bbox" => {
            let (lat, lon) = place(rng);
            let (north, south) = (lat + 0.5, lat - 0.5);
            // Unwrapped edges: a box near 179.5 may cross the antimeridian.
            let (west, east) = (lon - 0.6, lon + 0.6);
            (
                json!({"location": {"geo_bbox": {
                    "top_left": {"lat": north, "lon": wrap(west)},
                    "bottom_right": {"lat": south, "lon": wrap(east)},
                }}}),
                Box::new(move |f: &Facts| {
                    f.place.is_some_and(|(plat, plon)| {
                        // The item's unwrapped lon, or the same place a turn round.
                        let inside = |x: f64| (west..=east).contains(&x);
                        (south..=north).contains(&plat)
                            && (inside(plon) || inside(plon - 360.0) || inside(plon + 360.0))
                    })
                }),
            )
        }
        other => panic!("no generator for {other}"),
    }
}

#[tokio::test]
async fn filtered_search_equals_brute_force_for_every_operator() {
    const OPERATORS: [&str; 15] = [
        "eq",
        "eq_string",
        "ne",
        "in",
        "nin",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "contains_any",
        "contains_all",
        "exists",
        "geo_radius",
        "geo_bbox",
    ];
    let dir = tempfile::tempdir().unwrap();
    let dimension = 16;
    let actor = spawn_index(dir.path(), definition("filters", dimension, params())).await;
    let mut rng = Rng(20261201);
    let mut vectors = Vec::new();
    let mut facts = Vec::new();
    let mut items = Vec::new();
    for i in 0..500 {
        let vector = rng.unit_vector(dimension);
        let tags: Vec<&'static str> = ["x", "y", "z", "w"]
            .into_iter()
            .filter(|_| rng.next() % 2 == 0)
            .collect();
        let fact = Facts {
            n: (rng.next() % 5 != 0).then(|| (rng.next() % 10) as i64),
            s: ["a", "b", "c"][(rng.next() % 3) as usize],
            tags,
            day: 1 + (rng.next() % 9) as u32,
            place: (rng.next() % 6 != 0).then(|| place(&mut rng)),
        };
        items.push(item(&format!("i{i}"), vector.clone(), fact.metadata()));
        vectors.push(vector);
        facts.push(fact);
    }
    upsert(&actor, items).await;

    let mut checked = 0;
    for round in 0..6 {
        for (o, operator) in OPERATORS.iter().enumerate() {
            // The leaf alone, then combined with another: and, or, not.
            let (a, check_a) = leaf(&mut rng, operator);
            let (b, check_b) = leaf(&mut rng, OPERATORS[(o + round + 1) % OPERATORS.len()]);
            let cases: Vec<(serde_json::Value, Check)> = match round % 4 {
                0 => vec![(a, check_a)],
                1 => vec![(
                    json!({"and": [a, b]}),
                    Box::new(move |f: &Facts| check_a(f) && check_b(f)),
                )],
                2 => vec![(
                    json!({"or": [a, b]}),
                    Box::new(move |f: &Facts| check_a(f) || check_b(f)),
                )],
                _ => vec![(json!({"not": a}), Box::new(move |f: &Facts| !check_a(f)))],
            };
            for (filter, check) in cases {
                let q = rng.unit_vector(dimension);
                let mut request = query(q.clone(), 10);
                request.filter = Some(filter.as_object().unwrap().clone());
                let hits = search(&actor, request).await;
                let mut expected: Vec<(f32, String)> = facts
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| check(f))
                    .map(|(i, _)| {
                        let d = 1.0 - vectors[i].iter().zip(&q).map(|(a, b)| a * b).sum::<f32>();
                        (d, format!("i{i}"))
                    })
                    .collect();
                expected.sort_by(|a, b| a.0.total_cmp(&b.0));
                let expected: Vec<String> =
                    expected.into_iter().take(10).map(|(_, id)| id).collect();
                let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
                assert_eq!(ids, expected, "{filter}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 * OPERATORS.len());
}

#[tokio::test]
async fn a_bad_filter_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("badfilter", 4, params())).await;
    let mut request = query(vec![1.0, 0.0, 0.0, 0.0], 3);
    request.filter = Some(
        json!({"and": [{"n": {"between": [1, 2]}}]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let err = actor
        .call(
            |reply| IndexMessage::Search { request, reply },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("filter.and[0].n.between") && text.contains("unknown operator"),
        "{text}"
    );
}

/// A keyword search for `text` in `index` of a running tree: the ids found.
async fn keyword_ids(tree: &Tree, index: &str, text: &str) -> BTreeSet<String> {
    let request = SearchRequest {
        mode: Some(crate::domain::keyword::SearchMode::Keyword),
        ..SearchRequest::for_text(text.to_string(), 50)
    };
    tree.call(index, |reply| IndexMessage::Search { request, reply })
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn with_text(id: &str, vector: Vec<f32>, text: &str) -> ItemInput {
    ItemInput {
        text: Some(text.to_string()),
        ..item(id, vector, json!({}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyword_index_follows_writes_and_survives_a_panic_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 8;
    let tree = start_tree(dir.path(), definition("kw", dimension, params())).await;
    running(&tree, "kw").await;
    let mut rng = Rng(11);
    let items: Vec<ItemInput> = (0..40)
        .map(|i| {
            let text = if i % 10 == 3 {
                format!("Electrician w{i} with OSHA 30 and a journeyman license")
            } else {
                format!("Forklift operator w{i} with OSHA 10")
            };
            with_text(&format!("w{i}"), rng.unit_vector(dimension), &text)
        })
        .collect();
    tree.call("kw", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    // w13 loses its certification, w23 is deleted, w5 gains it: the index
    // follows updates and deletes.
    let items = vec![
        with_text(
            "w13",
            rng.unit_vector(dimension),
            "Electrician with OSHA 10",
        ),
        with_text("w5", rng.unit_vector(dimension), "Welder, OSHA 30 card"),
    ];
    tree.call("kw", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    tree.call("kw", |reply| IndexMessage::Delete {
        id: "w23".into(),
        reply,
    })
    .await
    .unwrap()
    .unwrap();
    let holders: BTreeSet<String> = ["w3", "w33", "w5"].iter().map(|s| s.to_string()).collect();
    let journeymen: BTreeSet<String> = ["w3", "w33"].iter().map(|s| s.to_string()).collect();
    assert_eq!(keyword_ids(&tree, "kw", "30").await, holders);
    assert_eq!(keyword_ids(&tree, "kw", "journeyman").await, journeymen);

    // A panic: the next incarnation rebuilds the keyword index from Lance.
    tree.index("kw")
        .unwrap()
        .send_message(IndexMessage::Fault(Fault::panic()))
        .unwrap();
    wait_for("kw restarted", || {
        tree.context.board.restarts(&actor_name("kw")).unwrap_or(0) >= 1
    })
    .await;
    running(&tree, "kw").await;
    assert_eq!(keyword_ids(&tree, "kw", "30").await, holders);

    // A whole restart on the same data dir.
    tree.stop().await;
    let tree = start_tree(dir.path(), definition("kw", dimension, params())).await;
    running(&tree, "kw").await;
    assert_eq!(keyword_ids(&tree, "kw", "30").await, holders);
    assert_eq!(keyword_ids(&tree, "kw", "journeyman").await, journeymen);
    let info = tree
        .call("kw", |reply| IndexMessage::Info { reply })
        .await
        .unwrap();
    assert_eq!((info.count, info.keyword_documents), (39, 39));
    tree.stop().await;
}

fn keyword_loads(tree: &Tree, index: &str, source: &str) -> u64 {
    tree.context
        .metrics
        .keyword_index_loads
        .with_label_values(&[index, source])
        .get()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_the_stored_keyword_index_and_reconciles_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let dimension = 8;
    let tree = start_tree(dir.path(), definition("kws", dimension, params())).await;
    running(&tree, "kws").await;
    let mut rng = Rng(17);
    let items: Vec<ItemInput> = (0..30)
        .map(|i| {
            let text = if i % 10 == 3 {
                format!("Electrician w{i}, journeyman license")
            } else {
                format!("Forklift operator w{i}")
            };
            with_text(&format!("w{i}"), rng.unit_vector(dimension), &text)
        })
        .collect();
    tree.call("kws", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        keyword_loads(&tree, "kws", "texts"),
        0,
        "an empty index analyses nothing"
    );
    tree.stop().await; // a graceful stop writes the snapshots
    let stored = dir.path().join("vectors/kws.keywords");
    assert!(
        stored.exists(),
        "the keyword index is stored with the graph"
    );

    let tree = start_tree(dir.path(), definition("kws", dimension, params())).await;
    running(&tree, "kws").await;
    assert_eq!(
        (
            keyword_loads(&tree, "kws", "snapshot"),
            keyword_loads(&tree, "kws", "texts")
        ),
        (1, 0)
    );
    assert_eq!(
        keyword_ids(&tree, "kws", "electricians").await,
        ids(&["w3", "w13", "w23"])
    );

    // Writes the stored index does not cover: a text changed, an item
    // deleted, one added. A panic: the next incarnation reads a stored
    // index (this one, or one upkeep wrote since) and reconciles it.
    let items = vec![
        with_text("w13", rng.unit_vector(dimension), "Welder w13"),
        with_text("w31", rng.unit_vector(dimension), "Electrician w31"),
    ];
    tree.call("kws", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    tree.call("kws", |reply| IndexMessage::Delete {
        id: "w23".into(),
        reply,
    })
    .await
    .unwrap()
    .unwrap();
    tree.index("kws")
        .unwrap()
        .send_message(IndexMessage::Fault(Fault::panic()))
        .unwrap();
    wait_for("kws restarted", || {
        tree.context.board.restarts(&actor_name("kws")).unwrap_or(0) >= 1
    })
    .await;
    running(&tree, "kws").await;
    assert_eq!(keyword_loads(&tree, "kws", "snapshot"), 2);
    assert_eq!(keyword_loads(&tree, "kws", "texts"), 0);
    assert_eq!(
        keyword_ids(&tree, "kws", "electrician").await,
        ids(&["w3", "w31"])
    );
    assert_eq!(keyword_ids(&tree, "kws", "welder").await, ids(&["w13"]));
    assert_eq!(keyword_ids(&tree, "kws", "journeyman").await, ids(&["w3"]));
    tree.stop().await;

    // A damaged file is refused and removed; the texts answer the same.
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&stored, bytes).unwrap();
    let tree = start_tree(dir.path(), definition("kws", dimension, params())).await;
    running(&tree, "kws").await;
    assert_eq!(
        (
            keyword_loads(&tree, "kws", "snapshot"),
            keyword_loads(&tree, "kws", "texts")
        ),
        (0, 1)
    );
    assert_eq!(
        keyword_ids(&tree, "kws", "electrician").await,
        ids(&["w3", "w31"])
    );
    assert_eq!(keyword_ids(&tree, "kws", "welder").await, ids(&["w13"]));
    tree.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_written_before_texts_were_stored_gains_the_column_and_keeps_its_items() {
    use lance::deps::arrow_array::{
        ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchIterator,
        StringArray, UInt64Array,
    };
    use lance::deps::arrow_schema::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let dimension = 4;
    // The dataset as the previous release wrote it: no `text` column.
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(item.clone(), dimension as i32),
            true,
        ),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("deleted", DataType::Boolean, false),
    ]));
    let vectors: Vec<f32> = (0..3).flat_map(|i| axis(dimension, i)).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b", "c"])),
        Arc::new(UInt64Array::from(vec![1, 2, 3])),
        Arc::new(
            FixedSizeListArray::try_new(
                item,
                dimension as i32,
                Arc::new(Float32Array::from(vectors)),
                None,
            )
            .unwrap(),
        ),
        Arc::new(StringArray::from(vec![
            "{\"n\":1}",
            "{\"n\":2}",
            "{\"n\":3}",
        ])),
        Arc::new(BooleanArray::from(vec![false, false, false])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let path = dir.path().join("vectors/old.lance");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    lance::Dataset::write(
        RecordBatchIterator::new(vec![Ok(batch)], schema),
        path.to_str().unwrap(),
        None,
    )
    .await
    .unwrap();

    let tree = start_tree(dir.path(), definition("old", dimension, params())).await;
    running(&tree, "old").await;
    let hits = search_tree(&tree, "old", axis(dimension, 1), 3).await;
    assert_eq!(hits[0].id, "b", "the old items are all there");
    assert_eq!(hits.len(), 3);
    // New writes store their texts.
    let items = vec![with_text("d", axis(dimension, 3), "HazMat endorsement")];
    tree.call("old", |reply| IndexMessage::Upsert { items, reply })
        .await
        .unwrap()
        .unwrap();
    tree.stop().await;
    let tree = start_tree(dir.path(), definition("old", dimension, params())).await;
    running(&tree, "old").await;
    assert_eq!(
        keyword_ids(&tree, "old", "hazmat").await,
        BTreeSet::from(["d".to_string()])
    );
    assert_eq!(
        search_tree(&tree, "old", axis(dimension, 2), 4).await[0].id,
        "c"
    );
    tree.stop().await;
}

async fn search_tree(tree: &Tree, index: &str, vector: Vec<f32>, k: usize) -> Vec<Hit> {
    let request = query(vector, k);
    tree.call(index, |reply| IndexMessage::Search { request, reply })
        .await
        .unwrap()
        .unwrap()
}

#[test]
fn the_exact_search_of_the_live_items_equals_brute_force_for_every_metric() {
    use super::core::{Core, Entry, Query};
    use super::hnsw::Hnsw;
    use crate::domain::vectors::filter_key;

    let dimension = 48;
    for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
        let definition = IndexDefinition {
            metric,
            ..definition("exact", dimension, params())
        };
        let hnsw = Hnsw::new(&definition).unwrap();
        let core = Core::new(definition, hnsw, 0, 0, Default::default());
        let mut rng = Rng(7);
        let mut vectors: Vec<Vec<f32>> = (0..3000)
            .map(|_| {
                let v = rng.unit_vector(dimension);
                // Not unit for the other metrics: lengths matter there.
                let scale = if metric == Metric::Cosine {
                    1.0
                } else {
                    0.5 + rng.float().abs()
                };
                v.into_iter().map(|x| x * scale).collect()
            })
            .collect();
        // Exact duplicates: ties broken by id, as a scan of Lance does.
        for i in 0..50 {
            vectors[2000 + i] = vectors[i].clone();
        }
        let labels: Vec<u64> = (1..=3000).collect();
        core.add_vectors(&vectors.concat(), &labels).unwrap();
        let rows = labels
            .iter()
            .map(|&seq| {
                let role = if seq % 3 == 0 { "a" } else { "b" };
                let entry = Entry {
                    seq,
                    metadata: Arc::from(format!("{{\"role\":\"{role}\"}}")),
                };
                (format!("v{seq:05}"), entry)
            })
            .collect();
        core.install(rows, Vec::new(), 3000, 9);
        let brute = |query: &[f32], k: usize, role: Option<&str>| {
            let mut all: Vec<(f32, String)> = labels
                .iter()
                .filter(|&&seq| role.is_none_or(|r| (if seq % 3 == 0 { "a" } else { "b" }) == r))
                .map(|&seq| {
                    let v = &vectors[seq as usize - 1];
                    (metric.exact(query, v), format!("v{seq:05}"))
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
            all
        };
        for q in 0..20 {
            let query_vector = if q < 5 {
                vectors[q].clone()
            } else {
                rng.unit_vector(dimension)
            };
            for role in [None, Some("a")] {
                let query = Query {
                    filter: role
                        .map(|r| {
                            vec![(
                                "role".to_string(),
                                filter_key(&serde_json::json!(r)).unwrap(),
                            )]
                        })
                        .unwrap_or_default(),
                    ..Query::nearest(query_vector.clone(), 10)
                };
                let (version, hits) = core.exact(&query, None).unwrap();
                assert_eq!(version, 9);
                let got: Vec<(f32, String)> =
                    hits.into_iter().map(|h| (h.distance, h.id)).collect();
                assert_eq!(
                    got,
                    brute(&query_vector, 10, role),
                    "{metric:?} query {q} {role:?}"
                );
            }
        }
    }
}

/// Keyword and hybrid searches (explained, with included ids) come from the
/// result cache once asked, equal to what an index without a cache answers,
/// and a write to the index invalidates them.
/// Searches that arrive together on a fresh index, each naming a field no
/// item holds (the status every matrix search excludes by), wait for one
/// build: the metadata is parsed once, not once per search (50 clients
/// on 100k workers stalled ~5 s when each parsed it again).
#[test]
fn concurrent_first_searches_on_a_rare_field_parse_the_metadata_once() {
    use super::core::{Core, Entry};
    use super::hnsw::Hnsw;

    let dimension = 4;
    let definition = definition("cold", dimension, params());
    let core = Arc::new(Core::new(
        definition.clone(),
        Hnsw::new(&definition).unwrap(),
        0,
        0,
        Default::default(),
    ));
    let n = 20_000u64;
    let labels: Vec<u64> = (1..=n).collect();
    let vectors: Vec<f32> = labels
        .iter()
        .flat_map(|&l| axis(dimension, l as usize % dimension))
        .collect();
    core.add_vectors(&vectors, &labels).unwrap();
    let rows = labels
        .iter()
        .map(|&seq| {
            let metadata = format!(r#"{{"role":"r{}","city":"c{}"}}"#, seq % 5, seq % 17);
            (
                format!("w{seq}"),
                Entry {
                    seq,
                    metadata: Arc::from(metadata.as_str()),
                },
            )
        })
        .collect();
    core.install(rows, Vec::new(), n, 1);

    let clients = 8;
    let start = Arc::new(std::sync::Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (core, start) = (core.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                core.ids_with("status", &["on_assignment", "do_not_use"])
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap(), Vec::<String>::new());
    }
    assert_eq!(
        core.parsed_rows(),
        n,
        "one parse of every item, whoever waited"
    );
    // A later search on it parses nothing.
    core.ids_with("status", &["placed"]).unwrap();
    assert_eq!(core.parsed_rows(), n);
}

#[test]
fn cached_hybrid_results_equal_uncached_ones_until_a_write() {
    use super::core::{Applied, Core, Entry, Query};
    use super::hnsw::Hnsw;
    use crate::domain::keyword::SearchMode;

    let dimension = 16;
    let definition = definition("hybrid-cache", dimension, params());
    let build = |cache_entries: usize| {
        let hnsw = Hnsw::new(&definition).unwrap();
        Core::new(
            definition.clone(),
            hnsw,
            cache_entries,
            1 << 20,
            Default::default(),
        )
    };
    let (cached, uncached) = (build(64), build(0));
    let words = [
        "welder", "forklift", "driver", "nurse", "picker", "night", "day", "hazmat",
    ];
    let mut rng = Rng(7);
    let n = 400u64;
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| rng.unit_vector(dimension)).collect();
    let texts: Vec<(u64, Arc<str>)> = (1..=n)
        .map(|seq| {
            let text = format!(
                "{} {} {}",
                words[(seq % 8) as usize],
                words[((seq / 8) % 8) as usize],
                words[((seq * 7) % 8) as usize]
            );
            (seq, Arc::from(text.as_str()))
        })
        .collect();
    let labels: Vec<u64> = (1..=n).collect();
    for core in [&cached, &uncached] {
        core.add_vectors(&vectors.concat(), &labels).unwrap();
        let rows = labels
            .iter()
            .map(|&seq| {
                let metadata = format!(r#"{{"group":"g{}"}}"#, seq % 3);
                (
                    format!("v{seq}"),
                    Entry {
                        seq,
                        metadata: Arc::from(metadata.as_str()),
                    },
                )
            })
            .collect();
        core.install(rows, texts.clone(), n, 1);
    }
    let queries: Vec<Query> = [SearchMode::Keyword, SearchMode::Hybrid]
        .into_iter()
        .flat_map(|mode| {
            let vectors = &vectors;
            [false, true].into_iter().map(move |explain| Query {
                mode,
                keywords: crate::domain::keyword::KeywordQuery::parse(
                    "hazmat night welder",
                    crate::domain::analysis::Analysis::CURRENT,
                    &Default::default(),
                ),
                keyword_weight: 0.6,
                explain,
                include_ids: vec!["v5".into(), "v399".into()],
                ..Query::nearest(vectors[3].clone(), 10)
            })
        })
        .collect();
    let ids = |hits: &[crate::domain::vectors::Hit]| -> Vec<(String, u32, bool)> {
        hits.iter()
            .map(|h| (h.id.clone(), h.distance.to_bits(), h.explain.is_some()))
            .collect()
    };
    for query in &queries {
        let first = cached.search(query).unwrap();
        let again = cached.search(query).unwrap();
        let reference = uncached.search(query).unwrap();
        assert_eq!(ids(&first), ids(&reference), "{:?}", query.mode);
        assert_eq!(
            ids(&again),
            ids(&reference),
            "from the cache: {:?}",
            query.mode
        );
        assert!(first.iter().any(|h| h.explain.is_some()) == query.explain);
    }
    assert_eq!(
        cached.cached_results(),
        queries.len(),
        "each kind of search is cached"
    );
    assert_eq!(uncached.cached_results(), 0);
    // A write that the queries match best, on both sides (the query's own
    // vector and its terms): every cached answer goes.
    let vector = vectors[3].clone();
    for core in [&cached, &uncached] {
        core.add_vectors(&vector, &[n + 1]).unwrap();
        core.publish(
            &[Applied::Upsert {
                id: "fresh",
                seq: n + 1,
                metadata: Arc::from(r#"{"group":"g0"}"#),
                text: Some(Arc::from("hazmat night welder hazmat night welder")),
            }],
            n + 1,
            2,
        );
    }
    for query in &queries {
        let after = cached.search(query).unwrap();
        assert_eq!(
            ids(&after),
            ids(&uncached.search(query).unwrap()),
            "{:?}",
            query.mode
        );
        assert!(
            after.iter().any(|h| h.id == "fresh"),
            "{:?}: the write shows in the next answer",
            query.mode
        );
    }
}

/// A reindex's write back applies only to an item nobody wrote since the
/// pass read it: a client's later write wins, and is never overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reindex_write_back_loses_to_a_client_write_since_it_read() {
    use super::index::{Batch, Reembedded};
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("cas", 4, params())).await;
    // Seqs start at 1, one per row: a is 1, b is 2, then a again is 3.
    upsert(
        &actor,
        vec![
            item("a", axis(4, 0), json!({"v": 1})),
            item("b", axis(4, 1), json!({"v": 1})),
        ],
    )
    .await;
    upsert(&actor, vec![item("a", axis(4, 2), json!({"v": 2}))]).await;
    let back = |id: &str, seq| Reembedded {
        id: id.to_string(),
        expected_seq: seq,
        vector: axis(4, 3),
        metadata: Arc::from(r#"{"v":9}"#),
        text: Some(Arc::from("re-embedded")),
    };
    let (port, written) = ractor::concurrency::oneshot();
    actor
        .send_message(IndexMessage::Enqueue(Batch::reembed(
            vec![back("a", 1), back("b", 2)],
            port.into(),
        )))
        .unwrap();
    let outcome = written.await.unwrap().unwrap();
    assert_eq!(
        (outcome.updated, outcome.inserted),
        (1, 0),
        "only b was unchanged"
    );
    let get = |id: &'static str| {
        let actor = actor.clone();
        async move {
            actor
                .call(
                    |reply| IndexMessage::Get {
                        id: id.into(),
                        reply,
                    },
                    Some(TIMEOUT),
                )
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        }
    };
    let a = get("a").await;
    assert_eq!((a.vector, a.metadata), (axis(4, 2), json!({"v": 2})));
    let b = get("b").await;
    assert_eq!((b.vector, b.metadata), (axis(4, 3), json!({"v": 9})));
    assert_eq!(count(&actor).await, 2);
}

/// Conditional changes apply only to items still as they were read: a
/// stale delete or write back is skipped and named, the others written;
/// the outcome cites the version that holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_changes_skip_what_changed_since_it_was_read() {
    use super::index::{Batch, Change, Reembedded};
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("cond", 4, params())).await;
    // Seqs start at 1: a 1, b 2, c 3; then a again is 4.
    upsert(
        &actor,
        vec![
            item("a", axis(4, 0), json!({"v": 1})),
            item("b", axis(4, 1), json!({"v": 1})),
            item("c", axis(4, 2), json!({"v": 1})),
        ],
    )
    .await;
    upsert(&actor, vec![item("a", axis(4, 3), json!({"v": 2}))]).await;
    let (port, written) = ractor::concurrency::oneshot();
    let changes = vec![
        Change::Delete {
            id: "a".into(),
            expected_seq: 1,
        },
        Change::Delete {
            id: "b".into(),
            expected_seq: 2,
        },
        Change::Upsert(Reembedded {
            id: "c".into(),
            expected_seq: 3,
            vector: axis(4, 2),
            metadata: Arc::from(r#"{"v":3}"#),
            text: None,
        }),
    ];
    actor
        .send_message(IndexMessage::Enqueue(Batch::conditional(
            changes,
            port.into(),
        )))
        .unwrap();
    let outcome = written.await.unwrap().unwrap();
    assert_eq!(outcome.written, 2);
    assert_eq!(outcome.skipped, ["a"], "a was written again since");
    let info = actor
        .call(|reply| IndexMessage::Info { reply }, Some(TIMEOUT))
        .await
        .unwrap()
        .unwrap();
    // The version that holds the rows; upkeep (the removal of superseded
    // rows) may commit after it.
    assert!(outcome.version >= 1 && outcome.version <= info.lance_version);
    assert_eq!(count(&actor).await, 2, "a stays, b is gone, c is kept");
}

/// A change through the mailbox: an update by filter merges into each
/// item and keeps its vector; a delete by ids counts only those that
/// exist; a tally counts and facets what a filter selects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_filter_merges_keeps_vectors_and_a_tally_agrees() {
    use super::index::{ChangeKind, ChangeRequest, Target};
    use crate::domain::filter::{prepare, PreparedFilter};
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("bulk", 4, params())).await;
    let items: Vec<ItemInput> = (0..9)
        .map(|i| {
            item(
                &format!("i{i}"),
                axis(4, i % 4),
                json!({"g": i % 3, "keep": i}),
            )
        })
        .collect();
    upsert(&actor, items).await;
    let filter = |value: serde_json::Value| -> PreparedFilter {
        prepare(value.as_object().cloned()).unwrap()
    };
    let change = |request: ChangeRequest| {
        let actor = actor.clone();
        async move {
            actor
                .call(
                    |reply| IndexMessage::Change { request, reply },
                    Some(TIMEOUT),
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    let updated = change(ChangeRequest {
        target: Target::Filter(filter(json!({"g": 1}))),
        change: ChangeKind::Patch {
            metadata: json!({"g": null, "moved": true})
                .as_object()
                .cloned()
                .unwrap(),
            text: None,
            vector: None,
        },
        allow_large: false,
        max_items: 100,
    })
    .await
    .unwrap();
    assert_eq!((updated.matched, updated.changed), (3, 3));
    let got = actor
        .call(
            |reply| IndexMessage::Get {
                id: "i4".into(),
                reply,
            },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.metadata, json!({"keep": 4, "moved": true}));
    assert_eq!(got.vector, axis(4, 0), "the stored vector, bit for bit");

    let too_many = change(ChangeRequest {
        target: Target::Filter(filter(json!({"keep": {"gte": 0}}))),
        change: ChangeKind::Delete,
        allow_large: false,
        max_items: 5,
    })
    .await;
    assert!(
        matches!(
            too_many,
            Err(IndexError::Change(
                crate::domain::items::ChangeError::TooLarge { max: 5, got: 9 }
            ))
        ),
        "{too_many:?}"
    );
    let deleted = change(ChangeRequest {
        target: Target::Ids(vec!["i0".into(), "nobody".into()]),
        change: ChangeKind::Delete,
        allow_large: false,
        max_items: 5,
    })
    .await
    .unwrap();
    assert_eq!((deleted.matched, deleted.changed), (1, 1));

    let tally = actor
        .call(
            |reply| IndexMessage::Tally {
                filter: Some(filter(json!({"keep": {"gte": 1}}))),
                facets: vec!["g".into(), "moved".into()],
                exclude_ids: Vec::new(),
                reply,
            },
            Some(TIMEOUT),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(tally.count, 8);
    let shown = |field: &str| -> Vec<(String, usize)> {
        tally.facets[field]
            .iter()
            .map(|f| (f.value.clone(), f.count))
            .collect()
    };
    assert_eq!(shown("g"), [("2".to_string(), 3), ("0".to_string(), 2)]);
    assert_eq!(shown("moved"), [("true".to_string(), 3)]);
}

/// Facets of fields many items hold are counted from their lookups, the
/// rest (lists, items without the field) parsed: the same counts as a
/// brute-force count, with and without a filter and an exclusion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_from_lookups_equal_a_brute_force_count() {
    use crate::domain::filter::prepare;
    let dir = tempfile::tempdir().unwrap();
    let actor = spawn_index(dir.path(), definition("many", 4, params())).await;
    let metadata = |i: usize| {
        let mut m =
            json!({"g": format!("g{}", i % 7), "n": i % 3, "tags": [format!("t{}", i % 2), "x"]});
        if i % 11 == 0 {
            m.as_object_mut().unwrap().remove("g");
        }
        if i % 13 == 0 {
            m["g"] = json!(["odd", "one"]);
        }
        m
    };
    let all: Vec<usize> = (0..1500).collect();
    for chunk in all.chunks(500) {
        let items = chunk
            .iter()
            .map(|&i| item(&format!("i{i}"), axis(4, i % 4), metadata(i)))
            .collect();
        upsert(&actor, items).await;
    }
    let brute = |keep: &dyn Fn(usize) -> bool, field: &str| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for i in all.iter().copied().filter(|i| keep(*i)) {
            let value = metadata(i)[field].clone();
            let mut seen = BTreeSet::new();
            let shown: Vec<String> = match value {
                serde_json::Value::Array(list) => list
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                serde_json::Value::String(s) => vec![s],
                serde_json::Value::Number(n) => vec![n.to_string()],
                _ => vec![],
            };
            for s in shown {
                if seen.insert(s.clone()) {
                    *counts.entry(s).or_default() += 1;
                }
            }
        }
        counts
    };
    let tally = |filter: Option<serde_json::Value>, exclude: Vec<String>| {
        let actor = actor.clone();
        async move {
            actor
                .call(
                    |reply| IndexMessage::Tally {
                        filter: filter.map(|f| prepare(f.as_object().cloned()).unwrap()),
                        facets: vec!["g".into(), "n".into(), "tags".into()],
                        exclude_ids: exclude,
                        reply,
                    },
                    Some(TIMEOUT),
                )
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        }
    };
    let cases: Vec<(
        Option<serde_json::Value>,
        Vec<String>,
        Box<dyn Fn(usize) -> bool>,
    )> = vec![
        (None, vec![], Box::new(|_| true)),
        (Some(json!({"n": 1})), vec![], Box::new(|i| i % 3 == 1)),
        (
            None,
            vec!["i0".into(), "i7".into()],
            Box::new(|i| i != 0 && i != 7),
        ),
    ];
    for (filter, exclude, keep) in cases {
        let got = tally(filter.clone(), exclude).await;
        for field in ["g", "n", "tags"] {
            let counted: BTreeMap<String, usize> = got.facets[field]
                .iter()
                .map(|f| (f.value.clone(), f.count))
                .collect();
            assert_eq!(counted, brute(&*keep, field), "{field} with {filter:?}");
        }
    }
}
