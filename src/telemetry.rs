//! Logs and metrics.
//!
//! Every application owns its own Prometheus [`Registry`] (not the global
//! default one) so that several applications in one process — the
//! integration tests run many — never mix their counters.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber. `level` is the default filter
/// (overridden by `RUST_LOG`); `sink` is where lines go (stdout in `main`,
/// a sink in tests).
pub fn init_tracing<W>(level: &str, format: LogFormat, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Every event one line, with no host path in it.
    let sink = crate::redact::Redacting(sink);
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` so a second application in the same process is harmless.
    let _ = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(sink)
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(sink),
            )
            .try_init(),
    };
}

/// The application's metrics (names as in DESIGN.md).
pub struct Metrics {
    pub registry: Registry,
    /// Bytes the vector indexes' Lance caches hold, set at each scrape.
    pub lance_cache_bytes: IntGauge,
    /// Their bounds, by `cache` (`metadata`, `index`).
    pub lance_cache_limit_bytes: IntGaugeVec,
    /// The Lance sessions measured at each scrape.
    lance_sessions: parking_lot::Mutex<Vec<std::sync::Weak<lance::session::Session>>>,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub actor_restarts: IntCounterVec,
    pub actor_up: IntGaugeVec,
    /// `lakehouse_alarm_active{alarm}`: 1 while the alarm is set.
    pub alarm_active: IntGaugeVec,
    pub actor_mailbox_depth: IntGaugeVec,
    pub supervision_events: IntCounterVec,
    pub embed_cache_hits: IntCounter,
    /// `lakehouse_snapshot_last_success_timestamp_seconds`: when the newest
    /// snapshot this process took was taken (0: none yet).
    pub snapshot_last_success: IntGauge,
    pub embed_cache_misses: IntCounter,
    pub vector_index_items: IntGaugeVec,
    pub vector_search_duration: HistogramVec,
    pub vector_maintenance_duration: HistogramVec,
    pub vector_commit_duration: HistogramVec,
    pub vector_manifest_recoveries: IntCounterVec,
    /// Keyword indexes loaded, by where from: `snapshot` (the stored one,
    /// reconciled) or `texts` (every text analysed; a load with no texts
    /// counts neither).
    pub keyword_index_loads: IntCounterVec,
    pub lance_commits: IntCounterVec,
    pub chat_requests: IntCounterVec,
    pub chat_tokens: IntCounterVec,
    pub chat_first_token: HistogramVec,
    pub chat_duration: HistogramVec,
    /// Requests the front door admitted to one route and the router
    /// routed to another: a bypass in the making, always 0.
    pub front_door_mismatches: IntCounter,
    /// Chats, replays and reruns holding a place (`chat.max_concurrent`).
    pub chats_running: IntGauge,
    /// Matrix searches answered from the keyword side alone, by reason.
    pub matrix_degraded: IntCounterVec,
}

/// Stages of `lakehouse_vector_commit_duration_seconds`.
pub const COMMIT_STAGES: &[&str] = &["append", "apply", "compaction_commit"];
/// Steps of `lakehouse_vector_maintenance_duration_seconds`.
pub const MAINTENANCE_STEPS: &[&str] = &[
    "snapshot_copy",
    "snapshot_write",
    "rebuild",
    "delete_superseded",
    "compact",
    "remove_old_versions",
];
/// Events of `lakehouse_supervision_events_total`.
pub const SUPERVISION_EVENTS: &[&str] = &[
    "start",
    "failure",
    "exit",
    "restart",
    "escalation",
    "give_up",
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let front_door_mismatches = IntCounter::with_opts(Opts::new(
            "lakehouse_front_door_mismatches_total",
            "Requests the front door authorised for one route and the router sent to another (a bug: always 0).",
        ))?;
        registry.register(Box::new(front_door_mismatches.clone()))?;
        let chats_running = IntGauge::with_opts(Opts::new(
            "lakehouse_chats_running",
            "Chats, replays and reruns running now (at most chat.max_concurrent).",
        ))?;
        registry.register(Box::new(chats_running.clone()))?;
        let matrix_degraded = IntCounterVec::new(
            Opts::new(
                "lakehouse_matrix_degraded_searches_total",
                "Matrix searches answered from BM25 alone because the query could not be embedded, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(matrix_degraded.clone()))?;
        matrix_degraded
            .with_label_values(&[crate::domain::matrix::Degraded::EmbedderUnavailable.as_str()]);
        let http_requests = IntCounterVec::new(
            Opts::new(
                "lakehouse_http_requests_total",
                "HTTP requests by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "lakehouse_http_request_duration_seconds",
                "HTTP request latency by method and route template.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )?;
        let actor_restarts = IntCounterVec::new(
            Opts::new(
                "lakehouse_actor_restarts_total",
                "Restarts of each supervised actor.",
            ),
            &["actor"],
        )?;
        let actor_up = IntGaugeVec::new(
            Opts::new(
                "lakehouse_actor_up",
                "1 while the actor is running, 0 otherwise.",
            ),
            &["actor"],
        )?;
        let alarm_active = IntGaugeVec::new(
            Opts::new(
                "lakehouse_alarm_active",
                "1 while the alarm (kind or kind:subject) is set, 0 once cleared.",
            ),
            &["alarm"],
        )?;
        let actor_mailbox_depth = IntGaugeVec::new(
            Opts::new(
                "lakehouse_actor_mailbox_depth",
                "Requests sent to the actor and not yet answered (queued or in its handler).",
            ),
            &["actor"],
        )?;
        let supervision_events = IntCounterVec::new(
            Opts::new(
                "lakehouse_supervision_events_total",
                "Supervision events (start, failure, exit, restart, escalation) per actor.",
            ),
            &["actor", "event"],
        )?;
        let embed_cache_hits =
            IntCounter::new("lakehouse_embed_cache_hits_total", "Embedding cache hits.")?;
        let snapshot_last_success = IntGauge::new(
            "lakehouse_snapshot_last_success_timestamp_seconds",
            "Unix time of the newest snapshot this process took (0: none yet).",
        )?;
        let embed_cache_misses = IntCounter::new(
            "lakehouse_embed_cache_misses_total",
            "Embedding cache misses.",
        )?;

        let vector_index_items = IntGaugeVec::new(
            Opts::new(
                "lakehouse_vector_index_items",
                "Live items per vector index.",
            ),
            &["index"],
        )?;
        let vector_search_duration = HistogramVec::new(
            HistogramOpts::new(
                "lakehouse_vector_search_duration_seconds",
                "Vector search latency inside the index (embedding included for text queries).",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 1.0,
            ]),
            &["index"],
        )?;
        let vector_maintenance_duration = HistogramVec::new(
            HistogramOpts::new(
                "lakehouse_vector_maintenance_duration_seconds",
                "Maintenance steps of a vector index: snapshot_copy, rebuild, delete_superseded \
                 hold up its commits; compact, remove_old_versions and snapshot_write (unless the graph is over 256 MB) run beside them.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["index", "step"],
        )?;
        let vector_commit_duration = HistogramVec::new(
            HistogramOpts::new(
                "lakehouse_vector_commit_duration_seconds",
                "One group commit of a vector index, by stage: append (Lance), apply (graph insert and publish).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["index", "stage"],
        )?;
        let vector_manifest_recoveries = IntCounterVec::new(
            Opts::new(
                "lakehouse_vector_manifest_recoveries_total",
                "Torn newest manifests set aside at load (the previous version was opened).",
            ),
            &["index"],
        )?;
        let keyword_index_loads = IntCounterVec::new(
            Opts::new(
                "lakehouse_keyword_index_loads_total",
                "Keyword indexes loaded by an index incarnation, by source: snapshot (read and reconciled) or texts (analysed).",
            ),
            &["index", "source"],
        )?;
        let lance_commits = IntCounterVec::new(
            Opts::new(
                "lakehouse_lance_commits_total",
                "Lance commits (appends, deletes, compactions) per dataset.",
            ),
            &["dataset"],
        )?;
        let chat_requests = IntCounterVec::new(
            Opts::new(
                "lakehouse_chat_requests_total",
                "Chat requests by provider, model and outcome (ok, or the error code).",
            ),
            &["provider", "model", "outcome"],
        )?;
        let chat_tokens = IntCounterVec::new(
            Opts::new(
                "lakehouse_chat_tokens_total",
                "Chat tokens by provider and kind (prompt, completion); estimated when the provider reports none.",
            ),
            &["provider", "kind"],
        )?;
        let chat_buckets = vec![
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        ];
        let chat_first_token = HistogramVec::new(
            HistogramOpts::new(
                "lakehouse_chat_first_token_seconds",
                "Time from a chat request to its first answer token.",
            )
            .buckets(chat_buckets.clone()),
            &["provider"],
        )?;
        let chat_duration = HistogramVec::new(
            HistogramOpts::new(
                "lakehouse_chat_duration_seconds",
                "Chat latency, retrieval included, to the last token.",
            )
            .buckets(chat_buckets),
            &["provider"],
        )?;
        registry.register(Box::new(chat_requests.clone()))?;
        registry.register(Box::new(chat_tokens.clone()))?;
        registry.register(Box::new(chat_first_token.clone()))?;
        registry.register(Box::new(chat_duration.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(actor_restarts.clone()))?;
        registry.register(Box::new(actor_up.clone()))?;
        registry.register(Box::new(alarm_active.clone()))?;
        registry.register(Box::new(actor_mailbox_depth.clone()))?;
        registry.register(Box::new(supervision_events.clone()))?;
        let lance_cache_bytes = IntGauge::new(
            "lakehouse_lance_cache_bytes",
            "Bytes held by the vector indexes' Lance caches (metadata and index, every index), at this scrape.",
        )?;
        let lance_cache_limit_bytes = IntGaugeVec::new(
            Opts::new(
                "lakehouse_lance_cache_limit_bytes",
                "The bound of each vector index's Lance caches, per index (vectors.lance_*_cache_bytes).",
            ),
            &["cache"],
        )?;
        registry.register(Box::new(lance_cache_bytes.clone()))?;
        registry.register(Box::new(lance_cache_limit_bytes.clone()))?;
        registry.register(Box::new(embed_cache_hits.clone()))?;
        registry.register(Box::new(snapshot_last_success.clone()))?;
        registry.register(Box::new(embed_cache_misses.clone()))?;
        registry.register(Box::new(vector_index_items.clone()))?;
        registry.register(Box::new(vector_search_duration.clone()))?;
        registry.register(Box::new(vector_maintenance_duration.clone()))?;
        registry.register(Box::new(vector_commit_duration.clone()))?;
        registry.register(Box::new(vector_manifest_recoveries.clone()))?;
        registry.register(Box::new(keyword_index_loads.clone()))?;
        registry.register(Box::new(lance_commits.clone()))?;

        Ok(Self {
            registry,
            http_requests,
            http_duration,
            actor_restarts,
            actor_up,
            alarm_active,
            actor_mailbox_depth,
            supervision_events,
            lance_cache_bytes,
            lance_cache_limit_bytes,
            lance_sessions: parking_lot::Mutex::new(Vec::new()),
            embed_cache_hits,
            snapshot_last_success,
            embed_cache_misses,
            vector_index_items,
            vector_search_duration,
            vector_maintenance_duration,
            vector_commit_duration,
            vector_manifest_recoveries,
            keyword_index_loads,
            lance_commits,
            chat_requests,
            chat_tokens,
            chat_first_token,
            chat_duration,
            front_door_mismatches,
            chats_running,
            matrix_degraded,
        })
    }

    pub fn supervision_event(&self, actor: &str, event: &str) {
        self.supervision_events
            .with_label_values(&[actor, event])
            .inc();
    }

    /// Makes sure an actor's restart counter exists (at 0) before its first
    /// restart, so dashboards and alerts see the series from the start.
    pub fn declare_actor(&self, actor: &str) {
        self.actor_restarts.with_label_values(&[actor]);
    }

    /// Removes every series of a dropped vector index, so a service that
    /// creates and drops indexes does not grow its exposition forever.
    pub fn forget_index(&self, index: &str) {
        let _ = self.vector_index_items.remove_label_values(&[index]);
        let _ = self.vector_search_duration.remove_label_values(&[index]);
        let _ = self
            .vector_manifest_recoveries
            .remove_label_values(&[index]);
        for stage in COMMIT_STAGES {
            let _ = self
                .vector_commit_duration
                .remove_label_values(&[index, stage]);
        }
        for step in MAINTENANCE_STEPS {
            let _ = self
                .vector_maintenance_duration
                .remove_label_values(&[index, step]);
        }
        let _ = self
            .lance_commits
            .remove_label_values(&[&format!("vectors/{index}")]);
        self.forget_actor(&crate::domain::vectors::index_actor(index));
    }

    /// Removes the series of an actor that left the tree for good.
    pub fn forget_actor(&self, actor: &str) {
        let _ = self.actor_restarts.remove_label_values(&[actor]);
        let _ = self.actor_up.remove_label_values(&[actor]);
        let _ = self.actor_mailbox_depth.remove_label_values(&[actor]);
        for event in SUPERVISION_EVENTS {
            let _ = self.supervision_events.remove_label_values(&[actor, event]);
        }
    }

    /// The bounds of each index's Lance caches (`vectors.lance_*_cache_bytes`).
    pub fn lance_cache_limits(&self, metadata: usize, index: usize) {
        self.lance_cache_limit_bytes
            .with_label_values(&["metadata"])
            .set(metadata as i64);
        self.lance_cache_limit_bytes
            .with_label_values(&["index"])
            .set(index as i64);
    }

    /// Measures `session` at each scrape (`lakehouse_lance_cache_bytes`)
    /// for as long as it lives.
    pub fn watch_lance(&self, session: &Arc<lance::session::Session>) {
        let mut sessions = self.lance_sessions.lock();
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(session));
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let held: u64 = self
            .lance_sessions
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|s| s.size_bytes())
            .sum();
        self.lance_cache_bytes.set(held as i64);
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
