//! The MCP tools: their arguments (JSON Schema from the types), what each
//! needs, and how its answer is capped.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::auth::Role;

/// One tool as listed.
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// The least role that may call it.
    pub role: Role,
    pub read_only: bool,
    pub destructive: bool,
    pub schema: fn() -> Value,
}

fn schema_of<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// Every tool, in the order `tools/list` gives them.
pub fn all() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "list_datasets",
            description: "List the datasets (ingested CSVs and the replay log) with their schema, row count and Lance version.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<NoArguments>,
        },
        ToolSpec {
            name: "describe_dataset",
            description: "One dataset: its columns and types, row count, Lance version and ingest history.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<DescribeDataset>,
        },
        ToolSpec {
            name: "query_sql",
            description: "Run one read-only SQL query (SELECT, WITH … SELECT, EXPLAIN) over every dataset; tables are named after the datasets. Rows are capped.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<QuerySql>,
        },
        ToolSpec {
            name: "list_indexes",
            description: "List the vector indexes: name, dimension, metric, status and item count.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<NoArguments>,
        },
        ToolSpec {
            name: "search_vectors",
            description: "Semantic search of one vector index by text (the service embeds it): the k nearest items with their metadata. `filter` keeps items whose metadata field equals the value.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<SearchVectors>,
        },
        ToolSpec {
            name: "search_workers",
            description: "Find workers for a staffing need: semantic search over the workers with optional role, city and state, excluded ids, and the playbook's boosts from past placements (needs a role). Each result names the worker and their key fields.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<SearchWorkers>,
        },
        ToolSpec {
            name: "embed_text",
            description: "Turn texts into unit vectors with the service's embedder (for clients that store vectors elsewhere).",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<EmbedText>,
        },
        ToolSpec {
            name: "validate_outreach",
            description: "Check a drafted e-mail or SMS (recipient, length — 160 characters for an SMS —, unfilled placeholders, SSNs) or a fill proposal (workers exist and match the order's role and place). Returns every problem found.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<ValidateOutreach>,
        },
        ToolSpec {
            name: "record_placement",
            description: "Record that these workers filled a need (score in [0, 1]): later searches with a near query and the same role rank them higher. A write.",
            role: Role::Write,
            read_only: false,
            destructive: false,
            schema: schema_of::<RecordPlacement>,
        },
        ToolSpec {
            name: "ask",
            description: "Ask a question answered from retrieved records (workers, or any vector index), with citations that pin the Lance version each record was read from. SSNs are redacted before any model sees the records.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<Ask>,
        },
        ToolSpec {
            name: "supervision_tree",
            description: "The live supervision tree: every actor's status, restarts and last failure.",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<NoArguments>,
        },
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeDataset {
    /// The dataset's name, as `list_datasets` gives it.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuerySql {
    /// One read-only statement, e.g. `SELECT role, count(*) FROM workers GROUP BY role`.
    pub sql: String,
    /// At most this many rows (capped by `mcp.max_rows`).
    #[schemars(range(min = 1))]
    pub max_rows: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchVectors {
    /// The index, as `list_indexes` gives it.
    pub index: String,
    /// What to look for, in words.
    pub text: String,
    /// How many results, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub k: usize,
    /// Conditions on the metadata: `{"role": "Welder"}` (equality), or the
    /// filter language: `and`/`or`/`not`, `eq`, `ne`, `in`, `nin`, `gt`,
    /// `gte`, `lt`, `lte` (numbers, RFC 3339 dates), `contains`,
    /// `contains_any`, `contains_all` (arrays), `exists`.
    pub filter: Option<Map<String, Value>>,
    /// `semantic` (default), `keyword` (exact words: certifications,
    /// licence classes, names) or `hybrid` (both).
    pub mode: Option<crate::domain::keyword::SearchMode>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchWorkers {
    /// The need, in words, e.g. "forklift operator for a night shift".
    pub query: String,
    /// How many workers, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub k: usize,
    /// Exact role, e.g. "Forklift Operator".
    pub role: Option<String>,
    pub city: Option<String>,
    /// Two-letter state, e.g. "IL".
    pub state: Option<String>,
    /// Worker ids never to return (e.g. already contacted).
    pub exclude_ids: Option<Vec<String>>,
    /// Apply the boosts recorded by `record_placement` for this role.
    #[serde(default)]
    pub use_playbook: bool,
    /// More conditions in the filter language, e.g.
    /// `{"and": [{"years_experience": {"gte": 3}}, {"certifications": {"contains": "CDL-A"}}]}`.
    pub filter: Option<Map<String, Value>>,
    /// At least this many years of experience.
    pub min_years: Option<u32>,
    /// At most this hourly rate (USD).
    pub max_rate: Option<f64>,
    /// Every one of these skills, e.g. ["reach truck"].
    pub skills_all: Option<Vec<String>>,
    /// At least one of these certifications, e.g. ["CDL-A", "OSHA 30"].
    pub certifications_any: Option<Vec<String>>,
    /// Available on or before this date, e.g. "2026-12-07".
    pub available_by: Option<String>,
    /// `hybrid` (default: words and meaning), `semantic` or `keyword`.
    pub mode: Option<crate::domain::keyword::SearchMode>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedText {
    /// The texts, 1 to 64.
    pub texts: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutreachKind {
    Email,
    Sms,
    Fill,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FillOrderArgs {
    pub role: String,
    pub city: String,
    pub state: String,
    pub count: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateOutreach {
    /// `email` (to, subject, body), `sms` (to, body) or `fill` (order, worker_ids).
    pub kind: OutreachKind,
    /// E-mail address or phone number.
    pub to: Option<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub order: Option<FillOrderArgs>,
    pub worker_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPlacement {
    /// The need the workers filled, in words.
    pub query: String,
    pub role: String,
    /// The workers placed.
    pub worker_ids: Vec<String>,
    /// How well it went, 0 to 1 (1 halves their distance in later searches).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score: f64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The question, e.g. "who can cover a forklift shift in Joliet tomorrow?".
    pub question: String,
    /// `workers` (default) or `index:<name>`.
    pub source: Option<String>,
    /// Records to retrieve, 1 to 50 (default 5).
    pub k: Option<usize>,
    /// Metadata fields that must equal these values, e.g. `{"role": "Forklift Operator"}`.
    pub filter: Option<Map<String, Value>>,
    /// Workers only, with `filter.role`: apply the playbook's boosts.
    #[serde(default)]
    pub use_playbook: bool,
    /// Run the `sms` or `email` validator on the answer.
    pub validate: Option<crate::domain::chat::DraftKind>,
}
