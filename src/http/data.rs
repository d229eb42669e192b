//! The data plane over HTTP: `/v1/storage/objects…`, `/v1/ingest/{dataset}`,
//! `/v1/catalog/datasets…` and `/v1/sql`.
//!
//! Uploads stream: the body is pumped chunk by chunk into a bounded channel
//! whose other end is the owning actor's task, so neither side holds the
//! whole body in memory and an oversized body is cut off as soon as it
//! passes the limit.

use crate::domain::de::Object;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{delete, get, post, put, web, HttpMessage, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::{ApiContext, ApiError};
use crate::actors::ingest::{self, IngestFormat, IngestMessage};
use crate::actors::storage::{self, ObjectInfo, StorageMessage, UploadChunk};
use crate::domain::datasets::{DatasetList, DatasetManifest, IngestOutcome, SqlRequest, SqlResult};
use crate::service;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(put_object)
        .service(get_object)
        .service(delete_object)
        .service(list_objects)
        .service(ingest_csv)
        .service(list_datasets)
        .service(get_dataset)
        .service(drop_dataset)
        .service(sql);
}

/// Forwards the body into `tx`, then `End`; stops (and tells the
/// receiver) once more than `limit` bytes arrived or the client went away.
async fn pump(
    mut payload: web::Payload,
    tx: mpsc::Sender<UploadChunk>,
    limit: u64,
) -> Result<(), ApiError> {
    let mut size = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(actix_web::error::PayloadError::Overflow) => {
                // The front door's limit for the route (the same as `limit`).
                let _ = tx
                    .send(UploadChunk::Abort("over the size limit".into()))
                    .await;
                return Err(ApiError::PayloadTooLarge {
                    limit: limit as usize,
                });
            }
            Err(err) => {
                let _ = tx.send(UploadChunk::Abort(err.to_string())).await;
                return Err(ApiError::MalformedBody(err.to_string()));
            }
        };
        size += chunk.len() as u64;
        if size > limit {
            let _ = tx
                .send(UploadChunk::Abort("over the size limit".into()))
                .await;
            return Err(ApiError::PayloadTooLarge {
                limit: limit as usize,
            });
        }
        if tx.send(UploadChunk::Data(chunk)).await.is_err() {
            // The receiver gave up (and will say why in its reply).
            return Ok(());
        }
    }
    // Said explicitly: a sender dropped without it (the request went away
    // mid-body) is an aborted upload, never a complete one.
    let _ = tx.send(UploadChunk::End).await;
    Ok(())
}

/// A share of the transfers for the request's caller (at most
/// `storage.max_transfers_per_token` with tokens configured).
fn transfer_share(
    context: &ApiContext,
    request: &actix_web::HttpRequest,
) -> Result<super::front_door::Share, ApiError> {
    let caller = super::caller_name(request);
    let per_token = context.settings.storage.max_transfers_per_token;
    context
        .front
        .share("transfers", &caller, per_token)
        .ok_or(ApiError::Storage(storage::StorageError::Busy))
}

