//! The `query` actor: read-only SQL (DataFusion) over every catalogued
//! Lance dataset.
//!
//! Each query runs with a fresh `SessionContext` in which every dataset is
//! registered at its latest committed version (a Lance table provider pins
//! a version, so registering per query is what makes queries see the
//! newest data). Only `SELECT`, `WITH … SELECT` and `EXPLAIN` of those are
//! accepted — checked on the parse, and again by DataFusion's `SQLOptions`
//! (no DDL, no DML, no statements).
//!
//! No query can take the process down or hold it:
//! - **Text and depth.** At most `query.max_sql_bytes` of SQL
//!   (`sql_too_long`), and expressions nested at most
//!   `query.max_expression_depth` deep ([`depth`], `sql_too_deep`),
//!   checked on the tokens before any tree is built.
//! - **Its own runtime.** Queries run on a runtime of their own (threads
//!   with 64 MiB stacks, apart from the actors' threads, half the cores
//!   by default), so queries using all of it for their time limit leave
//!   the searches and commits the other half, and
//!   DataFusion's recursion (its `recursive_protection`, on) has room.
//! - **Memory.** At most `query.max_concurrent` queries run at once (more
//!   get `503 too_many_queries` at once); together they share one memory
//!   pool of `query.memory_limit_bytes` and nothing spills to disk, so a
//!   query that needs more fails with `query_memory_exceeded`. Functions
//!   that build values outside the pool are capped ([`functions`]).
//! - **Time and cancellation.** `query.timeout_ms`, then 504; a query
//!   whose caller went away (the HTTP client disconnected) is cancelled.
//! - **The answer.** At most `query.max_rows` rows and
//!   `query.max_result_bytes` bytes of them; past either the answer is cut
//!   off and says so (`truncated`, `truncated_by`).

pub mod depth;
pub mod functions;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use lance::datafusion::LanceTableProvider;
use lance::deps::arrow_array::{Array, ArrayRef, RecordBatch};
use lance::deps::datafusion::arrow::array::AsArray;
use lance::deps::datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use lance::deps::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use lance::deps::datafusion::error::DataFusionError;
use lance::deps::datafusion::execution::context::SQLOptions;
use lance::deps::datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use lance::deps::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use lance::deps::datafusion::prelude::{SessionConfig, SessionContext};
use lance::deps::datafusion::sql::parser::{DFParser, Statement};
use lance::deps::datafusion::sql::sqlparser::ast::{SetExpr, Statement as SqlStatement};
use lance::Dataset;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Number, Value};

use crate::actors::catalog::{self, CatalogMessage};
use crate::codes::{ErrorCode, HasCode};
use crate::config::QuerySettings;
use crate::domain::datasets::{SqlColumn, SqlRequest, SqlResult};
use crate::supervision::{CallError, Directory, Fault};

pub const NAME: &str = "query";

/// Stack of each query thread: deep plans recurse, and DataFusion's
/// recursion protection grows the stack on the heap only past what a
/// thread already has.
const QUERY_STACK_BYTES: usize = 64 << 20;

