//! Chat with retrieval: request and response types, their bounds, the
//! bundle of context a model sees, and the built-in extractive answer.
//! Free of I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::{find_ssns, Verdict};

pub const MAX_MESSAGES: usize = 64;
pub const MAX_MESSAGE_CHARS: usize = 16_000;
pub const MAX_CONTEXT_K: usize = 50;
pub const MAX_MODEL_CHARS: usize = 200;
/// What replaces an SSN-shaped value before any model sees it.
pub const SSN_REDACTED: &str = "[redacted SSN]";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// Where the context comes from and how much of it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextRequest {
    /// `workers` (the matrix: workers and the playbook) or `index:<name>`.
    pub source: String,
    /// What to retrieve by; the last user message when absent.
    pub query: Option<String>,
    #[serde(deserialize_with = "crate::domain::de::integer")]
    #[schema(minimum = 1, maximum = 50)]
    pub k: usize,
    /// Equality on metadata fields, as in a vector search.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Map<String, Value>>,
    /// Workers only: apply the playbook's boosts (needs `filter.role`).
    #[serde(default)]
    pub use_playbook: bool,
}

/// A validator to run on the answer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DraftKind {
    Sms,
    Email,
}

impl DraftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DraftKind::Sms => "sms",
            DraftKind::Email => "email",
        }
    }
}

/// `POST /v1/chat`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    #[serde(deserialize_with = "crate::domain::de::objects")]
    pub messages: Vec<Message>,
    /// The provider's model (default: `chat.ollama.model`).
    pub model: Option<String>,
    /// Answer as `text/event-stream`: `token` events, then `citations`,
    /// then `done`.
    #[serde(default)]
    pub stream: bool,
    #[serde(default, deserialize_with = "crate::domain::de::optional_object")]
    pub context: Option<ContextRequest>,
    /// Run this validator on the answer and return its verdict.
    pub validate: Option<DraftKind>,
}

/// Where the context is retrieved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Workers,
    Index(String),
}

