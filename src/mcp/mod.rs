//! The MCP server (rmcp): AI agents use Lakehouse through the Model
//! Context Protocol.
//!
//! - Streamable HTTP under `/mcp`, served by the actix edge: tools talk to
//!   the actors directly; the bearer token's role gates them.
//! - stdio: `lakehouse mcp --target URL` speaks MCP on stdin/stdout and
//!   calls a running service's HTTP API (it never opens a data dir).
//!
//! [`tools`] lists the tools and their argument types (the JSON Schemas
//! come from the types); [`backend`] does the work. A failing tool is an
//! MCP tool error (`isError`) whose text is the HTTP API's `code: message`.

pub mod backend;
pub mod sessions;
pub mod tools;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};

use crate::config::McpSettings;
use crate::domain::auth::Role;
use crate::domain::chat::{ChatRequest, ContextRequest, Message};
use crate::domain::datasets::SqlRequest;
use crate::domain::matrix::{MatrixSearch, PlaybookRecord, WorkerCount, WorkerPatch};
use crate::domain::validate::{FillOrder, ValidateRequest};
use crate::domain::vectors::SearchRequest;
use crate::service::ops::EmbedRequest;
use backend::{Backend, Op, ToolError};
use tools::ToolSpec;

/// The caller of an `/mcp` request, as the front door saw it.
#[derive(Debug, Clone)]
pub struct McpCaller {
    /// `None`: no tokens are configured (a loopback service, open).
    pub role: Option<Role>,
    /// The token's name (`anonymous` without one).
    pub name: String,
}

/// One MCP session's handler. Cheap to clone: the backend is shared.
#[derive(Clone)]
pub struct LakehouseMcp {
    backend: Arc<Backend>,
    settings: McpSettings,
    /// Tokens are configured: a call must carry the role the front door
    /// recorded, and one without any is refused (fail closed).
    requires_role: bool,
}

impl LakehouseMcp {
    pub fn new(backend: Arc<Backend>, settings: McpSettings) -> Self {
        Self {
            backend,
            settings,
            requires_role: false,
        }
    }

    /// Refuse tool calls that carry no role (the `/mcp` service when
    /// tokens are configured).
    pub fn requiring_roles(mut self, required: bool) -> Self {
        self.requires_role = required;
        self
    }

    /// The tools this deployment offers: write tools only when it is not
    /// read-only.
    fn offered(&self) -> Vec<ToolSpec> {
        tools::all()
            .into_iter()
            .filter(|t| t.read_only || !self.settings.read_only)
            .collect()
    }