/// How often a running query checks that its caller still waits.
const CALLER_CHECK: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("only read-only queries (SELECT, WITH … SELECT, EXPLAIN) are allowed: {0}")]
    ReadOnly(String),
    #[error("{0}")]
    Sql(String),
    #[error("the SQL text has {got} bytes; at most {max} are allowed (query.max_sql_bytes)")]
    TooLong { max: usize, got: usize },
    #[error("an expression nests {got} deep; at most {max} is allowed (query.max_expression_depth): split it, or use IN (…) for long lists")]
    TooDeep { max: usize, got: usize },
    #[error("limit must be between 1 and {max}, got {got}")]
    InvalidLimit { max: usize, got: usize },
    #[error("the query did not finish within {0} ms")]
    Timeout(u64),
    #[error("the query needs more memory than query.memory_limit_bytes ({limit} bytes) allows: {detail}")]
    MemoryExceeded { limit: usize, detail: String },
    #[error("{0}")]
    FunctionOutputTooLarge(String),
    #[error("{running} queries are running (query.max_concurrent); retry shortly")]
    Busy { running: usize },
    #[error("the caller went away; the query was cancelled")]
    Cancelled,
    #[error("the query failed inside: {0}")]
    Internal(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Catalog(#[from] CallError),
}

impl HasCode for QueryError {
    fn code(&self) -> ErrorCode {
        match self {
            QueryError::ReadOnly(_) => ErrorCode::ReadOnly,
            QueryError::Sql(_) => ErrorCode::SqlError,
            QueryError::TooLong { .. } => ErrorCode::SqlTooLong,
            QueryError::TooDeep { .. } => ErrorCode::SqlTooDeep,
            QueryError::FunctionOutputTooLarge(_) => ErrorCode::FunctionOutputTooLarge,
            QueryError::Cancelled => ErrorCode::Cancelled,
            QueryError::Internal(_) => ErrorCode::Internal,
            QueryError::InvalidLimit { .. } => ErrorCode::InvalidLimit,
            QueryError::Timeout(_) => ErrorCode::QueryTimeout,
            QueryError::MemoryExceeded { .. } => ErrorCode::QueryMemoryExceeded,
            QueryError::Busy { .. } => ErrorCode::TooManyQueries,
            QueryError::Storage(_) => ErrorCode::StorageError,
            QueryError::Catalog(err) => err.code(),
        }
    }
}

pub enum QueryMessage {
    Sql {
        request: SqlRequest,
        reply: RpcReplyPort<Result<SqlResult, QueryError>>,
    },
    Fault(Fault),
}

impl From<Fault> for QueryMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

pub struct QueryActor;

pub struct QueryArguments {
    pub settings: QuerySettings,
    pub directory: Directory,
    pub call_timeout: Duration,
    /// Where the datasets live (the catalog's URIs are relative to it).
    pub data_dir: PathBuf,
}

/// What every query task shares.
pub struct QueryState {
    arguments: QueryArguments,
    /// The memory pool of every query, and no disk to spill to.
    runtime: Arc<RuntimeEnv>,
    /// One permit per query that may run at once.
    permits: Arc<tokio::sync::Semaphore>,
}

/// The runtime every query runs on: one per process (it outlives the
/// actor's incarnations, and a runtime cannot be dropped from async code),
/// sized by the first settings that ask for it.
fn query_runtime(threads: usize) -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Half the cores by default: a burst of heavy queries must leave
        // the searches the rest (on 2 cores: one thread).
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads.max(2))
            .thread_stack_size(QUERY_STACK_BYTES)
            .thread_name("lakehouse-sql")
            .enable_all()
            .build()
            .expect("the query runtime starts")
    })
}