impl Source {
    pub fn parse(source: &str) -> Result<Self, ChatInvalid> {
        match source.strip_prefix("index:") {
            None if source == "workers" => Ok(Source::Workers),
            Some(name) if super::vectors::validate_name(name).is_ok() => {
                Ok(Source::Index(name.to_string()))
            }
            _ => Err(ChatInvalid::Source(source.to_string())),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Source::Workers => "workers".into(),
            Source::Index(name) => format!("index:{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatInvalid {
    #[error("messages: {0}")]
    Messages(String),
    #[error("context.source '{0}' is neither 'workers' nor 'index:<name>'")]
    Source(String),
    #[error("context.k must be between 1 and {MAX_CONTEXT_K}, got {0}")]
    K(usize),
    #[error("context.query: {0}")]
    Query(super::matrix::MatrixInvalid),
    #[error("context.use_playbook needs context.filter.role (recordings are per role)")]
    PlaybookWithoutRole,
    #[error("model: must be 1 to {MAX_MODEL_CHARS} characters without control characters")]
    Model,
}

impl ChatRequest {
    /// Bounds that need no actor: message count, sizes, roles, context.
    pub fn check(&self) -> Result<(), ChatInvalid> {
        if self.messages.is_empty() {
            return Err(ChatInvalid::Messages("at least one message".into()));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(ChatInvalid::Messages(format!(
                "at most {MAX_MESSAGES}, got {}",
                self.messages.len()
            )));
        }
        for (i, message) in self.messages.iter().enumerate() {
            let chars = message.content.chars().count();
            if chars > MAX_MESSAGE_CHARS {
                return Err(ChatInvalid::Messages(format!(
                    "message {i} has {chars} characters, at most {MAX_MESSAGE_CHARS}"
                )));
            }
        }
        if self.question().is_none() {
            return Err(ChatInvalid::Messages(
                "at least one user message must say something".into(),
            ));
        }
        if let Some(model) = &self.model {
            if model.trim().is_empty()
                || model.chars().count() > MAX_MODEL_CHARS
                || model.chars().any(char::is_control)
            {
                return Err(ChatInvalid::Model);
            }
        }
        if let Some(context) = &self.context {
            let source = Source::parse(&context.source)?;
            if !(1..=MAX_CONTEXT_K).contains(&context.k) {
                return Err(ChatInvalid::K(context.k));
            }
            if let Some(query) = &context.query {
                super::matrix::check_query(query).map_err(ChatInvalid::Query)?;
            }
            let has_role = context
                .filter
                .as_ref()
                .is_some_and(|f| f.get("role").is_some_and(Value::is_string));
            if context.use_playbook && (source != Source::Workers || !has_role) {
                return Err(ChatInvalid::PlaybookWithoutRole);
            }
        }
        Ok(())
    }

    /// The question: the last user message that says something. A chat
    /// may go on after it (an assistant's prefilled start of the answer).
    pub fn question(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User && !m.content.trim().is_empty())
            .map(|m| m.content.as_str())
    }

    /// What the context is retrieved by: `context.query`, else the
    /// question (cut to the query limit).
    pub fn retrieval_query(&self) -> String {
        let query = self.context.as_ref().and_then(|c| c.query.clone());
        query.unwrap_or_else(|| {
            let question = self.question().unwrap_or("");
            question
                .chars()
                .take(super::matrix::MAX_QUERY_CHARS)
                .collect()
        })
    }
}

/// One retrieved record, cited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Citation {
    /// `workers` or `index:<name>`.
    pub source: String,
    pub id: String,
    /// The Lance version of the index the record was read from: the same
    /// retrieval can be rebuilt from it (time travel).
    pub lance_version: u64,
    pub distance: f32,
}

/// A retrieved record and what a model may see of it.
#[derive(Debug, Clone)]
pub struct Record {
    pub citation: Citation,
    /// The metadata, with SSN-shaped values redacted.
    pub metadata: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_ms: u64,
}

/// `POST /v1/chat` reply when not streamed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChatResponse {
    pub provider: String,
    pub model: String,
    pub message: Message,
    pub citations: Vec<Citation>,
    pub usage: Usage,
    /// The verdict of `validate` on the answer, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// Replaces every SSN-shaped value in `text`; returns how many.
pub fn redact_ssns(text: &str) -> (String, usize) {
    let found = find_ssns(text);
    let mut out = text.to_string();
    for ssn in &found {
        out = out.replace(ssn.as_str(), SSN_REDACTED);
    }
    (out, found.len())
}

/// Redacts SSN-shaped values in every string of `value`; returns how many.
pub fn redact_value(value: &mut Value) -> usize {
    match value {
        Value::String(text) => {
            let (redacted, n) = redact_ssns(text);
            if n > 0 {
                *text = redacted;
            }
            n
        }
        // A nine-digit integer is as much an SSN as the same digits in a string.
        Value::Number(n) if n.is_u64() && !find_ssns(&n.to_string()).is_empty() => {
            *value = Value::String(SSN_REDACTED.to_string());
            1
        }
        Value::Array(items) => items.iter_mut().map(redact_value).sum(),
        Value::Object(map) => map.values_mut().map(redact_value).sum(),
        _ => 0,
    }
}

/// How a record reads in a prompt and in the extractive answer: its id,
/// then its scalar fields in a fixed order (`name`, `role`, `city`,
/// `state`, `phone` first, then the rest alphabetically).
pub fn describe(record: &Record) -> String {
    const FIRST: [&str; 5] = ["name", "role", "city", "state", "phone"];
    let mut parts = Vec::new();
    if let Value::Object(map) = &record.metadata {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by_key(|k| (FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()), *k));
        for key in keys {
            let text = match &map[key] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .or_else(|| v.as_number().map(|n| n.to_string()))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => continue,
            };
            parts.push(format!("{key}: {text}"));
        }
    }
    format!("[{}] {}", record.citation.id, parts.join("; "))
}