    /// `caller`: the token's name through `/mcp` (`None` over stdio, where
    /// the service called names its own token).
    async fn run(
        &self,
        name: &str,
        arguments: Value,
        caller: Option<String>,
    ) -> Result<Value, ToolError> {
        let invalid =
            |e: serde_json::Error| ToolError::new("invalid_arguments", format!("{name}: {e}"));
        let op = match name {
            "list_datasets" => {
                let _: tools::NoArguments = serde_json::from_value(arguments).map_err(invalid)?;
                Op::ListDatasets
            }
            "describe_dataset" => {
                let args: tools::DescribeDataset =
                    serde_json::from_value(arguments).map_err(invalid)?;
                Op::DescribeDataset(args.name)
            }
            "query_sql" => {
                let args: tools::QuerySql = serde_json::from_value(arguments).map_err(invalid)?;
                let limit = args
                    .max_rows
                    .unwrap_or(self.settings.max_rows)
                    .clamp(1, self.settings.max_rows);
                Op::Sql(SqlRequest {
                    sql: args.sql,
                    limit: Some(limit),
                })
            }
            "list_indexes" => {
                let _: tools::NoArguments = serde_json::from_value(arguments).map_err(invalid)?;
                Op::ListIndexes
            }
            "search_vectors" => {
                let args: tools::SearchVectors =
                    serde_json::from_value(arguments).map_err(invalid)?;
                Op::SearchVectors {
                    index: args.index,
                    request: SearchRequest {
                        filter: args.filter,
                        exclude_ids: args.exclude_ids,
                        ef_search: args.ef_search,
                        mode: args.mode,
                        keyword_weight: args.keyword_weight,
                        explain: args.explain,
                        facets: args.facets,
                        ..SearchRequest::for_text(args.text, args.k.min(self.settings.max_rows))
                    },
                }
            }
            "search_workers" => {
                let args: tools::SearchWorkers =
                    serde_json::from_value(arguments).map_err(invalid)?;
                Op::SearchWorkers(MatrixSearch {
                    query: args.query,
                    k: args.k.min(self.settings.max_rows),
                    role: args.role,
                    city: args.city,
                    state: args.state,
                    exclude_ids: args.exclude_ids,
                    use_playbook: args.use_playbook,
                    filter: args.filter,
                    min_years: args.min_years,
                    max_rate: args.max_rate,
                    skills_all: args.skills_all,
                    certifications_any: args.certifications_any,
                    available_by: args.available_by,
                    available_between: args.available_between,
                    shift_any: args.shift_any,
                    certifications_valid_on: args.certifications_valid_on,
                    status_any: args.status_any,
                    near: args.near,
                    mode: args.mode,
                    keyword_weight: args.keyword_weight,
                    explain: args.explain,
                    prepared: None,
                })
            }
            "count_workers" => {
                let args: tools::CountWorkers =
                    serde_json::from_value(arguments).map_err(invalid)?;
                Op::CountWorkers(WorkerCount {
                    role: args.role,
                    city: args.city,
                    state: args.state,
                    status_any: args.status_any,
                    near: args.near,
                    filter: args.filter,
                    facets: args.facets,
                })
            }
            "update_worker" => {
                let args: tools::UpdateWorker =
                    serde_json::from_value(arguments).map_err(invalid)?;
                // Checked here, so the stdio door (a URL path) and the
                // local one refuse the same ids alike.
                crate::domain::vectors::validate_id(&args.worker_id, "worker_id")
                    .map_err(|e| ToolError::new("invalid_id", e.to_string()))?;
                if matches!(args.worker_id.as_str(), "." | "..") {
                    return Err(ToolError::new(
                        "invalid_id",
                        "worker_id: '.' and '..' cannot be named in a URL path",
                    ));
                }
                Op::UpdateWorker {
                    id: args.worker_id,
                    patch: WorkerPatch {
                        metadata: args.metadata,
                    },
                }
            }
            "embed_text" => {
                let args: tools::EmbedText = serde_json::from_value(arguments).map_err(invalid)?;
                Op::Embed(EmbedRequest {
                    texts: args.texts,
                    model: args.model,
                })
            }
            "validate_outreach" => {
                let args: tools::ValidateOutreach =
                    serde_json::from_value(arguments).map_err(invalid)?;
                Op::Validate(outreach(args)?)
            }
            "record_placement" => {
                let args: tools::RecordPlacement =
                    serde_json::from_value(arguments).map_err(invalid)?;
                Op::Record(PlaybookRecord {
                    query: args.query,
                    role: args.role,
                    worker_ids: args.worker_ids,
                    score: args.score,
                    outcome: args.outcome,
                    // The stdio door's service sets its own (its token's).
                    recorded_by: caller.clone(),
                })
            }
            "withdraw_recording" => {
                let args: tools::WithdrawRecording =
                    serde_json::from_value(arguments).map_err(invalid)?;
                crate::domain::vectors::validate_id(&args.recording_id, "recording_id")
                    .map_err(|e| ToolError::new("invalid_id", e.to_string()))?;
                if matches!(args.recording_id.as_str(), "." | "..") {
                    return Err(ToolError::new(
                        "invalid_id",
                        "recording_id: '.' and '..' cannot be named in a URL path",
                    ));
                }
                Op::Withdraw(args.recording_id)
            }
            "ask" => {
                let args: tools::Ask = serde_json::from_value(arguments).map_err(invalid)?;
                Op::Ask(ChatRequest {
                    messages: vec![Message {
                        role: crate::domain::chat::Role::User,
                        content: args.question.clone(),
                    }],
                    model: args.model,
                    stream: false,
                    context: Some(ContextRequest {
                        source: args.source.unwrap_or_else(|| "workers".into()),
                        query: args.query,
                        k: args.k.unwrap_or(5),
                        filter: args.filter,
                        use_playbook: args.use_playbook,
                    }),
                    validate: args.validate,
                })
            }
            "supervision_tree" => {
                let _: tools::NoArguments = serde_json::from_value(arguments).map_err(invalid)?;
                Op::Tree
            }
            other => {
                return Err(ToolError::new(
                    "unknown_tool",
                    format!("no tool '{other}'; tools/list names them"),
                ))
            }
        };
        self.backend.run(op).await
    }

