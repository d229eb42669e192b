//! The `query` actor: read-only SQL (DataFusion) over every catalogued
//! Lance dataset.
//!
//! Each query runs as its own task with a fresh `SessionContext` in which
//! every dataset is registered at its latest committed version (a Lance
//! table provider pins a version, so registering per query is what makes
//! queries see the newest data). Only `SELECT`, `WITH … SELECT` and
//! `EXPLAIN` of those are accepted — checked on the parse, and again by
//! DataFusion's `SQLOptions` (no DDL, no DML, no statements).
//!
//! Bounded: at most `query.max_concurrent` queries run at once (more get
//! `503 too_many_queries` at once); together they share one memory pool of
//! `query.memory_limit_bytes`, and nothing spills to disk, so a query that
//! needs more (a sort of ten billion rows) fails with
//! `query_memory_exceeded` and the process keeps serving. Rows and time are
//! limited by `query.max_rows` and `query.timeout_ms`.

use std::sync::Arc;
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
use crate::config::QuerySettings;
use crate::domain::datasets::{SqlColumn, SqlRequest, SqlResult};
use crate::supervision::{CallError, Directory, Fault};

pub const NAME: &str = "query";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("only read-only queries (SELECT, WITH … SELECT, EXPLAIN) are allowed: {0}")]
    ReadOnly(String),
    #[error("{0}")]
    Sql(String),
    #[error("limit must be between 1 and {max}, got {got}")]
    InvalidLimit { max: usize, got: usize },
    #[error("the query did not finish within {0} ms")]
    Timeout(u64),
    #[error("the query needs more memory than query.memory_limit_bytes ({limit} bytes) allows: {detail}")]
    MemoryExceeded { limit: usize, detail: String },
    #[error("{running} queries are running (query.max_concurrent); retry shortly")]
    Busy { running: usize },
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Catalog(#[from] CallError),
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
}

/// What every query task shares.
pub struct QueryState {
    arguments: QueryArguments,
    /// The memory pool of every query, and no disk to spill to.
    runtime: Arc<RuntimeEnv>,
    /// One permit per query that may run at once.
    permits: Arc<tokio::sync::Semaphore>,
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
                let Ok(permit) = state.permits.clone().try_acquire_owned() else {
                    let running = state.arguments.settings.max_concurrent;
                    let _ = reply.send(Err(QueryError::Busy { running }));
                    return Ok(());
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let settings = &state.arguments.settings;
                    let timeout = Duration::from_millis(settings.timeout_ms);
                    let outcome = match tokio::time::timeout(timeout, run(&state, request)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(QueryError::Timeout(settings.timeout_ms)),
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

/// Accepts exactly one statement that can only read.
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
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
    allowed(&statements[0]).map_err(QueryError::ReadOnly)
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// DataFusion's error, with running out of the memory pool told apart.
fn sql_error(state: &QueryState, err: DataFusionError) -> QueryError {
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
    check_read_only(&request.sql)?;
    let manifests = context
        .directory
        .call(
            catalog::NAME,
            |reply| CatalogMessage::List { reply },
            context.call_timeout,
        )
        .await?;
    let session = SessionContext::new_with_config_rt(SessionConfig::new(), state.runtime.clone());
    for manifest in manifests {
        let dataset = Dataset::open(&manifest.uri)
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
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| sql_error(state, e))?;
        append_rows(&batch, &mut rows, limit + 1);
        if rows.len() > limit {
            truncated = true;
            rows.truncate(limit);
            break;
        }
    }
    Ok(SqlResult {
        row_count: rows.len(),
        columns,
        rows,
        truncated,
    })
}

fn append_rows(batch: &RecordBatch, rows: &mut Vec<Vec<Value>>, cap: usize) {
    let take = batch.num_rows().min(cap.saturating_sub(rows.len()));
    let columns: Vec<&ArrayRef> = batch.columns().iter().collect();
    for row in 0..take {
        rows.push(columns.iter().map(|c| cell(c, row)).collect());
    }
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
