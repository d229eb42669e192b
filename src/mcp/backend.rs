//! Where a tool's work happens: in this process, through the use cases of
//! [`crate::service`] (`/mcp`), or in a running service, through its HTTP
//! API (`lakehouse mcp --target`, so a data dir never has two writers).
//! Both doors take the same typed requests: the remote one serialises them
//! with serde, so a field added to a request reaches every door. Both
//! answer with the HTTP API's JSON and fail with its code and message.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::chat::ChatRequest;
use crate::domain::datasets::SqlRequest;
use crate::domain::matrix::{MatrixSearch, PlaybookRecord, WorkerCount, WorkerPatch};
use crate::domain::validate::ValidateRequest;
use crate::domain::vectors::SearchRequest;
use crate::service::ops::EmbedRequest;
use crate::service::{self, ApiError, Context};

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
    /// The code and message the HTTP door would answer with.
    fn from(err: ApiError) -> Self {
        let code = err.code();
        let mut message = crate::redact::relative(&err.to_string()).into_owned();
        if code.status().is_server_error() {
            message = crate::redact::paths(&message);
        }
        Self::new(code.as_str(), message)
    }
}

/// One operation a tool performs: a use case and its typed request.
pub enum Op {
    ListDatasets,
    DescribeDataset(String),
    Sql(SqlRequest),
    ListIndexes,
    SearchVectors {
        index: String,
        request: SearchRequest,
    },
    SearchWorkers(MatrixSearch),
    CountWorkers(WorkerCount),
    UpdateWorker {
        id: String,
        patch: WorkerPatch,
    },
    Embed(EmbedRequest),
    Validate(ValidateRequest),
    Record(PlaybookRecord),
    Withdraw(String),
    Ask(ChatRequest),
    Tree,
}

pub enum Backend {
    /// The use cases of this process.
    Local(Context),
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

/// The JSON the HTTP route would answer, as a value. Through the text:
/// `to_value` would widen each `f32` to its exact `f64` (0.1230915 becomes
/// 0.12309149652719498), and the doors would not answer alike.
fn to_value<T: Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_string(value)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The use case of `op`, answered with the JSON its HTTP route answers.
async fn local(context: &Context, op: Op) -> Result<Value, ApiError> {
    match op {
        Op::ListDatasets => {
            let datasets = service::data::list_datasets(context).await?;
            Ok(json!({ "datasets": to_value(&datasets)? }))
        }
        Op::DescribeDataset(name) => {
            to_value(&service::data::describe_dataset(context, &name).await?)
        }
        Op::Sql(request) => to_value(&service::data::sql(context, request).await?),
        Op::ListIndexes => {
            let indexes = service::vectors::list_indexes(context).await?;
            Ok(json!({ "indexes": to_value(&indexes)? }))
        }
        Op::SearchVectors { index, request } => {
            to_value(&service::vectors::search_with_facets(context, &index, request).await?)
        }
        Op::SearchWorkers(request) => {
            to_value(&service::matrix::search_workers(context, request).await?)
        }
        Op::CountWorkers(request) => {
            to_value(&service::matrix::count_workers(context, request).await?)
        }
        Op::UpdateWorker { id, patch } => {
            to_value(&service::matrix::update_worker(context, id, patch).await?)
        }
        Op::Embed(request) => to_value(&service::ops::embed(context, request).await?),
        Op::Validate(request) => to_value(&service::ops::validate(context, request).await?),
        Op::Record(request) => {
            to_value(&service::matrix::record_placement(context, request).await?)
        }
        Op::Withdraw(id) => to_value(&service::matrix::withdraw_recording(context, id).await?),
        Op::Ask(request) => to_value(&service::chat::ask(context, request).await?),
        Op::Tree => to_value(&service::ops::supervision_tree(context)),
    }
}

fn body<T: Serialize>(request: &T) -> Result<Option<Value>, ToolError> {
    serde_json::to_value(request)
        .map(Some)
        .map_err(|e| ToolError::new("internal", format!("cannot serialise the request: {e}")))
}

async fn remote(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    op: Op,
) -> Result<Value, ToolError> {
    use reqwest::Method;
    let (method, path, body) = match op {
        Op::ListDatasets => (Method::GET, "/v1/catalog/datasets".to_string(), None),
        Op::DescribeDataset(name) => (
            Method::GET,
            format!("/v1/catalog/datasets/{}", encode(&name)),
            None,
        ),
        Op::Sql(request) => (Method::POST, "/v1/sql".into(), body(&request)?),
        Op::ListIndexes => (Method::GET, "/v1/vectors/index".into(), None),
        Op::SearchVectors { index, request } => (
            Method::POST,
            format!("/v1/vectors/index/{}/search", encode(&index)),
            body(&request)?,
        ),
        Op::SearchWorkers(request) => (Method::POST, "/v1/matrix/search".into(), body(&request)?),
        Op::CountWorkers(request) => (
            Method::POST,
            "/v1/matrix/workers/count".into(),
            body(&request)?,
        ),
        Op::UpdateWorker { id, patch } => (
            Method::PATCH,
            format!("/v1/matrix/workers/{}", encode(&id)),
            body(&patch)?,
        ),
        Op::Embed(request) => (Method::POST, "/v1/embed".into(), body(&request)?),
        Op::Validate(request) => (Method::POST, "/v1/validate".into(), body(&request)?),
        Op::Record(request) => (
            Method::POST,
            "/v1/matrix/playbooks/record".into(),
            body(&request)?,
        ),
        Op::Withdraw(id) => (
            Method::DELETE,
            format!("/v1/matrix/playbooks/recordings/{}", encode(&id)),
            None,
        ),
        Op::Ask(request) => (Method::POST, "/v1/chat".into(), body(&request)?),
        Op::Tree => (Method::GET, "/v1/supervision".into(), None),
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