    /// Caps a result to `mcp.max_rows` rows per list and `mcp.max_chars`
    /// characters, marking it `truncated`.
    fn cap(&self, mut value: Value) -> Value {
        let mut truncated = false;
        if let Value::Object(map) = &mut value {
            for key in ["rows", "hits", "datasets", "indexes", "vectors"] {
                if let Some(Value::Array(items)) = map.get_mut(key) {
                    if items.len() > self.settings.max_rows {
                        items.truncate(self.settings.max_rows);
                        truncated = true;
                    }
                }
            }
            while value.to_string().len() > self.settings.max_chars {
                let Some(longest) = longest_array(&mut value) else {
                    break;
                };
                let keep = longest.len() / 2;
                longest.truncate(keep);
                truncated = true;
                if keep == 0 {
                    break;
                }
            }
            if value.to_string().len() > self.settings.max_chars {
                // No list left to shorten: the text alone, cut.
                let text: String = value
                    .to_string()
                    .chars()
                    .take(self.settings.max_chars)
                    .collect();
                value = json!({ "text": text });
                truncated = true;
            }
            if truncated {
                if let Value::Object(map) = &mut value {
                    map.insert("truncated".into(), Value::Bool(true));
                }
            }
        }
        value
    }
}

fn longest_array(value: &mut Value) -> Option<&mut Vec<Value>> {
    let Value::Object(map) = value else {
        return None;
    };
    map.values_mut()
        .filter_map(|v| match v {
            Value::Array(items) if !items.is_empty() => Some(items),
            _ => None,
        })
        .max_by_key(|items| items.len())
}

/// The typed request of a `validate_outreach` call.
fn outreach(args: tools::ValidateOutreach) -> Result<ValidateRequest, ToolError> {
    let missing = |field: &str| {
        ToolError::new(
            "invalid_arguments",
            format!("validate_outreach: kind '{:?}' needs '{field}'", args.kind).to_lowercase(),
        )
    };
    let request = match args.kind {
        tools::OutreachKind::Email => ValidateRequest::Email {
            to: args.to.clone().ok_or_else(|| missing("to"))?,
            subject: args.subject.clone().ok_or_else(|| missing("subject"))?,
            body: args.body.clone().ok_or_else(|| missing("body"))?,
        },
        tools::OutreachKind::Sms => ValidateRequest::Sms {
            to: args.to.clone().ok_or_else(|| missing("to"))?,
            body: args.body.clone().ok_or_else(|| missing("body"))?,
        },
        tools::OutreachKind::Fill => {
            let order = args.order.as_ref().ok_or_else(|| missing("order"))?;
            ValidateRequest::Fill {
                order: FillOrder {
                    role: order.role.clone(),
                    city: order.city.clone(),
                    state: order.state.clone(),
                    count: order.count,
                    dates: order.dates.clone(),
                    certifications: order.certifications.clone(),
                },
                worker_ids: args
                    .worker_ids
                    .clone()
                    .ok_or_else(|| missing("worker_ids"))?,
            }
        }
    };
    Ok(request)
}

