//! The data plane over HTTP: `/v1/storage/objects…`, `/v1/ingest/{dataset}`,
//! `/v1/catalog/datasets…` and `/v1/sql`.
//!
//! Uploads stream: the body is pumped chunk by chunk into a bounded channel
//! whose other end is the owning actor's task, so neither side holds the
//! whole body in memory and an oversized body is cut off as soon as it
//! passes the limit.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{ApiContext, ApiError};
use crate::actors::catalog::{self, CatalogMessage};
use crate::actors::ingest::{self, IngestMessage};
use crate::actors::query::{self, QueryMessage};
use crate::actors::storage::{self, ObjectInfo, StorageMessage, UploadChunk};
use crate::domain::datasets::{DatasetList, DatasetManifest, IngestOutcome, SqlRequest, SqlResult};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/storage/objects/{key:.+}")
            .app_data(web::PayloadConfig::new(usize::MAX))
            .route(web::put().to(put_object))
            .route(web::get().to(get_object))
            .route(web::delete().to(delete_object)),
    )
    .route("/storage/objects", web::get().to(list_objects))
    .service(
        web::resource("/ingest/{dataset}")
            .app_data(web::PayloadConfig::new(usize::MAX))
            .route(web::post().to(ingest_csv)),
    )
    .route("/catalog/datasets", web::get().to(list_datasets))
    .route("/catalog/datasets/{name}", web::get().to(get_dataset))
    .route("/sql", web::post().to(sql));
}

/// Forwards the body into `tx`; stops (and tells the receiver) once more
/// than `limit` bytes arrived or the client went away.
async fn pump(
    mut payload: web::Payload,
    tx: mpsc::Sender<UploadChunk>,
    limit: u64,
) -> Result<(), ApiError> {
    let mut size = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
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
    Ok(())
}

#[tracing::instrument(skip_all, fields(key = %key))]
async fn put_object(
    context: web::Data<ApiContext>,
    key: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = key.into_inner();
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

#[tracing::instrument(skip_all, fields(key = %key))]
async fn get_object(
    context: web::Data<ApiContext>,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = key.into_inner();
    let (info, stream) = context
        .call(storage::NAME, |reply| StorageMessage::Get { key, reply })
        .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header(("x-object-size", info.size))
        .streaming(stream))
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    prefix: Option<String>,
}

#[derive(Serialize)]
struct ObjectList {
    objects: Vec<ObjectInfo>,
}

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

#[tracing::instrument(skip_all, fields(dataset = %dataset))]
async fn ingest_csv(
    context: web::Data<ApiContext>,
    dataset: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<IngestOutcome>, ApiError> {
    let dataset = dataset.into_inner();
    let limit = context.settings.ingest.max_bytes;
    let (tx, rx) = mpsc::channel(8);
    let timeout = Duration::from_millis(context.settings.ingest.timeout_ms);
    let call = context.call_with(
        ingest::NAME,
        |reply| IngestMessage::Ingest {
            dataset,
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

async fn list_datasets(context: web::Data<ApiContext>) -> Result<web::Json<DatasetList>, ApiError> {
    let datasets = context
        .call(catalog::NAME, |reply| CatalogMessage::List { reply })
        .await?;
    Ok(web::Json(DatasetList { datasets }))
}

async fn get_dataset(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<web::Json<DatasetManifest>, ApiError> {
    let name = name.into_inner();
    let target = name.clone();
    let manifest = context
        .call(catalog::NAME, |reply| CatalogMessage::Get {
            name: target,
            reply,
        })
        .await?
        .ok_or(ApiError::DatasetNotFound(name))?;
    Ok(web::Json(manifest))
}

#[tracing::instrument(skip_all)]
async fn sql(
    context: web::Data<ApiContext>,
    request: web::Json<SqlRequest>,
) -> Result<web::Json<SqlResult>, ApiError> {
    let request = request.into_inner();
    // The query enforces its own time limit; the call waits a little longer.
    let timeout = Duration::from_millis(context.settings.query.timeout_ms) + Duration::from_secs(1);
    let result = context
        .call_with(
            query::NAME,
            |reply| QueryMessage::Sql { request, reply },
            timeout,
        )
        .await??;
    Ok(web::Json(result))
}
