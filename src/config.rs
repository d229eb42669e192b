//! Typed settings, loaded in layers and validated before anything starts.
//!
//! Order, later wins: the compiled-in `config/default.toml`, the same file
//! on disk if present, `config/<LAKEHOUSE_ENV>.toml`, `--config FILE`,
//! environment variables `LAKEHOUSE__SECTION__KEY`, then CLI flags.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::domain::auth::{validate_entries, TokenEntry};

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("auth.tokens_file {path}: {message}")]
    TokensFile { path: PathBuf, message: String },
}

/// The shape of `auth.tokens_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub data: DataSettings,
    pub embed: EmbedSettings,
    pub supervision: SupervisionSettings,
    pub vectors: VectorSettings,
    pub matrix: MatrixSettings,
    pub chat: ChatSettings,
    pub mcp: McpSettings,
    pub storage: StorageSettings,
    pub ingest: IngestSettings,
    pub query: QuerySettings,
    pub limits: LimitSettings,
    pub auth: AuthSettings,
    pub faults: FaultSettings,
    pub alarms: AlarmSettings,
    pub snapshots: SnapshotSettings,
    pub log: LogSettings,
}

/// Snapshots of the data dir (`POST /v1/admin/snapshots`, `lakehouse
/// restore`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettings {
    /// Where snapshots go; empty: `<data.dir>.snapshots` beside the data
    /// dir (never inside it).
    pub dir: Option<PathBuf>,
    /// Snapshots kept; older ones (and the files only they held) go.
    pub keep: usize,
    /// The `snapshot_stale` alarm when the newest snapshot is older than
    /// this (0: no alarm).
    pub max_age_secs: u64,
}

impl Settings {
    /// Where snapshots of this data dir go.
    pub fn snapshot_dir(&self) -> PathBuf {
        match &self.snapshots.dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => {
                // Beside the data dir, named after it ("/var/lib/lh/" and
                // "." included): never inside it.
                let dir = match self.data.dir.file_name() {
                    Some(_) => self.data.dir.clone(),
                    None => std::path::absolute(&self.data.dir)
                        .unwrap_or_else(|_| self.data.dir.clone()),
                };
                let name = dir
                    .file_name()
                    .map_or_else(|| "data".into(), |n| n.to_string_lossy().to_string());
                dir.with_file_name(format!("{name}.snapshots"))
            }
        }
    }
}