/// The system message that carries the context, cut to `max_chars`
/// (whole records only).
pub fn context_message(records: &[Record], max_chars: usize) -> (String, usize) {
    let mut text = String::from(
        "Answer the coordinator's question using only these records. \
         Cite records by their [id]. If they do not answer it, say so.\n\nRecords:\n",
    );
    let mut used = 0;
    for record in records {
        let line = describe(record);
        if text.len() + line.len() + 1 > max_chars && used > 0 {
            break;
        }
        text.push_str(&line);
        text.push('\n');
        used += 1;
    }
    (text, used)
}

/// The built-in provider's answer: deterministic, from the records alone,
/// and saying what it is.
pub fn extractive_answer(question: &str, records: &[Record]) -> String {
    let question: String = question.split_whitespace().collect::<Vec<_>>().join(" ");
    if records.is_empty() {
        return format!(
            "Extractive answer (no language model): no records matched \"{question}\"."
        );
    }
    let mut answer = format!(
        "Extractive answer (no language model): the {} closest record{} for \"{question}\":\n",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    );
    for (i, record) in records.iter().enumerate() {
        answer.push_str(&format!("{}. {}\n", i + 1, describe(record)));
    }
    answer
}

/// A rough token count (about four characters a token) for providers that
/// report none.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// `POST /v1/replay`: one retrieve → bundle → chat → validate run, logged.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub query: String,
    /// Restricts the workers retrieved to this role (and lets the playbook apply).
    pub role: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 1, maximum = 50)]
    pub k: Option<usize>,
    pub model: Option<String>,
    pub validate: Option<DraftKind>,
}

impl ReplayRequest {
    /// The chat this run makes.
    pub fn to_chat(&self, default_k: usize) -> ChatRequest {
        let filter = self.role.as_ref().map(|role| {
            let mut filter = Map::new();
            filter.insert("role".into(), Value::String(role.clone()));
            filter
        });
        ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: self.query.clone(),
            }],
            model: self.model.clone(),
            stream: false,
            context: Some(ContextRequest {
                source: "workers".into(),
                query: Some(self.query.clone()),
                k: self.k.unwrap_or(default_k),
                filter,
                use_playbook: self.role.is_some(),
            }),
            validate: self.validate,
        }
    }
}

/// One logged run (`replay_runs`, schema `replay_run.v1`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayRun {
    pub run_id: String,
    pub schema: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub query: String,
    pub role: Option<String>,
    pub k: usize,
    pub provider: String,
    pub model: String,
    pub citations: Vec<Citation>,
    /// The Lance version of each index the retrieval read (including the
    /// playbook's, when it applied).
    pub versions: std::collections::BTreeMap<String, u64>,
    pub prompt: String,
    pub answer: String,
    pub validate: Option<DraftKind>,
    pub verdict: Option<Verdict>,
    pub retrieve_ms: u64,
    pub chat_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub const REPLAY_SCHEMA: &str = "replay_run.v1";

/// What a rerun found, against the cited versions and against now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RerunReport {
    pub run_id: String,
    pub original: RerunSide,
    /// The retrieval rebuilt from the versions the run cited.
    pub pinned: RerunSide,
    /// The retrieval and answer as of now.
    pub current: RerunSide,
    /// `pinned` retrieved exactly what the run did.
    pub pinned_reproduces: bool,
    pub changes: Changes,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RerunSide {
    pub ids: Vec<String>,
    pub versions: std::collections::BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// Original → now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Changes {
    pub added_ids: Vec<String>,
    pub removed_ids: Vec<String>,
    /// Same ids, another order.
    pub reordered: bool,
    pub answer_changed: bool,
    pub verdict_changed: bool,
}

