//! Where a tool's work happens: in this process, through the actors'
//! mailboxes (`/mcp`), or in a running service, through its HTTP API
//! (`lakehouse mcp --target`, so a data dir never has two writers).
//! Both answer with the HTTP API's JSON and fail with its code and message.

use std::time::Duration;

use serde_json::{json, Value};

use crate::actors::catalog::{self, CatalogMessage};
use crate::actors::embed::{self, EmbedMessage};
use crate::actors::matrix::{self, MatrixMessage};
use crate::actors::query::{self, QueryMessage};
use crate::actors::validate::{self, ValidateMessage};
use crate::actors::vectors::catalog::{self as vector_catalog, VectorCatalogMessage};
use crate::actors::vectors::index::IndexMessage;
use crate::domain::chat::ChatRequest;
use crate::domain::matrix::{MatrixSearch, PlaybookRecord};
use crate::domain::validate::ValidateRequest;
use crate::domain::vectors::SearchRequest;
use crate::http::error::ApiError;
use crate::http::ApiContext;
use crate::supervision::ChildStatus;

/// A failure as the HTTP API reports it: `code: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: String,
    pub message: String,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<ApiError> for ToolError {
    fn from(err: ApiError) -> Self {
        let (status, code) = err.status_and_code();
        let mut message = err.to_string();
        if status.is_server_error() {
            message = crate::http::error::redact_paths(&message);
        }
        Self::new(code, message)
    }
}

/// One operation a tool performs.
pub enum Op {
    ListDatasets,
    DescribeDataset(String),
    Sql {
        sql: String,
        limit: usize,
    },
    ListIndexes,
    SearchVectors {
        index: String,
        request: SearchRequest,
    },
    SearchWorkers(MatrixSearch),
    Embed(Vec<String>),
    Validate(ValidateRequest, Value),
    Record(PlaybookRecord),
    Ask(ChatRequest),
    Tree,
}

pub enum Backend {
    /// The actors of this process.
    Local(ApiContext),
    /// A running service's HTTP API.
    Remote {
        client: reqwest::Client,
        base: String,
        token: Option<String>,
    },
}