impl Actor for QueryActor {
    type Msg = QueryMessage;
    type State = Arc<QueryState>;
    type Arguments = QueryArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: QueryArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(args.settings.memory_limit_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let permits = Arc::new(tokio::sync::Semaphore::new(args.settings.max_concurrent));
        query_runtime(args.settings.threads);
        Ok(Arc::new(QueryState {
            arguments: args,
            runtime,
            permits,
        }))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            QueryMessage::Sql { request, reply } => {
                let settings = &state.arguments.settings;
                if request.sql.len() > settings.max_sql_bytes {
                    let _ = reply.send(Err(QueryError::TooLong {
                        max: settings.max_sql_bytes,
                        got: request.sql.len(),
                    }));
                    return Ok(());
                }
                let Ok(permit) = state.permits.clone().try_acquire_owned() else {
                    let running = settings.max_concurrent;
                    let _ = reply.send(Err(QueryError::Busy { running }));
                    return Ok(());
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let timeout_ms = state.arguments.settings.timeout_ms;
                    let worker = state.clone();
                    let mut query = query_runtime(state.arguments.settings.threads)
                        .spawn(async move { run(&worker, request).await });
                    let deadline = tokio::time::sleep(Duration::from_millis(timeout_ms));
                    tokio::pin!(deadline);
                    let mut check = tokio::time::interval(CALLER_CHECK);
                    let outcome = loop {
                        tokio::select! {
                            joined = &mut query => break joined.unwrap_or_else(|e| {
                                // A panic inside DataFusion is a bug, not the
                                // client's mistake: a 500, logged once here.
                                tracing::error!(error = %e, "a query panicked");
                                Err(QueryError::Internal(e.to_string()))
                            }),
                            _ = &mut deadline => {
                                query.abort();
                                break Err(QueryError::Timeout(timeout_ms));
                            }
                            _ = check.tick() => if reply.is_closed() {
                                query.abort();
                                tracing::info!("sql cancelled: the caller went away");
                                break Err(QueryError::Cancelled);
                            }
                        }
                    };
                    drop(permit);
                    let _ = reply.send(outcome);
                });
            }
            QueryMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

/// Accepts exactly one statement that can only read; says whether it is
/// an `EXPLAIN`.
pub fn check_read_only(sql: &str) -> Result<bool, QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| QueryError::Sql(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::ReadOnly(format!(
            "exactly one statement, got {}",
            statements.len()
        )));
    }
    fn allowed(statement: &Statement) -> Result<(), String> {
        match statement {
            Statement::Statement(inner) => match inner.as_ref() {
                SqlStatement::Query(query) => match query.body.as_ref() {
                    SetExpr::Select(select) if select.into.is_some() => {
                        Err("SELECT … INTO writes".into())
                    }
                    SetExpr::Insert(_)
                    | SetExpr::Update(_)
                    | SetExpr::Delete(_)
                    | SetExpr::Merge(_) => Err("data-modifying statement".into()),
                    _ => Ok(()),
                },
                SqlStatement::Explain { statement, .. } => {
                    allowed(&Statement::Statement(statement.clone()))
                }
                other => Err(format!(
                    "'{}' is not a query",
                    first_words(&other.to_string())
                )),
            },
            Statement::Explain(explain) => allowed(&explain.statement),
            Statement::CreateExternalTable(_) => Err("CREATE EXTERNAL TABLE".into()),
            Statement::CopyTo(_) => Err("COPY".into()),
            Statement::Reset(_) => Err("RESET".into()),
        }
    }
    allowed(&statements[0]).map_err(QueryError::ReadOnly)?;
    Ok(match &statements[0] {
        Statement::Explain(_) => true,
        Statement::Statement(inner) => matches!(inner.as_ref(), SqlStatement::Explain { .. }),
        _ => false,
    })
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// DataFusion's error, with running out of the memory pool told apart.
fn sql_error(state: &QueryState, err: DataFusionError) -> QueryError {
    if let Some(refusal) = functions::output_too_large(&err) {
        return QueryError::FunctionOutputTooLarge(refusal.to_string());
    }
    match err.find_root() {
        DataFusionError::ResourcesExhausted(detail) => QueryError::MemoryExceeded {
            limit: state.arguments.settings.memory_limit_bytes,
            detail: detail.clone(),
        },
        _ => QueryError::Sql(err.to_string()),
    }
}

async fn run(state: &QueryState, request: SqlRequest) -> Result<SqlResult, QueryError> {
    let context = &state.arguments;
    let max = context.settings.max_rows;
    let limit = request.limit.unwrap_or(max);
    if !(1..=max).contains(&limit) {
        return Err(QueryError::InvalidLimit { max, got: limit });
    }
    let depth = depth::expression_depth(&request.sql).map_err(QueryError::Sql)?;
    if depth > context.settings.max_expression_depth {
        return Err(QueryError::TooDeep {
            max: context.settings.max_expression_depth,
            got: depth,
        });
    }
    let explain = check_read_only(&request.sql)?;
    let manifests = context
        .directory
        .call(
            catalog::NAME,
            |reply| CatalogMessage::List { reply },
            context.call_timeout,
        )
        .await?;
    let config = SessionConfig::new();
    let caps = functions::Caps {
        per_row: context.settings.max_function_output,
        per_batch: context.settings.max_function_batch_output,
        batch_rows: config.batch_size(),
    };
    let session = SessionContext::new_with_config_rt(config, state.runtime.clone());
    functions::install(&session, caps);
    for manifest in manifests {
        let path = catalog::dataset_path(&context.data_dir, &manifest.name);
        let dataset = Dataset::open(&path.display().to_string())
            .await
            .map_err(|e| QueryError::Storage(format!("{}: {e}", manifest.name)))?;
        let provider = LanceTableProvider::new(Arc::new(dataset), false, false);
        session
            .register_table(manifest.name.as_str(), Arc::new(provider))
            .map_err(|e| QueryError::Sql(e.to_string()))?;
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = session
        .sql_with_options(&request.sql, options)
        .await
        .map_err(|e| sql_error(state, e))?;
    let schema = frame.schema().clone();
    let columns: Vec<SqlColumn> = schema
        .fields()
        .iter()
        .map(|f| SqlColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| sql_error(state, e))?;
    let mut answer = Answer {
        rows: Vec::new(),
        bytes_left: context.settings.max_result_bytes,
        truncated_by: None,
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| sql_error(state, e))?;
        answer.append(&batch, limit);
        if answer.truncated_by.is_some() {
            break;
        }
    }
    if explain {
        // Plans name the datasets' files: show them relative to data.dir.
        for value in answer.rows.iter_mut().flatten() {
            if let Value::String(text) = value {
                if let std::borrow::Cow::Owned(relative) = crate::redact::relative(text) {
                    *text = relative;
                }
            }
        }
    }
    Ok(SqlResult {
        row_count: answer.rows.len(),
        columns,
        rows: answer.rows,
        truncated: answer.truncated_by.is_some(),
        truncated_by: answer.truncated_by,
    })
}