impl Changes {
    pub fn between(original: &RerunSide, current: &RerunSide) -> Self {
        let added_ids: Vec<String> = current
            .ids
            .iter()
            .filter(|id| !original.ids.contains(id))
            .cloned()
            .collect();
        let removed_ids: Vec<String> = original
            .ids
            .iter()
            .filter(|id| !current.ids.contains(id))
            .cloned()
            .collect();
        let reordered =
            added_ids.is_empty() && removed_ids.is_empty() && original.ids != current.ids;
        Self {
            added_ids,
            removed_ids,
            reordered,
            answer_changed: original.answer != current.answer,
            verdict_changed: original.verdict != current.verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, metadata: Value) -> Record {
        Record {
            citation: Citation {
                source: "workers".into(),
                id: id.into(),
                lance_version: 3,
                distance: 0.1,
            },
            metadata,
        }
    }

    #[test]
    fn ssns_are_redacted_and_phones_kept() {
        let mut value =
            json!({"notes": "SSN 123-45-6789, call 555-123-4567", "tags": ["987654321"]});
        assert_eq!(redact_value(&mut value), 2);
        let text = value.to_string();
        assert!(
            !text.contains("123-45-6789") && !text.contains("987654321"),
            "{text}"
        );
        assert!(text.contains("555-123-4567"), "{text}");
    }

    #[test]
    fn the_extractive_answer_says_what_it_is_and_lists_the_records() {
        let records = [
            record(
                "W1",
                json!({"name": "Ana", "role": "Forklift Operator", "city": "Joliet"}),
            ),
            record("W2", json!({"role": "Forklift Operator", "name": "Ben"})),
        ];
        let answer = extractive_answer("forklift  in Joliet", &records);
        assert!(answer.starts_with("Extractive answer (no language model)"));
        assert!(answer.contains("1. [W1] name: Ana; role: Forklift Operator; city: Joliet"));
        assert!(answer.contains("2. [W2] name: Ben; role: Forklift Operator"));
        assert_eq!(answer, extractive_answer("forklift in Joliet", &records));
    }

    #[test]
    fn requests_are_bounded() {
        let ok: ChatRequest = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": "who drives forklifts?"}],
            "context": {"source": "workers", "k": 5, "filter": {"role": "Forklift Operator"}, "use_playbook": true}
        }))
        .unwrap();
        assert!(ok.check().is_ok());
        assert_eq!(ok.retrieval_query(), "who drives forklifts?");
        let bad = |patch: Value| {
            let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut()
                .unwrap()
                .extend(patch.as_object().unwrap().clone());
            serde_json::from_value::<ChatRequest>(body)
                .unwrap()
                .check()
                .unwrap_err()
        };
        assert!(matches!(
            bad(json!({"messages": []})),
            ChatInvalid::Messages(_)
        ));
        assert!(matches!(
            bad(json!({"messages": [{"role": "assistant", "content": "hi"}]})),
            ChatInvalid::Messages(_)
        ));
        assert!(matches!(
            bad(json!({"context": {"source": "nope", "k": 1}})),
            ChatInvalid::Source(_)
        ));
        assert!(matches!(
            bad(json!({"context": {"source": "workers", "k": 0}})),
            ChatInvalid::K(0)
        ));
        assert!(matches!(
            bad(json!({"context": {"source": "index:docs", "k": 3, "use_playbook": true}})),
            ChatInvalid::PlaybookWithoutRole
        ));
        assert!(matches!(bad(json!({"model": ""})), ChatInvalid::Model));
    }

    #[test]
    fn the_context_keeps_whole_records_within_its_budget() {
        let records: Vec<Record> = (0..10)
            .map(|i| record(&format!("W{i}"), json!({"name": "x".repeat(50)})))
            .collect();
        let (text, used) = context_message(&records, 400);
        assert!(used >= 1 && used < 10, "{used}");
        assert!(text.len() <= 400 || used == 1);
        assert!(text.contains("[W0]"));
    }

    #[test]
    fn changes_name_what_was_added_and_removed() {
        let side = |ids: &[&str], answer: &str| RerunSide {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            versions: Default::default(),
            answer: Some(answer.into()),
            verdict: None,
        };
        let changes = Changes::between(&side(&["a", "b"], "x"), &side(&["c", "a"], "y"));
        assert_eq!(changes.added_ids, ["c"]);
        assert_eq!(changes.removed_ids, ["b"]);
        assert!(!changes.reordered && changes.answer_changed && !changes.verdict_changed);
        assert!(Changes::between(&side(&["a", "b"], "x"), &side(&["b", "a"], "x")).reordered);
    }
}