/// Who may call what (see [`crate::domain::auth`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Tokens as `{name, role, sha256}`; the token itself is never stored.
    pub tokens: Vec<TokenEntry>,
    /// More tokens, in a TOML file of `[[tokens]]` tables; empty: none.
    pub tokens_file: Option<PathBuf>,
    /// `/ready` and `/metrics` need a token (any role) too.
    pub protect_ops: bool,
    /// With no tokens, still serve requests that came through a proxy
    /// (`Forwarded`, `X-Forwarded-*`): the proxy is the operator's own.
    pub allow_open: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub request_timeout_ms: u64,
    pub shutdown_timeout_secs: u64,
    /// `Host` names served besides loopback ones (DNS rebinding
    /// protection); `"*"` serves any.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    pub dir: PathBuf,
    /// What an acknowledged write survives (see [`Durability`]).
    pub durability: Durability,
}

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledged once Lance has committed: the files are in the
    /// operating system's page cache, which survives any crash or kill of
    /// the process, but not a power loss of the host.
    Process,
    /// Also every file the commit wrote, and the directories that received
    /// them, are synced to the disk before the acknowledgement: survives a
    /// host power loss too, at the cost of the syncs.
    Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedProvider {
    Hash,
    Ollama,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedSettings {
    pub provider: EmbedProvider,
    pub dimension: usize,
    pub cache_capacity: usize,
    pub max_texts: usize,
    pub max_text_chars: usize,
    pub ollama: OllamaSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaSettings {
    /// e.g. `http://127.0.0.1:11434`
    pub url: String,
    pub model: String,
    pub timeout_ms: u64,
    /// Texts per request to Ollama.
    pub batch_size: usize,
}

/// The MCP server (`/mcp` and `lakehouse mcp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    /// Serve `/mcp` (streamable HTTP).
    pub enabled: bool,
    /// Do not offer write tools (`record_placement`) at all.
    pub read_only: bool,
    /// Rows (hits, datasets, …) a tool result holds at most.
    pub max_rows: usize,
    /// Characters a tool result holds at most.
    pub max_chars: usize,
    /// Browser origins accepted besides loopback ones (`http://localhost:*`,
    /// `http://127.0.0.1:*`, `http://[::1]:*`), e.g. `https://agents.example.com`.
    pub allowed_origins: Vec<String>,
    /// `Host` names accepted besides loopback ones and
    /// `server.allowed_hosts` (kept for older configurations).
    pub allowed_hosts: Vec<String>,
    /// `/mcp` sessions open at once, and per token.
    pub max_sessions: usize,
    pub max_sessions_per_token: usize,
}

/// Which model answers chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatProvider {
    /// Built in, needs nothing: answers from the retrieved records with a
    /// fixed template, and says so.
    Extractive,
    /// Ollama's `/api/chat`, through ollama-rs.
    Ollama,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    pub provider: ChatProvider,
    /// Records retrieved when a request's context asks for none (replay).
    pub default_k: usize,
    /// At most this many records go into the context…
    pub max_context_records: usize,
    /// …and at most about this many tokens (4 characters each).
    pub max_context_tokens: usize,
    /// The whole chat, retrieval and generation, must end within this.
    pub timeout_ms: u64,
    /// Chats (and reruns) running at once; more get `503 too_many_chats`.
    pub max_concurrent: usize,
    pub ollama: ChatOllamaSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatOllamaSettings {
    pub url: String,
    pub model: String,
    /// How long Ollama keeps the model loaded after a request.
    pub keep_alive_secs: u64,
    /// Tokens the model may generate (Ollama's `num_predict`).
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSettings {
    /// Each subsystem supervisor (data, retrieval, edge, vectors).
    pub max_restarts: u32,
    pub period_secs: u64,
    /// The root: subsystem restarts within `root_period_secs` before the
    /// node gives up and the process exits non-zero.
    pub root_max_restarts: u32,
    pub root_period_secs: u64,
    /// Each vector index, on its own: restarts within `index_period_secs`
    /// before it is left `failed` (until an admin restart).
    pub index_max_restarts: u32,
    pub index_period_secs: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorSettings {
    /// How new indexes hold their vectors unless they say (`f32`, `fp16`).
    pub storage: crate::domain::vectors::VectorStorage,
    /// HNSW defaults for indexes created without them.
    pub hnsw_m: u32,
    pub hnsw_ef_construction: u32,
    pub hnsw_ef_search: u32,
    /// Items per add request.
    pub max_batch: usize,
    /// Serialised metadata per item.
    pub max_metadata_bytes: usize,
    /// Items one bulk update or delete may change unless it asks with
    /// `allow_large`; also its longest id list.
    pub max_bulk_items: usize,
    /// Write a faiss snapshot after this many written rows.
    pub snapshot_every: usize,
    /// ...and after a tenth of the index's size, but not before this many.
    pub snapshot_min_rows: usize,
    /// Snapshot what is left after this long without writes.
    pub snapshot_idle_ms: u64,
    /// Remove superseded rows from Lance once this many have piled up.
    pub cleanup_superseded: usize,
    /// Compact the Lance dataset when it has more small fragments than this.
    pub max_fragments: usize,
    /// Lance versions older than this are removed after a compaction.
    pub version_retention_secs: u64,
    /// Recent search results kept per index until its next write (0: off).
    pub result_cache_entries: usize,
    /// ...and at most this many bytes of them (queries and results).
    pub result_cache_bytes: usize,
    /// Lance's metadata cache (manifests, transactions, file metadata) of
    /// the vector indexes, shared by all of them (Lance's default: 1 GiB
    /// per dataset opened, and every commit adds to it).
    pub lance_metadata_cache_bytes: usize,
    /// Lance's index cache of the vector indexes (no Lance index is used:
    /// the graph is faiss's), shared by all of them (default: 6 GiB).
    pub lance_index_cache_bytes: usize,
    /// Fields per index whose filter lookups are kept (and rebuilt at a
    /// restart); filtering on more evicts the least recently used.
    pub max_hot_fields: usize,
    /// Rebuild the graph without tombstones once they are more than this
    /// share of it (and at least `rebuild_min_tombstones`).
    pub rebuild_tombstone_share: f64,
    pub rebuild_min_tombstones: usize,
    /// The keyword side's weight in a hybrid search (0 to 1), unless the
    /// request gives its own.
    pub keyword_weight: f32,
    /// Synonym groups every index's keyword queries apply (an index adds
    /// its own): each a list of words or phrases that mean the same.
    #[serde(default)]
    pub synonyms: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSettings {
    /// A recording applies to a search whose query is within this cosine
    /// distance of the recorded query (and has the same role).
    pub playbook_max_distance: f32,
    /// Nearest recordings considered per search.
    pub playbook_candidates: usize,
    /// Graph parameters of `playbook_memory` when it is created. Searches
    /// of it always filter by role and are answered by an exact scan, so
    /// its graph only serves unfiltered searches: a cheaper graph makes
    /// every recording cheaper.
    pub playbook_hnsw: crate::domain::vectors::HnswParams,
    /// The search mode of a matrix search that names none.
    pub default_mode: crate::domain::keyword::SearchMode,
    /// A recording this many days old counts half as much (0: never
    /// decays).
    pub playbook_half_life_days: f64,
    /// A `declined` recording counts against its workers by its score
    /// times this; a `no_show` one by its score times the next.
    pub playbook_declined_weight: f64,
    pub playbook_no_show_weight: f64,
    /// A demotion multiplies a distance by at most 1 + this (a boost
    /// divides it by at most 2).
    pub playbook_max_demotion: f64,
}

impl MatrixSettings {
    /// How the playbook weighs recordings.
    pub fn playbook_weights(&self) -> crate::domain::matrix::PlaybookWeights {
        crate::domain::matrix::PlaybookWeights {
            half_life_days: self.playbook_half_life_days,
            declined: self.playbook_declined_weight,
            no_show: self.playbook_no_show_weight,
            max_demotion: self.playbook_max_demotion,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Unset or empty: a local directory under `data.dir/objects`;
    /// `s3://bucket/prefix` for S3-compatible storage.
    pub url: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    pub max_object_bytes: u64,
    pub max_concurrent_transfers: usize,
    /// Transfers one token may hold at once (with tokens configured).
    pub max_transfers_per_token: usize,
}

/// A credential: usable by the code, never printed by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest CSV body.
    pub max_bytes: u64,
    /// How long one ingest (upload + write) may take.
    pub timeout_ms: u64,
    /// Ingests running at once, over all datasets (503 beyond).
    pub max_concurrent: usize,
    /// Columns of a CSV header or JSON lines schema, and bytes of a
    /// column name (422 beyond).
    pub max_columns: usize,
    pub max_column_name_bytes: usize,
    /// An ingest starts only with this much free space on the data
    /// directory's disk, besides its body's size (507 otherwise).
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySettings {
    /// Rows returned at most (and the default `limit`).
    pub max_rows: usize,
    pub timeout_ms: u64,
    /// DataFusion's memory pool, shared by the queries running at once; a
    /// query that needs more fails (nothing spills to disk).
    pub memory_limit_bytes: usize,
    /// Queries running at once; more get `503 too_many_queries`.
    pub max_concurrent: usize,
    /// Bytes of SQL text (400 `sql_too_long` beyond).
    pub max_sql_bytes: usize,
    /// How deeply an expression may nest (400 `sql_too_deep` beyond).
    pub max_expression_depth: usize,
    /// Bytes of rows in one answer; the rest is cut off and the answer
    /// says so (`truncated`, `truncated_by`).
    pub max_result_bytes: usize,
    /// The largest value one call of `repeat`, `lpad`, `rpad`,
    /// `array_repeat` or `range` may build (bytes or elements).
    pub max_function_output: usize,
    /// The most one such call may build over its whole batch (a call on
    /// constants counts once for every row of a batch).
    pub max_function_batch_output: usize,
    /// Threads of the query runtime (0: half the cores, at least one).
    pub threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Bodies of item batches (`POST …/add`), the largest JSON bodies; no
    /// JSON route takes more, whatever its own limit says.
    pub max_body_bytes: usize,
    /// Bodies of embed, validate and SQL requests.
    pub max_text_body_bytes: usize,
    /// Bodies of every other JSON route (searches, matrix, chat, admin).
    pub max_request_bytes: usize,
    /// Fields in one search filter.
    pub max_filter_fields: usize,
    /// Ids in one `exclude_ids` or `worker_ids` list.
    pub max_id_list: usize,
    /// Open `/v1/supervision/events` streams at once (503 beyond).
    pub max_event_streams: usize,
    /// ...and per token (with tokens configured).
    pub max_event_streams_per_token: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    pub enabled: bool,
}

/// When the service sets its alarms (see [`crate::alarms`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSettings {
    /// How often the conditions are checked.
    pub check_interval_ms: u64,
    /// How often an Ollama embedder is asked whether it answers.
    pub embedder_probe_ms: u64,
    /// Resident memory above this sets `memory_high`.
    pub memory_high_water_bytes: u64,
    /// Less free space than this, or than this share, on the data
    /// directory's disk sets `disk_nearly_full`.
    pub disk_free_min_bytes: u64,
    pub disk_free_min_ratio: f64,
    /// Writes not in an index's faiss snapshot above this set `index_lagging`.
    pub index_lag_writes: u64,
    /// This many failures of one index within the window set
    /// `index_crash_looping`.
    pub crash_loop_failures: usize,
    pub crash_loop_window_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// Where to load settings from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Folder holding `default.toml` and `<env>.toml`; `config` if unset.
    pub config_dir: Option<PathBuf>,
    /// The `LAKEHOUSE_ENV` layer; read from the environment if unset.
    pub environment: Option<String>,
    /// An extra file (`--config FILE`), required to exist.
    pub file: Option<PathBuf>,
    /// Environment variables to use instead of the process's own (tests).
    pub env_vars: Option<HashMap<String, String>>,
    /// Final overrides such as CLI flags: (`section.key`, value).
    pub overrides: Vec<(String, String)>,
}

/// A flag's value written as a TOML list of strings (`["a", "b"]`).
fn string_list(value: &str) -> Option<Vec<String>> {
    if !value.trim_start().starts_with('[') {
        return None;
    }
    let table: toml::Table = toml::from_str(&format!("v = {value}")).ok()?;
    table
        .get("v")?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

impl Settings {
    /// The test layer (`config/test.toml`) on `data_dir`, with overrides,
    /// and no environment: what actor-level tests start from.
    #[cfg(test)]
    pub fn for_tests(data_dir: &std::path::Path, overrides: &[(&str, &str)]) -> Self {
        let mut all = vec![("data.dir".to_string(), data_dir.display().to_string())];
        all.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Settings::load(LoadOptions {
            config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
            environment: Some("test".into()),
            file: None,
            env_vars: Some(HashMap::new()),
            overrides: all,
        })
        .expect("the test configuration loads")
    }
    pub fn load(options: LoadOptions) -> Result<Self, ConfigError> {
        let config_dir = options
            .config_dir
            .unwrap_or_else(|| PathBuf::from("config"));
        let environment = options
            .environment
            .or_else(|| std::env::var("LAKEHOUSE_ENV").ok())
            .filter(|e| !e.is_empty());

        let mut builder = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::from(config_dir.join("default.toml")).required(false));
        if let Some(env) = &environment {
            builder = builder
                .add_source(File::from(config_dir.join(format!("{env}.toml"))).required(true));
        }
        if let Some(file) = &options.file {
            builder = builder.add_source(File::from(file.as_path()).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("LAKEHOUSE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // Lists from the environment are comma-separated.
                .list_separator(",")
                .with_list_parse_key("server.allowed_hosts")
                .with_list_parse_key("mcp.allowed_hosts")
                .with_list_parse_key("mcp.allowed_origins")
                .source(options.env_vars),
        );
        for (key, value) in options.overrides {
            builder = match string_list(&value) {
                Some(list) => builder.set_override(key, list)?,
                None => builder.set_override(key, value)?,
            };
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.read_tokens_file()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Appends the tokens of `auth.tokens_file`, if one is set.
    fn read_tokens_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self
            .auth
            .tokens_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return Ok(());
        };
        let error = |message: String| ConfigError::TokensFile {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| error(e.to_string()))?;
        let file: TokensFile = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        self.auth.tokens.extend(file.tokens);
        Ok(())
    }

    /// Whether `server.host` is a loopback address (or `localhost`).
    pub fn binds_loopback(&self) -> bool {
        let host = self.server.host.trim_matches(|c| c == '[' || c == ']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Every numeric range of the configuration, once each: the message
    /// (`must be between 1 and 4096`) is made from the range.
    #[rustfmt::skip]
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let v = &self.vectors;
        let chat = &self.chat;
        bounded("server.workers", self.server.workers, None, Some(256), "(0 = one per core)")?;
        bounded("server.request_timeout_ms", self.server.request_timeout_ms, Some(1), Some(600_000), "")?;
        bounded("server.shutdown_timeout_secs", self.server.shutdown_timeout_secs, None, Some(600), "")?;
        bounded("embed.dimension", self.embed.dimension, Some(1), Some(4096), "")?;
        bounded("embed.cache_capacity", self.embed.cache_capacity, None, Some(10_000_000), "(0 disables the cache)")?;
        bounded("embed.max_texts", self.embed.max_texts, Some(1), Some(10_000), "")?;
        bounded("embed.max_text_chars", self.embed.max_text_chars, Some(1), Some(1_000_000), "")?;
        bounded("embed.ollama.timeout_ms", self.embed.ollama.timeout_ms, Some(1), Some(600_000), "")?;
        bounded("embed.ollama.batch_size", self.embed.ollama.batch_size, Some(1), Some(10_000), "")?;
        bounded("supervision.max_restarts", self.supervision.max_restarts, Some(1), None, "")?;
        bounded("supervision.period_secs", self.supervision.period_secs, Some(1), Some(86_400), "")?;
        bounded("supervision.root_max_restarts", self.supervision.root_max_restarts, Some(1), None, "")?;
        bounded("supervision.root_period_secs", self.supervision.root_period_secs, Some(1), Some(86_400), "")?;
        bounded("supervision.index_max_restarts", self.supervision.index_max_restarts, Some(1), None, "")?;
        bounded("supervision.index_period_secs", self.supervision.index_period_secs, Some(1), Some(86_400), "")?;
        bounded("supervision.backoff_max_ms", self.supervision.backoff_max_ms, None, Some(60_000), "")?;
        bounded("supervision.shutdown_timeout_ms", self.supervision.shutdown_timeout_ms, Some(1), Some(600_000), "")?;
        bounded("vectors.hnsw_m", v.hnsw_m, Some(4), Some(128), "")?;
        bounded("vectors.hnsw_ef_construction", v.hnsw_ef_construction, Some(8), Some(2048), "")?;
        bounded("vectors.hnsw_ef_search", v.hnsw_ef_search, Some(1), Some(4096), "")?;
        bounded("vectors.max_batch", v.max_batch, Some(1), Some(100_000), "")?;
        bounded("vectors.max_metadata_bytes", v.max_metadata_bytes, Some(2), Some(10 << 20), "")?;
        bounded("vectors.max_bulk_items", v.max_bulk_items, Some(1), Some(1_000_000), "")?;
        bounded("snapshots.keep", self.snapshots.keep, Some(1), Some(1000), "")?;
        bounded("vectors.snapshot_every", v.snapshot_every, Some(1), None, "")?;
        bounded("vectors.cleanup_superseded", v.cleanup_superseded, Some(1), None, "")?;
        bounded("vectors.max_fragments", v.max_fragments, Some(2), None, "")?;
        bounded("matrix.playbook_candidates", self.matrix.playbook_candidates, Some(1), Some(1000), "")?;
        bounded("mcp.max_chars", self.mcp.max_chars, Some(1_000), Some(10_000_000), "")?;
        bounded("chat.max_context_records", chat.max_context_records, Some(1), Some(200), "")?;
        bounded("chat.max_context_tokens", chat.max_context_tokens, Some(100), Some(200_000), "")?;
        bounded("chat.timeout_ms", chat.timeout_ms, Some(100), Some(3_600_000), "")?;
        bounded("chat.ollama.max_tokens", chat.ollama.max_tokens, Some(1), Some(32_768), "")?;
        bounded("storage.max_object_bytes", self.storage.max_object_bytes, Some(1), Some(1 << 40), "")?;
        bounded("storage.max_concurrent_transfers", self.storage.max_concurrent_transfers, Some(1), Some(1024), "")?;
        bounded("ingest.max_bytes", self.ingest.max_bytes, Some(1), None, "")?;
        bounded("ingest.timeout_ms", self.ingest.timeout_ms, Some(1), Some(86_400_000), "")?;
        bounded("query.max_rows", self.query.max_rows, Some(1), Some(1_000_000), "")?;
        bounded("query.timeout_ms", self.query.timeout_ms, Some(1), Some(3_600_000), "")?;
        bounded("limits.max_id_list", self.limits.max_id_list, Some(1), Some(100_000), "")?;
        bounded("alarms.check_interval_ms", self.alarms.check_interval_ms, Some(100), Some(3_600_000), "")?;
        bounded("alarms.embedder_probe_ms", self.alarms.embedder_probe_ms, Some(100), Some(3_600_000), "")?;
        bounded("alarms.crash_loop_failures", self.alarms.crash_loop_failures, Some(1), Some(10), "")?;
        bounded("alarms.crash_loop_window_secs", self.alarms.crash_loop_window_secs, Some(1), Some(86_400), "")?;
        bounded("limits.max_event_streams", self.limits.max_event_streams, Some(1), Some(10_000), "")?;
        bounded("vectors.max_hot_fields", self.vectors.max_hot_fields, Some(1), Some(1024), "")?;
        bounded("query.memory_limit_bytes", self.query.memory_limit_bytes, Some(1 << 20), Some(1 << 40), "")?;
        bounded("query.max_concurrent", self.query.max_concurrent, Some(1), Some(256), "")?;
        bounded("limits.max_body_bytes", self.limits.max_body_bytes, Some(1024), Some(1 << 30), "")?;
        bounded("limits.max_request_bytes", self.limits.max_request_bytes, Some(1024), Some(1 << 30), "")?;
        bounded("limits.max_text_body_bytes", self.limits.max_text_body_bytes, Some(1024), Some(1 << 30), "")?;
        bounded("limits.max_event_streams_per_token", self.limits.max_event_streams_per_token, Some(1), Some(10_000), "")?;
        bounded("storage.max_transfers_per_token", self.storage.max_transfers_per_token, Some(1), Some(1024), "")?;
        bounded("mcp.max_sessions", self.mcp.max_sessions, Some(1), Some(10_000), "")?;
        bounded("mcp.max_sessions_per_token", self.mcp.max_sessions_per_token, Some(1), Some(10_000), "")?;
        bounded("chat.max_concurrent", self.chat.max_concurrent, Some(1), Some(1024), "")?;
        bounded("ingest.max_concurrent", self.ingest.max_concurrent, Some(1), Some(256), "")?;
        bounded("ingest.max_columns", self.ingest.max_columns, Some(1), Some(10_000), "")?;
        bounded("ingest.max_column_name_bytes", self.ingest.max_column_name_bytes, Some(1), Some(4096), "")?;
        bounded("query.max_sql_bytes", self.query.max_sql_bytes, Some(16), Some(16 << 20), "")?;
        bounded("query.max_expression_depth", self.query.max_expression_depth, Some(8), Some(10_000), "")?;
        bounded("query.max_result_bytes", self.query.max_result_bytes, Some(1024), Some(1 << 32), "")?;
        bounded("vectors.lance_metadata_cache_bytes", self.vectors.lance_metadata_cache_bytes, Some(1 << 20), Some(1 << 34), "")?;
        bounded("vectors.lance_index_cache_bytes", self.vectors.lance_index_cache_bytes, Some(1 << 20), Some(1 << 34), "")?;
        bounded("query.max_function_output", self.query.max_function_output, Some(1), Some(1 << 32), "")?;
        bounded("query.max_function_batch_output", self.query.max_function_batch_output, Some(self.query.max_function_output), Some(1 << 34), "(at least query.max_function_output)")?;
        bounded("query.threads", self.query.threads, None, Some(64), "(0 = half the cores)")?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, message: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    message: message.to_string(),
                })
            }
        }
        self.check_ranges()?;
        check(
            !self.server.host.trim().is_empty(),
            "server.host",
            "must not be empty",
        )?;
        check(
            !self.data.dir.as_os_str().is_empty(),
            "data.dir",
            "must not be empty",
        )?;
        if self.embed.provider == EmbedProvider::Ollama {
            let url = &self.embed.ollama.url;
            check(
                (url.starts_with("http://") || url.starts_with("https://")) && url.len() > 8,
                "embed.ollama.url",
                "must be an http(s) URL such as http://127.0.0.1:11434",
            )?;
            check(
                !self.embed.ollama.model.trim().is_empty(),
                "embed.ollama.model",
                "must not be empty",
            )?;
        }
        check(
            self.supervision.backoff_initial_ms <= self.supervision.backoff_max_ms,
            "supervision.backoff_initial_ms",
            "must not exceed supervision.backoff_max_ms",
        )?;
        let v = &self.vectors;
        check(
            v.rebuild_tombstone_share > 0.0 && v.rebuild_tombstone_share <= 1.0,
            "vectors.rebuild_tombstone_share",
            "must be in (0, 1]",
        )?;
        check(
            (0.0..=2.0).contains(&self.matrix.playbook_max_distance),
            "matrix.playbook_max_distance",
            "must be between 0 and 2 (cosine distance)",
        )?;
        bounded(
            "matrix.playbook_half_life_days",
            self.matrix.playbook_half_life_days,
            Some(0.0),
            Some(36_500.0),
            "",
        )?;
        bounded(
            "matrix.playbook_declined_weight",
            self.matrix.playbook_declined_weight,
            Some(0.0),
            Some(1.0),
            "",
        )?;
        bounded(
            "matrix.playbook_no_show_weight",
            self.matrix.playbook_no_show_weight,
            Some(0.0),
            Some(1.0),
            "",
        )?;
        bounded(
            "matrix.playbook_max_demotion",
            self.matrix.playbook_max_demotion,
            Some(0.0),
            Some(4.0),
            "",
        )?;
        if let Err(err) = self.matrix.playbook_hnsw.validate() {
            check(false, "matrix.playbook_hnsw", &err.to_string())?;
        }
        check(
            (1..=10_000).contains(&self.mcp.max_rows),
            "mcp.max_rows",
            "must be between 1 and 10000",
        )?;
        check(
            self.mcp
                .allowed_origins
                .iter()
                .all(|o| o.starts_with("http://") || o.starts_with("https://")),
            "mcp.allowed_origins",
            "each origin needs its scheme, e.g. https://agents.example.com",
        )?;
        let chat = &self.chat;
        check(
            (1..=crate::domain::chat::MAX_CONTEXT_K).contains(&chat.default_k),
            "chat.default_k",
            "must be between 1 and 50",
        )?;
        check(
            reqwest::Url::parse(&chat.ollama.url).is_ok(),
            "chat.ollama.url",
            "must be a URL such as http://127.0.0.1:11434",
        )?;
        check(
            !chat.ollama.model.trim().is_empty(),
            "chat.ollama.model",
            "must not be empty",
        )?;
        if let Some(url) = self.storage.url.as_deref().filter(|u| !u.is_empty()) {
            check(
                url.starts_with("s3://") && url.len() > 5,
                "storage.url",
                "must be empty (local directory) or s3://bucket[/prefix]",
            )?;
        }
        if let Err(err) = validate_entries(&self.auth.tokens) {
            check(false, "auth.tokens", &err.to_string())?;
        }
        check(
            (1..=256).contains(&self.limits.max_filter_fields),
            "limits.max_filter_fields",
            "must be between 1 and 256",
        )?;
        check(
            (0.0..1.0).contains(&self.alarms.disk_free_min_ratio),
            "alarms.disk_free_min_ratio",
            "must be at least 0 and below 1",
        )?;
        if let Err(reason) =
            crate::domain::keyword::validate_synonyms(&self.vectors.synonyms, "vectors.synonyms")
        {
            check(false, "vectors.synonyms", &reason)?;
        }
        check(
            (0.0..=1.0).contains(&self.vectors.keyword_weight),
            "vectors.keyword_weight",
            "must be between 0 and 1",
        )?;
        check(
            self.vectors.result_cache_bytes <= 1 << 34,
            "vectors.result_cache_bytes",
            "must be at most 17179869184",
        )?;
        for host in self
            .server
            .allowed_hosts
            .iter()
            .chain(&self.mcp.allowed_hosts)
        {
            check(
                host == "*" || crate::domain::auth::host_name(host).as_deref() == Some(host.to_ascii_lowercase().as_str()),
                "server.allowed_hosts",
                "each entry is a host name or address without scheme or port (e.g. lakehouse.example.com), or \"*\"",
            )?;
        }
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            "is not a valid filter (try info, debug or lakehouse=debug,warn)",
        )?;
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.server.request_timeout_ms)
    }
}

/// `value` within `lo..=hi` (either may be open); the message says
/// the range, so each range is written once.
fn bounded<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    lo: Option<T>,
    hi: Option<T>,
    note: &str,
) -> Result<(), ConfigError> {
    let message = match (&lo, &hi) {
        (Some(lo), Some(hi)) => format!("must be between {lo} and {hi}"),
        (None, Some(hi)) => format!("must be at most {hi}"),
        (Some(lo), None) => format!("must be at least {lo}"),
        (None, None) => return Ok(()),
    };
    let inside =
        lo.as_ref().is_none_or(|lo| value >= *lo) && hi.as_ref().is_none_or(|hi| value <= *hi);
    if inside {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        message: if note.is_empty() {
            message
        } else {
            format!("{message} {note}")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(
        env: &[(&str, &str)],
        overrides: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        Settings::load(LoadOptions {
            config_dir: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config"
            ))),
            environment: Some(String::new()),
            file: None,
            env_vars: Some(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn synonyms_come_from_a_config_file_and_bad_groups_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let load = |toml: &str| {
            let path = dir.path().join("lakehouse.toml");
            std::fs::write(&path, toml).unwrap();
            Settings::load(LoadOptions {
                config_dir: Some(PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/config"
                ))),
                environment: Some(String::new()),
                file: Some(path),
                env_vars: Some(HashMap::new()),
                overrides: Vec::new(),
            })
        };
        let defaults = load_with(&[], &[]).unwrap();
        assert!(defaults.vectors.synonyms.contains(&vec![
            "CNA".to_string(),
            "certified nursing assistant".to_string()
        ]));
        let settings = load("[vectors]\nsynonyms = [[\"PCT\", \"patient care technician\"]]\n")
            .expect("synonyms load");
        assert_eq!(
            settings.vectors.synonyms,
            [vec![
                "PCT".to_string(),
                "patient care technician".to_string()
            ]]
        );
        for bad in [
            "[vectors]\nsynonyms = [[\"lonely\"]]\n",
            "[vectors]\nsynonyms = [[\"a\", \"\"]]\n",
            "[vectors]\nsynonyms = [[\"a\", \"line\\nbreak\"]]\n",
        ] {
            let err = load(bad).expect_err(bad).to_string();
            assert!(err.contains("vectors.synonyms"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let settings = load_with(&[], &[]).expect("defaults load");
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.server.port, 3100);
        assert_eq!(settings.data.dir, PathBuf::from("./data"));
        assert_eq!(settings.embed.provider, EmbedProvider::Hash);
        assert_eq!(settings.embed.dimension, 768);
        assert!(!settings.faults.enabled);
    }

    #[test]
    fn environment_overrides_files_and_flags_override_environment() {
        let settings = load_with(
            &[
                ("LAKEHOUSE__SERVER__PORT", "4000"),
                ("LAKEHOUSE__FAULTS__ENABLED", "true"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(settings.server.port, 4000);
        assert!(settings.faults.enabled);

        let settings = load_with(
            &[("LAKEHOUSE__SERVER__PORT", "4000")],
            &[("server.port", "4100")],
        )
        .unwrap();
        assert_eq!(settings.server.port, 4100);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = load_with(&[("LAKEHOUSE__SERVER__PORT", "not-a-port")], &[]).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");

        let err = load_with(&[("LAKEHOUSE__EMBED__DIMENSION", "0")], &[]).unwrap_err();
        assert!(err.to_string().contains("embed.dimension"), "{err}");

        let err = load_with(&[("LAKEHOUSE__EMBED__PROVIDER", "word2vec")], &[]).unwrap_err();
        assert!(err.to_string().contains("embed.provider"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = load_with(&[("LAKEHOUSE__SERVER__PROT", "1")], &[]).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }
}