/// The rows of an answer as they are gathered, within its row limit and
/// byte budget.
struct Answer {
    rows: Vec<Vec<Value>>,
    /// What `query.max_result_bytes` still allows (JSON bytes, roughly).
    bytes_left: usize,
    /// Why the answer was cut off: `limit` (rows) or `max_result_bytes`.
    truncated_by: Option<&'static str>,
}

impl Answer {
    fn append(&mut self, batch: &RecordBatch, limit: usize) {
        let columns: Vec<&ArrayRef> = batch.columns().iter().collect();
        for row in 0..batch.num_rows() {
            if self.rows.len() == limit {
                self.truncated_by = Some("limit");
                return;
            }
            let mut values = Vec::with_capacity(columns.len());
            for column in &columns {
                // A cell is measured before it is copied: one huge string
                // is refused without a second copy of it.
                let (size, value) = match cell_size(column, row) {
                    Some(size) => (size, None),
                    // Nested and other types are measured as the text
                    // they are shown as.
                    None => {
                        let value = cell(column, row);
                        (value.to_string().len(), Some(value))
                    }
                };
                if size > self.bytes_left {
                    self.truncated_by = Some("max_result_bytes");
                    return;
                }
                self.bytes_left -= size;
                values.push(value.unwrap_or_else(|| cell(column, row)));
            }
            self.rows.push(values);
        }
    }
}

/// About how many bytes a cell takes in the JSON answer, for the types
/// that can be measured without formatting them (`None`: format it).
fn cell_size(array: &ArrayRef, row: usize) -> Option<usize> {
    if array.is_null(row) {
        return Some(5);
    }
    let text = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len(),
        DataType::Utf8View => array.as_string_view().value(row).len(),
        DataType::Binary => array.as_binary::<i32>().value(row).len() * 2,
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len() * 2,
        DataType::List(_) => array.as_list::<i32>().value(row).get_array_memory_size(),
        DataType::LargeList(_) => array.as_list::<i64>().value(row).get_array_memory_size(),
        data_type if data_type.is_primitive() || *data_type == DataType::Boolean => 0,
        _ => return None,
    };
    Some(text + 24)
}

/// One cell as JSON: numbers, strings and booleans as themselves, anything
/// else (dates, decimals, lists) as Arrow's display string.
fn cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        _ => ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
            .map(|f| Value::String(f.value(row).to_string()))
            .unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_allowed() {
        for ok in [
            "SELECT 1",
            "select role, count(*) from workers group by role",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "EXPLAIN SELECT * FROM workers",
        ] {
            assert!(check_read_only(ok).is_ok(), "{ok}");
        }
        for bad in [
            "DROP TABLE workers",
            "DELETE FROM workers",
            "INSERT INTO workers VALUES (1)",
            "UPDATE workers SET a = 1",
            "CREATE TABLE t AS SELECT 1",
            "COPY workers TO '/tmp/x.csv'",
            "SELECT 1; DROP TABLE workers",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "SET datafusion.execution.batch_size = 1",
        ] {
            assert!(
                matches!(check_read_only(bad), Err(QueryError::ReadOnly(_))),
                "{bad}"
            );
        }
    }
}
