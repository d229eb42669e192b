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
            name: "count_workers",
            description: "Count the workers matching a role, place, statuses and filter, and with `facets` how they spread over fields such as role, city or shift (over every match, not a top k).",
            role: Role::Read,
            read_only: true,
            destructive: false,
            schema: schema_of::<CountWorkers>,
        },
        ToolSpec {
            name: "update_worker",
            description: "Change a worker's day-to-day fields: status (active, on_assignment, placed, do_not_use), availability, shift, certifications, contact. Searches leave on_assignment and do_not_use workers out by default. Durable once answered. A write.",
            role: Role::Write,
            read_only: false,
            destructive: false,
            schema: schema_of::<UpdateWorker>,
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
            name: "withdraw_recording",
            description: "Withdraw one playbook recording (a mistake, or a placement that fell through) by the recording_id record_placement answered: its boost or demotion is gone from the next search. A write.",
            role: Role::Write,
            read_only: false,
            destructive: true,
            schema: schema_of::<WithdrawRecording>,
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
    /// Item ids never to return.
    pub exclude_ids: Option<Vec<String>>,
    /// This search's graph-walk width, 1 to 4096 (default: the index's).
    #[schemars(range(min = 1, max = 4096))]
    pub ef_search: Option<u32>,
    /// The keyword side's weight in `hybrid` mode, 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub keyword_weight: Option<f32>,
    /// Give each hit an `explain`: the parts of its distance.
    #[serde(default)]
    pub explain: bool,
    /// Fields whose values to count over every item the filter selects
    /// (not only the k hits), e.g. ["role", "city"]: at most 8.
    pub facets: Option<Vec<String>>,
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
    /// Free for the whole window, both days included, e.g.
    /// {"from": "2026-12-14", "to": "2026-12-18"}: started, not gone, and
    /// no day off inside it.
    pub available_between: Option<crate::domain::workers::DateRange>,
    /// Works one of these shifts, e.g. ["night", "weekend"].
    pub shift_any: Option<Vec<crate::domain::workers::Shift>>,
    /// With certifications_any: held and not expired on this date, e.g.
    /// "2026-12-14".
    pub certifications_valid_on: Option<String>,
    /// Only workers of these statuses, e.g. ["active", "placed"]. Default:
    /// all but on_assignment and do_not_use (unless `filter` names
    /// status); the answer's excluded_statuses says what was left out.
    pub status_any: Option<Vec<crate::domain::workers::WorkerStatus>>,
    /// Living within a distance of a city or a point, e.g.
    /// {"city": "Joliet", "state": "IL", "miles": 25}.
    pub near: Option<crate::domain::matrix::Near>,
    /// `hybrid` (default: words and meaning), `semantic` or `keyword`.
    pub mode: Option<crate::domain::keyword::SearchMode>,
    /// The keyword side's weight in `hybrid` mode, 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub keyword_weight: Option<f32>,
    /// Give each hit an `explain`: the parts of its distance, and the
    /// recordings behind its playbook boost.
    #[serde(default)]
    pub explain: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedText {
    /// The texts, 1 to 64.
    pub texts: Vec<String>,
    /// The embedder's model (default: the configured one).
    pub model: Option<String>,
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
    /// The assignment's days, e.g. {"from": "2026-12-14", "to": "2026-12-18"}:
    /// each worker must be free for all of them.
    pub dates: Option<crate::domain::workers::DateRange>,
    /// Certifications each worker must hold, valid through the last day.
    pub certifications: Option<Vec<String>>,
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
pub struct UpdateWorker {
    /// The worker, as search_workers gives it.
    pub worker_id: String,
    /// Fields to set, e.g. {"status": "on_assignment"} or
    /// {"available_from": "2026-12-14", "shift": "night"}; null removes a
    /// field. `status` is one of active, on_assignment, placed,
    /// do_not_use. The profile text stays.
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountWorkers {
    /// Exact role, e.g. "Forklift Operator".
    pub role: Option<String>,
    pub city: Option<String>,
    /// Two-letter state, e.g. "IL".
    pub state: Option<String>,
    /// Only workers of these statuses. Default: all but on_assignment and
    /// do_not_use (unless `filter` names status).
    pub status_any: Option<Vec<crate::domain::workers::WorkerStatus>>,
    /// Living within a distance of a city or a point, e.g.
    /// {"city": "Joliet", "state": "IL", "miles": 25}.
    pub near: Option<crate::domain::matrix::Near>,
    /// More conditions in the filter language.
    pub filter: Option<Map<String, Value>>,
    /// Fields whose values to count over the matching workers, e.g.
    /// ["role", "city", "shift"]: at most 8.
    pub facets: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRecording {
    /// As record_placement answered it.
    pub recording_id: String,
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
    /// What came of it: good (default), placed, declined or no_show — the
    /// last two rank the workers lower in later searches.
    pub outcome: Option<crate::domain::matrix::Outcome>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The question, e.g. "who can cover a forklift shift in Joliet tomorrow?".
    pub question: String,
    /// `workers` (default) or `index:<name>`.
    pub source: Option<String>,
    /// What to retrieve by (default: the question).
    pub query: Option<String>,
    /// Records to retrieve, 1 to 50 (default 5).
    pub k: Option<usize>,
    /// Metadata fields that must equal these values, e.g. `{"role": "Forklift Operator"}`.
    pub filter: Option<Map<String, Value>>,
    /// Workers only, with `filter.role`: apply the playbook's boosts.
    #[serde(default)]
    pub use_playbook: bool,
    /// Run the `sms` or `email` validator on the answer.
    pub validate: Option<crate::domain::chat::DraftKind>,
    /// The chat provider's model (default: the configured one).
    pub model: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::chat::{ChatRequest, ContextRequest};
    use crate::domain::datasets::SqlRequest;
    use crate::domain::matrix::{MatrixSearch, PlaybookRecord, WorkerCount, WorkerPatch};
    use crate::domain::vectors::SearchRequest;
    use crate::service::ops::EmbedRequest;

    fn properties(schema: &Value) -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The fields of a use case's request type, as the OpenAPI document
    /// gives them.
    fn request_fields<T: utoipa::PartialSchema>() -> BTreeSet<String> {
        properties(&serde_json::to_value(T::schema()).unwrap())
    }

    fn tool_arguments(name: &str) -> BTreeSet<String> {
        let spec = all().into_iter().find(|t| t.name == name).unwrap();
        properties(&(spec.schema)())
    }

    /// A tool that calls a use case takes every field of its request type,
    /// under the same name unless renamed here, and leaves one out only
    /// for a reason given here: a field added to a request and forgotten
    /// in its tool fails this test.
    #[test]
    fn every_request_field_is_an_argument_of_its_tool() {
        struct Case {
            tool: &'static str,
            fields: BTreeSet<String>,
            renamed: &'static [(&'static str, &'static str)],
            /// Left out, each for a reason.
            omitted: &'static [&'static str],
        }
        let cases = [
            Case {
                tool: "search_workers",
                fields: request_fields::<MatrixSearch>(),
                renamed: &[],
                omitted: &[],
            },
            Case {
                tool: "search_vectors",
                fields: request_fields::<SearchRequest>(),
                renamed: &[],
                // An agent searches by words, which the service embeds; a
                // raw vector is for programs (POST …/search).
                omitted: &["vector", "include_ids"],
            },
            Case {
                tool: "count_workers",
                fields: request_fields::<WorkerCount>(),
                renamed: &[],
                omitted: &[],
            },
            Case {
                // The worker's id is the route's path parameter.
                tool: "update_worker",
                fields: request_fields::<WorkerPatch>(),
                renamed: &[],
                omitted: &[],
            },
            Case {
                tool: "record_placement",
                fields: request_fields::<PlaybookRecord>(),
                renamed: &[],
                omitted: &[],
            },
            Case {
                tool: "query_sql",
                fields: request_fields::<SqlRequest>(),
                renamed: &[("limit", "max_rows")],
                omitted: &[],
            },
            Case {
                tool: "embed_text",
                fields: request_fields::<EmbedRequest>(),
                renamed: &[],
                omitted: &[],
            },
            Case {
                tool: "ask",
                fields: request_fields::<ChatRequest>(),
                renamed: &[("messages", "question")],
                // A tool answers whole; the context's fields are the
                // tool's own (the next case).
                omitted: &["stream", "context"],
            },
            Case {
                tool: "ask",
                fields: request_fields::<ContextRequest>(),
                renamed: &[],
                omitted: &[],
            },
        ];
        for case in cases {
            assert!(!case.fields.is_empty(), "{}: no request fields", case.tool);
            let arguments = tool_arguments(case.tool);
            let missing: Vec<&String> = case
                .fields
                .iter()
                .filter(|field| !case.omitted.contains(&field.as_str()))
                .filter(|field| {
                    let name = case
                        .renamed
                        .iter()
                        .find(|(from, _)| from == field)
                        .map_or(field.as_str(), |(_, to)| to);
                    !arguments.contains(name)
                })
                .collect();
            assert!(
                missing.is_empty(),
                "tool {} lacks request fields {missing:?} (it has {arguments:?})",
                case.tool
            );
        }
    }
}