impl Backend {
    pub fn remote(target: &str, token: Option<String>, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Backend::Remote {
            client,
            base: target.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub async fn run(&self, op: Op) -> Result<Value, ToolError> {
        match self {
            Backend::Local(context) => local(context, op).await.map_err(ToolError::from),
            Backend::Remote {
                client,
                base,
                token,
            } => remote(client, base, token.as_deref(), op).await,
        }
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(e.to_string()))
}

async fn local(context: &ApiContext, op: Op) -> Result<Value, ApiError> {
    match op {
        Op::ListDatasets => {
            let datasets = context
                .call(catalog::NAME, |reply| CatalogMessage::List { reply })
                .await?;
            Ok(json!({ "datasets": to_value(&datasets)? }))
        }
        Op::DescribeDataset(name) => {
            let target = name.clone();
            let manifest = context
                .call(catalog::NAME, |reply| CatalogMessage::Get {
                    name: target,
                    reply,
                })
                .await?
                .ok_or(ApiError::DatasetNotFound(name))?;
            to_value(&manifest)
        }
        Op::Sql { sql, limit } => {
            let request = crate::domain::datasets::SqlRequest {
                sql,
                limit: Some(limit),
            };
            let timeout =
                Duration::from_millis(context.settings.query.timeout_ms) + Duration::from_secs(1);
            let result = context
                .call_with(
                    query::NAME,
                    |reply| QueryMessage::Sql { request, reply },
                    timeout,
                )
                .await??;
            to_value(&result)
        }
        Op::ListIndexes => {
            let indexes = context
                .call(vector_catalog::NAME, |reply| VectorCatalogMessage::List {
                    reply,
                })
                .await?;
            Ok(json!({ "indexes": to_value(&indexes)? }))
        }
        Op::SearchVectors { index, request } => {
            crate::http::limits::check_filter(context, request.filter.as_ref())?;
            // The same loading / failed / missing answers as the HTTP route.
            let hits = crate::http::vectors::call_index(context, &index, |reply| {
                IndexMessage::Search { request, reply }
            })
            .await??;
            Ok(json!({ "hits": to_value(&hits)? }))
        }
        Op::SearchWorkers(request) => {
            crate::http::limits::check_ids(context, "exclude_ids", request.exclude_ids.as_deref())?;
            crate::http::limits::check_filter(context, request.filter.as_ref())?;
            let results = context
                .call(matrix::NAME, |reply| MatrixMessage::Search {
                    request,
                    reply,
                })
                .await??;
            to_value(&results)
        }
        Op::Embed(texts) => {
            let embedded = context
                .call(embed::NAME, |reply| EmbedMessage::Embed {
                    texts,
                    model: None,
                    reply,
                })
                .await??;
            to_value(&embedded)
        }
        Op::Validate(request, _) => {
            let verdict = context
                .call(validate::NAME, |reply| ValidateMessage::Validate {
                    request,
                    reply,
                })
                .await??;
            to_value(&verdict)
        }
        Op::Record(request) => {
            crate::http::limits::check_ids(context, "worker_ids", Some(&request.worker_ids))?;
            let recorded = context
                .call(matrix::NAME, |reply| MatrixMessage::Record {
                    request,
                    reply,
                })
                .await??;
            to_value(&recorded)
        }
        Op::Ask(request) => to_value(&crate::http::chat::ask(context, request).await?),
        Op::Tree => to_value(&context.board.view("root", ChildStatus::Running)),
    }
}

async fn remote(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    op: Op,
) -> Result<Value, ToolError> {
    let (method, path, body) = match op {
        Op::ListDatasets => (
            reqwest::Method::GET,
            "/v1/catalog/datasets".to_string(),
            None,
        ),
        Op::DescribeDataset(name) => (
            reqwest::Method::GET,
            format!("/v1/catalog/datasets/{}", encode(&name)),
            None,
        ),
        Op::Sql { sql, limit } => (
            reqwest::Method::POST,
            "/v1/sql".into(),
            Some(json!({"sql": sql, "limit": limit})),
        ),
        Op::ListIndexes => (reqwest::Method::GET, "/v1/vectors/index".into(), None),
        Op::SearchVectors { index, request } => (
            reqwest::Method::POST,
            format!("/v1/vectors/index/{}/search", encode(&index)),
            Some(json!({"text": request.text, "k": request.k, "filter": request.filter})),
        ),
        Op::SearchWorkers(request) => (
            reqwest::Method::POST,
            "/v1/matrix/search".into(),
            Some(json!({
                "query": request.query, "k": request.k, "role": request.role,
                "city": request.city, "state": request.state,
                "exclude_ids": request.exclude_ids, "use_playbook": request.use_playbook,
                "filter": request.filter,
                "min_years": request.min_years, "max_rate": request.max_rate,
                "skills_all": request.skills_all,
                "certifications_any": request.certifications_any,
                "available_by": request.available_by,
            })),
        ),
        Op::Embed(texts) => (
            reqwest::Method::POST,
            "/v1/embed".into(),
            Some(json!({ "texts": texts })),
        ),
        Op::Validate(_, body) => (reqwest::Method::POST, "/v1/validate".into(), Some(body)),
        Op::Record(request) => (
            reqwest::Method::POST,
            "/v1/matrix/playbooks/record".into(),
            Some(json!({
                "query": request.query, "role": request.role,
                "worker_ids": request.worker_ids, "score": request.score,
            })),
        ),
        Op::Ask(request) => (
            reqwest::Method::POST,
            "/v1/chat".into(),
            Some(crate::mcp::ask_body(&request)),
        ),
        Op::Tree => (reqwest::Method::GET, "/v1/supervision".into(), None),
    };
    let validate = path == "/v1/validate";
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        ToolError::new(
            "service_unreachable",
            format!("cannot reach the Lakehouse service at {base}: {e}"),
        )
    })?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| {
        ToolError::new(
            "bad_response",
            format!("the service at {base} answered {status} without JSON: {e}"),
        )
    })?;
    // A verdict that finds problems is the validator's answer, not a failure.
    if status.is_success() || (validate && body.get("valid").is_some()) {
        return Ok(body);
    }
    Err(ToolError::new(
        body["error"]["code"].as_str().unwrap_or("error"),
        body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the service answered {status}"), str::to_string),
    ))
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