/// Store an object (streamed; at most `storage.max_object_bytes`).
#[utoipa::path(
    tag = "data",
    params(("key" = String, Path, description = "The object's key: a relative path of plain segments")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The object's bytes"),
    responses(
        (status = 201, description = "Stored", body = ObjectInfo),
        (status = 400, description = "`invalid_key`, `upload_aborted`", body = ErrorBody),
        (status = 409, description = "`key_conflict`: a folder of the key is an object, or objects are stored under the key", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: nothing stored", body = ErrorBody),
        (status = 503, description = "`too_many_transfers`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[put("/storage/objects/{key:.+}")]
#[tracing::instrument(skip_all, fields(key = ?key.as_str()))]
async fn put_object(
    context: web::Data<ApiContext>,
    key: web::Path<String>,
    request: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = key.into_inner();
    let _share = transfer_share(&context, &request)?;
    let limit = context.settings.storage.max_object_bytes;
    let (tx, rx) = mpsc::channel(8);
    let timeout = Duration::from_millis(context.settings.ingest.timeout_ms);
    let call = context.call_with(
        storage::NAME,
        |reply| StorageMessage::Put {
            key,
            chunks: rx,
            reply,
        },
        timeout,
    );
    let (pumped, stored) = futures::join!(pump(payload, tx, limit), call);
    let stored = stored?;
    pumped?;
    let info: ObjectInfo = stored?;
    Ok(HttpResponse::Created().json(info))
}

/// An object's bytes (streamed), its size in `x-object-size`.
#[utoipa::path(
    tag = "data",
    params(("key" = String, Path, description = "The object's key")),
    responses(
        (status = 200, description = "The bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_key`", body = ErrorBody),
        (status = 404, description = "`object_not_found`", body = ErrorBody),
        (status = 503, description = "`too_many_transfers`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/storage/objects/{key:.+}")]
#[tracing::instrument(skip_all, fields(key = ?key.as_str()))]
async fn get_object(
    context: web::Data<ApiContext>,
    key: web::Path<String>,
    request: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = key.into_inner();
    let share = transfer_share(&context, &request)?;
    let (info, stream) = context
        .call(storage::NAME, |reply| StorageMessage::Get { key, reply })
        .await??;
    // The share travels with the stream: given back when the transfer ends.
    let stream = stream.map(move |chunk| {
        let _held = &share;
        chunk
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header(("x-object-size", info.size))
        .streaming(stream))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    deleted: String,
}

/// Delete an object.
#[utoipa::path(
    tag = "data",
    params(("key" = String, Path, description = "The object's key")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "`invalid_key`", body = ErrorBody),
        (status = 404, description = "`object_not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[delete("/storage/objects/{key:.+}")]
async fn delete_object(
    context: web::Data<ApiContext>,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = key.into_inner();
    let target = key.clone();
    context
        .call(storage::NAME, |reply| StorageMessage::Delete {
            key: target,
            reply,
        })
        .await??;
    Ok(HttpResponse::Ok().json(Deleted { deleted: key }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only keys that start with this.
    prefix: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ObjectList {
    objects: Vec<ObjectInfo>,
}

/// Objects, optionally under a prefix.
#[utoipa::path(
    tag = "data",
    params(ListQuery),
    responses(
        (status = 200, description = "The objects", body = ObjectList),
        (status = 400, description = "`invalid_key` (the prefix)", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/storage/objects")]
async fn list_objects(
    context: web::Data<ApiContext>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let prefix = query.into_inner().prefix;
    let objects = context
        .call(storage::NAME, |reply| StorageMessage::List {
            prefix,
            reply,
        })
        .await??;
    Ok(HttpResponse::Ok().json(ObjectList { objects }))
}

/// How an ingest treats an existing dataset.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestMode {
    /// Add the rows; the schema must match (else `schema_drift`).
    #[default]
    Append,
    /// Overwrite: a new Lance version holding only this file, with its
    /// schema (older versions stay readable until version cleanup).
    Replace,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IngestQuery {
    /// `append` (default) or `replace`.
    #[param(inline)]
    mode: Option<IngestMode>,
}

/// Ingest a CSV (header row first) or JSON lines (one object per line;
/// lists and nested objects become list and struct columns) into a Lance
/// dataset: created on first ingest, then appended, or replaced with
/// `?mode=replace`; the same bytes again change nothing.
#[utoipa::path(
    tag = "data",
    params(("dataset" = String, Path, description = "The dataset: a plain identifier"), IngestQuery),
    request_body(
        description = "CSV with a header row (`text/csv`), or JSON lines, one object per line (`application/x-ndjson`)",
        content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
            (String = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "`created`, `appended`, `replaced` or `unchanged`, with the manifest", body = IngestOutcome),
        (status = 400, description = "`invalid_name`, `malformed_csv`, `malformed_json_lines` (name the line), `upload_aborted`", body = ErrorBody),
        (status = 409, description = "`schema_drift` (lists the columns), `ingest_in_progress`, `reserved_dataset` (`replay_runs`)", body = ErrorBody),
        (status = 422, description = "`too_many_columns` (over `ingest.max_columns`), `column_name_too_long`", body = ErrorBody),
        (status = 507, description = "`disk_full`: the data directory's disk is below `ingest.min_free_bytes`; nothing written", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: nothing written", body = ErrorBody),
        (status = 503, description = "`too_many_ingests` (`ingest.max_concurrent` are running)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `text/csv`, `application/x-ndjson` or `application/json`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/ingest/{dataset}")]
#[tracing::instrument(skip_all, fields(dataset = ?dataset.as_str()))]
async fn ingest_csv(
    context: web::Data<ApiContext>,
    dataset: web::Path<String>,
    query: web::Query<IngestQuery>,
    request: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<IngestOutcome>, ApiError> {
    let dataset = dataset.into_inner();
    // Only media types a browser will not send cross-site without a CORS
    // preflight (none is CORS-safelisted), so a web page the developer
    // opens cannot replace a dataset of an open loopback service with a
    // plain form POST (`text/plain`).
    let format = match request.content_type() {
        "text/csv" => IngestFormat::Csv,
        "application/x-ndjson"
        | "application/jsonl"
        | "application/json-lines"
        | "application/json" => IngestFormat::JsonLines,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "an ingest is text/csv, application/x-ndjson or application/json (JSON lines), not {:?}",
                other.chars().take(100).collect::<String>()
            )))
        }
    };
    let replace = matches!(query.into_inner().mode, Some(IngestMode::Replace));
    if dataset == crate::actors::chat::replay::DATASET {
        return Err(ApiError::ReservedDataset(dataset));
    }
    let limit = context.settings.ingest.max_bytes;
    let (tx, rx) = mpsc::channel(8);
    let timeout = Duration::from_millis(context.settings.ingest.timeout_ms);
    let call = context.call_with(
        ingest::NAME,
        |reply| IngestMessage::Ingest {
            dataset,
            format,
            replace,
            chunks: rx,
            reply,
        },
        timeout,
    );
    let (pumped, outcome) = futures::join!(pump(payload, tx, limit), call);
    let outcome = outcome?;
    pumped?;
    Ok(web::Json(outcome?))
}

/// Every dataset's manifest.
#[utoipa::path(
    tag = "data",
    responses((status = 200, description = "The manifests", body = DatasetList)),
    security(("bearer" = ["read"]))
)]
#[get("/catalog/datasets")]
async fn list_datasets(context: web::Data<ApiContext>) -> Result<web::Json<DatasetList>, ApiError> {
    let datasets = service::data::list_datasets(&context).await?;
    Ok(web::Json(DatasetList { datasets }))
}

/// One dataset's manifest: schema, rows, version, ingests.
#[utoipa::path(
    tag = "data",
    params(("name" = String, Path, description = "The dataset")),
    responses(
        (status = 200, description = "The manifest", body = DatasetManifest),
        (status = 404, description = "`dataset_not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/catalog/datasets/{name}")]
async fn get_dataset(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<web::Json<DatasetManifest>, ApiError> {
    Ok(web::Json(
        service::data::describe_dataset(&context, &name).await?,
    ))
}

/// Drop a dataset: its catalog entry and every file of every version.
/// Refused while an ingest into it runs; `replay_runs` is the service's own.
#[utoipa::path(
    tag = "data",
    params(("name" = String, Path, description = "The dataset")),
    responses(
        (status = 200, description = "Dropped", body = Deleted),
        (status = 400, description = "`invalid_name`", body = ErrorBody),
        (status = 404, description = "`dataset_not_found`", body = ErrorBody),
        (status = 409, description = "`ingest_in_progress`, `reserved_dataset` (`replay_runs`)", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[delete("/catalog/datasets/{name}")]
#[tracing::instrument(skip_all, fields(dataset = ?name.as_str()))]
async fn drop_dataset(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    service::data::drop_dataset(&context, &name).await?;
    Ok(HttpResponse::Ok().json(Deleted { deleted: name }))
}

/// One read-only SQL query (SELECT, WITH … SELECT, EXPLAIN) over every
/// dataset, at its latest version.
#[utoipa::path(
    tag = "data",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "Columns and rows (at most `limit` rows and `query.max_result_bytes` bytes: `truncated_by` says which cut it off)", body = SqlResult),
        (status = 400, description = "`read_only`, `sql_error`, `sql_too_long` (over `query.max_sql_bytes`), `sql_too_deep` (an expression nested over `query.max_expression_depth`)", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `query_memory_exceeded`, `function_output_too_large`", body = ErrorBody),
        (status = 503, description = "`too_many_queries`", body = ErrorBody),
        (status = 504, description = "`query_timeout`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/sql")]
#[tracing::instrument(skip_all)]
async fn sql(
    context: web::Data<ApiContext>,
    request: web::Json<Object<SqlRequest>>,
) -> Result<web::Json<SqlResult>, ApiError> {
    Ok(web::Json(
        service::data::sql(&context, request.into_inner().0).await?,
    ))
}