/// A short text rendering of a result for clients that show text.
fn render(name: &str, value: &Value) -> String {
    let count = |key: &str| value.get(key).and_then(Value::as_array).map(Vec::len);
    let summary = match name {
        "search_workers" => value["hits"].as_array().map(|hits| {
            let lines: Vec<String> = hits
                .iter()
                .map(|h| {
                    let w = &h["worker"];
                    format!(
                        "{} {} — {}, {} {} (distance {:.3}{})",
                        h["worker_id"].as_str().unwrap_or("?"),
                        w["name"].as_str().unwrap_or(""),
                        w["role"].as_str().unwrap_or(""),
                        w["city"].as_str().unwrap_or(""),
                        w["state"].as_str().unwrap_or(""),
                        h["distance"].as_f64().unwrap_or(0.0),
                        if h["boosted"] == true {
                            ", boosted"
                        } else {
                            ""
                        },
                    )
                })
                .collect();
            format!("{} workers:\n{}", lines.len(), lines.join("\n"))
        }),
        "ask" => value["message"]["content"].as_str().map(str::to_string),
        "query_sql" => value["row_count"]
            .as_u64()
            .map(|n| format!("{n} rows; columns: {}", value["columns"])),
        _ => ["hits", "datasets", "indexes", "vectors"]
            .iter()
            .find_map(|k| count(k).map(|n| format!("{n} {k}"))),
    };
    let mut text = summary.unwrap_or_default();
    let json = value.to_string();
    if text.is_empty() {
        text = json;
    } else if text.len() + json.len() < 4000 {
        text = format!("{text}\n{json}");
    }
    text
}

fn tool_of(spec: &ToolSpec) -> Tool {
    let schema = match (spec.schema)() {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(spec.name, spec.description, Arc::new(schema)).with_annotations(
        ToolAnnotations::new()
            .read_only(spec.read_only)
            .destructive(spec.destructive)
            .idempotent(spec.read_only),
    )
}

/// The caller's role, as the `/mcp` route's front door recorded it; the
/// stdio server has none (the service it calls checks its token).
fn caller_role(context: &RequestContext<RoleServer>) -> Option<Option<Role>> {
    rmcp_actix_web::transport::on_request_extensions(&context.extensions)
        .and_then(|e| e.get::<McpCaller>())
        .map(|c| c.role)
}

/// The caller's token name, as the `/mcp` route's front door recorded it.
fn caller_name(context: &RequestContext<RoleServer>) -> Option<String> {
    rmcp_actix_web::transport::on_request_extensions(&context.extensions)
        .and_then(|e| e.get::<McpCaller>())
        .map(|c| c.name.clone())
}

impl ServerHandler for LakehouseMcp {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lakehouse", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Lakehouse: staffing analytics. search_workers finds workers for a need; \
                 ask answers questions with citations; query_sql reads the datasets; \
                 validate_outreach checks a drafted SMS or e-mail before it is sent.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            self.offered().iter().map(tool_of).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let Some(spec) = self.offered().into_iter().find(|t| t.name == name) else {
            let error = ToolError::new(
                "unknown_tool",
                if tools::all().iter().any(|t| t.name == name) {
                    format!("tool '{name}' writes, and this deployment is read-only (mcp.read_only = true)")
                } else {
                    format!("no tool '{name}'; tools/list names them")
                },
            );
            return Ok(failure(&error).into());
        };
        let role = caller_role(&context).flatten();
        if self.requires_role && role.is_none() {
            let refused = ToolError::new(
                "unauthorized",
                format!(
                    "tool '{name}' needs a bearer token with the '{}' role",
                    spec.role
                ),
            );
            return Ok(failure(&refused).into());
        }
        if let Some(role) = role {
            if role < spec.role {
                let refused = ToolError::new(
                    "forbidden",
                    format!(
                        "tool '{name}' needs the '{}' role; this token has '{role}'",
                        spec.role
                    ),
                );
                return Ok(failure(&refused).into());
            }
        }
        let arguments = Value::Object(request.arguments.unwrap_or_else(Map::new));
        let started = std::time::Instant::now();
        let caller = caller_name(&context);
        let outcome = self.run(&name, arguments, caller).await;
        tracing::info!(
            tool = %name,
            ok = outcome.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mcp tool call"
        );
        Ok(match outcome {
            Ok(value) => {
                let value = self.cap(value);
                let mut result = CallToolResult::structured(value.clone());
                result.content = vec![ContentBlock::text(render(&name, &value))];
                result
            }
            Err(error) => failure(&error),
        }
        .into())
    }
}

/// An MCP tool error carrying the HTTP API's code and message.
fn failure(error: &ToolError) -> CallToolResult {
    let mut result = CallToolResult::structured_error(json!({
        "error": {"code": error.code, "message": error.message}
    }));
    result.content = vec![ContentBlock::text(format!(
        "{}: {}",
        error.code, error.message
    ))];
    result
}
