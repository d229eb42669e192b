//! `/v1/vectors/index…`: create, list, inspect and drop indexes; add,
//! search, get and delete items. Index changes go to `vector_catalog`,
//! item operations to the index's own actor `index:<name>`.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{ApiContext, ApiError};
use crate::actors::vectors::catalog::{self, VectorCatalogMessage};
use crate::actors::vectors::index::{actor_name, IndexMessage};
use crate::actors::vectors::IndexError;
use crate::domain::vectors::{
    AddItems, CreateIndex, IndexDefinition, IndexInfo, IndexList, Item, SearchRequest,
    SearchResults, UpsertOutcome,
};
use crate::supervision::{CallError, ChildStatus};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/vectors/index")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/vectors/index/{name}")
            .route(web::get().to(info))
            .route(web::delete().to(drop_index)),
    )
    .route("/vectors/index/{name}/add", web::post().to(add))
    .route("/vectors/index/{name}/search", web::post().to(search))
    .service(
        web::resource("/vectors/index/{name}/items/{id}")
            .route(web::get().to(get_item))
            .route(web::delete().to(delete_item)),
    );
}

#[derive(Serialize)]
struct Dropped {
    dropped: String,
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

/// Calls the actor of index `name`. The `vectors` board answers first,
/// without a message: an index that is not in the tree is a 404, one that
/// is loading (starting or restarting) a `503 index_loading`, one its
/// supervisor gave up on a `503 index_failed` with the last reason — all
/// at once, never after a request timeout.
async fn call_index<T, F>(context: &ApiContext, name: &str, build: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(ractor::RpcReplyPort<T>) -> IndexMessage,
{
    let actor = actor_name(name);
    let not_found = || ApiError::from(IndexError::NotFound(name.to_string()));
    let failed = || {
        let reason = context
            .vectors_board
            .last_failure(&actor)
            .map_or_else(|| "no reason recorded".to_string(), |f| f.reason);
        ApiError::from(IndexError::Failed {
            index: name.to_string(),
            reason,
        })
    };
    match context.vectors_board.status(&actor) {
        None => return Err(not_found()),
        Some(ChildStatus::Starting | ChildStatus::Restarting) => {
            return Err(IndexError::Loading(name.to_string()).into())
        }
        Some(ChildStatus::Failed) => return Err(failed()),
        Some(ChildStatus::Running | ChildStatus::Stopped) => {}
    }
    match context.call(&actor, build).await {
        Err(CallError::Unavailable { .. }) => match context.vectors_board.status(&actor) {
            None => Err(not_found()),
            Some(ChildStatus::Failed) => Err(failed()),
            Some(_) => Err(IndexError::Unavailable.into()),
        },
        Err(CallError::Failed { .. }) => Err(failed()),
        other => Ok(other?),
    }
}

#[tracing::instrument(skip_all, fields(index = %request.name))]
async fn create(
    context: web::Data<ApiContext>,
    request: web::Json<CreateIndex>,
) -> Result<HttpResponse, ApiError> {
    let request = request.into_inner();
    let definition: IndexDefinition = context
        .call(catalog::NAME, |reply| VectorCatalogMessage::Create {
            request,
            reply,
        })
        .await??;
    Ok(HttpResponse::Created().json(definition))
}

async fn list(context: web::Data<ApiContext>) -> Result<web::Json<IndexList>, ApiError> {
    let indexes = context
        .call(catalog::NAME, |reply| VectorCatalogMessage::List { reply })
        .await?;
    Ok(web::Json(IndexList { indexes }))
}

#[tracing::instrument(skip_all, fields(index = %name))]
async fn info(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<web::Json<IndexInfo>, ApiError> {
    let info = call_index(&context, &name, |reply| IndexMessage::Info { reply }).await?;
    Ok(web::Json(info))
}

#[tracing::instrument(skip_all, fields(index = %name))]
async fn drop_index(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<web::Json<Dropped>, ApiError> {
    let name = name.into_inner();
    let target = name.clone();
    context
        .call(catalog::NAME, |reply| VectorCatalogMessage::Drop {
            name: target,
            reply,
        })
        .await??;
    Ok(web::Json(Dropped { dropped: name }))
}

#[tracing::instrument(skip_all, fields(index = %name, items = request.items.len()))]
async fn add(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    request: web::Json<AddItems>,
) -> Result<web::Json<UpsertOutcome>, ApiError> {
    let items = request.into_inner().items;
    let outcome = call_index(&context, &name, |reply| IndexMessage::Upsert {
        items,
        reply,
    })
    .await??;
    Ok(web::Json(outcome))
}

#[tracing::instrument(skip_all, fields(index = %name, k = request.k))]
async fn search(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    request: web::Json<SearchRequest>,
) -> Result<web::Json<SearchResults>, ApiError> {
    let request = request.into_inner();
    let hits = call_index(&context, &name, |reply| IndexMessage::Search {
        request,
        reply,
    })
    .await??;
    Ok(web::Json(SearchResults { hits }))
}

#[tracing::instrument(skip_all, fields(index = %path.0))]
async fn get_item(
    context: web::Data<ApiContext>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Item>, ApiError> {
    let (name, id) = path.into_inner();
    let item = call_index(&context, &name, |reply| IndexMessage::Get { id, reply }).await??;
    Ok(web::Json(item))
}

#[tracing::instrument(skip_all, fields(index = %path.0))]
async fn delete_item(
    context: web::Data<ApiContext>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Deleted>, ApiError> {
    let (name, id) = path.into_inner();
    let target = id.clone();
    call_index(&context, &name, |reply| IndexMessage::Delete {
        id: target,
        reply,
    })
    .await??;
    Ok(web::Json(Deleted { deleted: id }))
}
