//! `/v1/vectors/index…`: create, list, inspect and drop indexes; add,
//! search, get, patch and delete items, update and delete them in bulk,
//! count them — each one call to [`service::vectors`].

use crate::domain::de::Object;
use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::{caller_role, ApiContext, ApiError};
use crate::actors::vectors::store::ExportFormat;
use crate::domain::items::{
    BulkDelete, BulkUpdate, ChangeOutcome, CountAnswer, CountRequest, ItemPatch, ScrollPage,
    ScrollRequest,
};
use crate::domain::vectors::{
    AddItems, CreateIndex, IndexDefinition, IndexInfo, IndexList, Item, SearchRequest,
    SearchResults,
};
use crate::service;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_index)
        .service(list_indexes)
        .service(index_info)
        .service(drop_index)
        .service(add_items)
        .service(search_index)
        .service(get_item)
        .service(patch_item)
        .service(delete_item)
        .service(update_items)
        .service(delete_items)
        .service(count_items)
        .service(scroll_items)
        .service(export_items);
}

#[derive(Serialize, ToSchema)]
pub struct Dropped {
    dropped: String,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    deleted: String,
}

/// Create an index. Answers once it is loaded and usable.
#[utoipa::path(
    tag = "vectors",
    request_body = CreateIndex,
    responses(
        (status = 201, description = "The definition", body = IndexDefinition),
        (status = 400, description = "`invalid_name`, `invalid_dimension`, `invalid_hnsw`, `invalid_synonyms`", body = ErrorBody),
        (status = 409, description = "`index_exists`, `reserved_index` (`workers` and `playbook_memory` need the admin role)", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/vectors/index")]
#[tracing::instrument(skip_all, fields(index = %request.name))]
async fn create_index(
    context: web::Data<ApiContext>,
    http: actix_web::HttpRequest,
    request: web::Json<Object<CreateIndex>>,
) -> Result<HttpResponse, ApiError> {
    let definition: IndexDefinition =
        service::vectors::create_index(&context, caller_role(&http), request.into_inner().0)
            .await?;
    Ok(HttpResponse::Created().json(definition))
}

/// Every index with its status and count.
#[utoipa::path(
    tag = "vectors",
    responses((status = 200, description = "The indexes", body = IndexList)),
    security(("bearer" = ["read"]))
)]
#[get("/vectors/index")]
async fn list_indexes(context: web::Data<ApiContext>) -> Result<web::Json<IndexList>, ApiError> {
    let indexes = service::vectors::list_indexes(&context).await?;
    Ok(web::Json(IndexList { indexes }))
}

/// An index's definition and state: count, Lance version, fragments,
/// graph size, tombstones, snapshot age, restarts.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    responses(
        (status = 200, description = "The index", body = IndexInfo),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed` (names the reason), `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/vectors/index/{name}")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn index_info(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<web::Json<IndexInfo>, ApiError> {
    Ok(web::Json(
        service::vectors::index_info(&context, &name).await?,
    ))
}

/// Drop an index and remove its data.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    responses(
        (status = 200, description = "Dropped", body = Dropped),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
#[delete("/vectors/index/{name}")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn drop_index(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
) -> Result<web::Json<Dropped>, ApiError> {
    let name = name.into_inner();
    service::vectors::drop_index(&context, &name).await?;
    Ok(web::Json(Dropped { dropped: name }))
}

/// Upsert items by id (a vector, or a text to embed, and metadata).
/// Acknowledged once committed to Lance and searchable.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    request_body = AddItems,
    responses(
        (status = 200, description = "Inserted and updated counts; in `workers`, `possible_duplicates`", body = crate::domain::vectors::AddOutcome),
        (status = 400, description = "`dimension_mismatch`, `invalid_vector`, `invalid_id`, `duplicate_id`", body = ErrorBody),
        (status = 422, description = "`empty_batch`, `batch_too_large`, `vector_or_text`, `invalid_metadata`, and the embedder's codes for texts", body = ErrorBody),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 409, description = "`reserved_index`: `workers` and `playbook_memory` need the admin role", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed` (names the reason), `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/vectors/index/{name}/add")]
#[tracing::instrument(skip_all, fields(index = %name, items = request.items.len()))]
async fn add_items(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    http: actix_web::HttpRequest,
    request: web::Json<Object<AddItems>>,
) -> Result<web::Json<crate::domain::vectors::AddOutcome>, ApiError> {
    let items = request.into_inner().0.items;
    let outcome = service::vectors::add_items(&context, caller_role(&http), &name, items).await?;
    Ok(web::Json(outcome))
}

/// The k best items for a query: nearest vectors (`semantic`), BM25 over
/// the items' texts (`keyword`) or both fused (`hybrid`), with an optional
/// filter on metadata, ids to exclude, and `explain` for the parts of each
/// distance.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Hits, nearest first", body = SearchResults),
        (status = 400, description = "`dimension_mismatch`, `invalid_vector`", body = ErrorBody),
        (status = 422, description = "`invalid_k`, `vector_or_text`, `mode_needs_text`, `invalid_keyword_weight`, `invalid_ef_search`, `invalid_filter`, `too_many_filter_fields`, `too_many_ids`, `unsupported_mode` (hybrid on an index that is not cosine), `invalid_facets`", body = ErrorBody),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed` (names the reason), `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/vectors/index/{name}/search")]
#[tracing::instrument(skip_all, fields(index = %name, k = request.k))]
async fn search_index(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    request: web::Json<Object<SearchRequest>>,
) -> Result<web::Json<SearchResults>, ApiError> {
    let results =
        service::vectors::search_with_facets(&context, &name, request.into_inner().0).await?;
    Ok(web::Json(results))
}

/// One item: its vector and metadata.
#[utoipa::path(
    tag = "vectors",
    params(
        ("name" = String, Path, description = "The index"),
        ("id" = String, Path, description = "The item"),
    ),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 404, description = "`index_not_found`, `item_not_found`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/vectors/index/{name}/items/{id}")]
#[tracing::instrument(skip_all, fields(index = %path.0))]
async fn get_item(
    context: web::Data<ApiContext>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Item>, ApiError> {
    let (name, id) = path.into_inner();
    Ok(web::Json(
        service::vectors::get_item(&context, &name, id).await?,
    ))
}

/// Delete one item (acknowledged once committed to Lance).
#[utoipa::path(
    tag = "vectors",
    params(
        ("name" = String, Path, description = "The index"),
        ("id" = String, Path, description = "The item"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`index_not_found`, `item_not_found`", body = ErrorBody),
        (status = 409, description = "`reserved_index`: `workers` and `playbook_memory` need the admin role", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[delete("/vectors/index/{name}/items/{id}")]
#[tracing::instrument(skip_all, fields(index = %path.0))]
async fn delete_item(
    context: web::Data<ApiContext>,
    path: web::Path<(String, String)>,
    http: actix_web::HttpRequest,
) -> Result<web::Json<Deleted>, ApiError> {
    let (name, id) = path.into_inner();
    service::vectors::delete_item(&context, caller_role(&http), &name, id.clone()).await?;
    Ok(web::Json(Deleted { deleted: id }))
}

/// Change one item: set or (with `null`) remove metadata fields, replace
/// its text (embedded again unless a vector comes with it) or its vector.
/// What is not named stays: a change of metadata only is not embedded
/// again. Acknowledged once committed to Lance.
#[utoipa::path(
    tag = "vectors",
    params(
        ("name" = String, Path, description = "The index"),
        ("id" = String, Path, description = "The item"),
    ),
    request_body = ItemPatch,
    responses(
        (status = 200, description = "Matched 1, changed 0 or 1, and the Lance version", body = ChangeOutcome),
        (status = 400, description = "`invalid_id`, `dimension_mismatch`, `invalid_vector` (a text that is empty or too long too)", body = ErrorBody),
        (status = 404, description = "`index_not_found`, `item_not_found`", body = ErrorBody),
        (status = 409, description = "`reserved_index`: `workers` and `playbook_memory` need the admin role; `write_conflict`", body = ErrorBody),
        (status = 422, description = "`empty_change`, `invalid_metadata`, and the embedder's codes for a text", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[patch("/vectors/index/{name}/items/{id}")]
#[tracing::instrument(skip_all, fields(index = %path.0))]
async fn patch_item(
    context: web::Data<ApiContext>,
    path: web::Path<(String, String)>,
    http: actix_web::HttpRequest,
    request: web::Json<Object<ItemPatch>>,
) -> Result<web::Json<ChangeOutcome>, ApiError> {
    let (name, id) = path.into_inner();
    let patch = request.into_inner().0;
    let outcome =
        service::vectors::patch_item(&context, caller_role(&http), &name, id, patch).await?;
    Ok(web::Json(outcome))
}

/// Set fields on every item some ids or a filter select (`null` removes a
/// field). More than `vectors.max_bulk_items` items need `allow_large`.
/// Acknowledged once committed to Lance.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    request_body = BulkUpdate,
    responses(
        (status = 200, description = "Items matched and changed, and the Lance version", body = ChangeOutcome),
        (status = 400, description = "`invalid_id`, `duplicate_id`", body = ErrorBody),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 409, description = "`reserved_index`, `write_conflict` (names how many were written)", body = ErrorBody),
        (status = 422, description = "`no_selection`, `bulk_too_large`, `empty_change`, `invalid_metadata`, `invalid_filter`, `too_many_filter_fields`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/vectors/index/{name}/items/update")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn update_items(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    http: actix_web::HttpRequest,
    request: web::Json<Object<BulkUpdate>>,
) -> Result<web::Json<ChangeOutcome>, ApiError> {
    let request = request.into_inner().0;
    let outcome =
        service::vectors::update_items(&context, caller_role(&http), &name, request).await?;
    Ok(web::Json(outcome))
}

/// Delete every item some ids or a filter select. More than
/// `vectors.max_bulk_items` items need `allow_large`. Acknowledged once
/// committed to Lance.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    request_body = BulkDelete,
    responses(
        (status = 200, description = "Items matched and deleted, and the Lance version", body = ChangeOutcome),
        (status = 400, description = "`invalid_id`, `duplicate_id`", body = ErrorBody),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 409, description = "`reserved_index`, `write_conflict` (names how many were deleted)", body = ErrorBody),
        (status = 422, description = "`no_selection`, `bulk_too_large`, `invalid_filter`, `too_many_filter_fields`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
#[post("/vectors/index/{name}/items/delete")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn delete_items(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    http: actix_web::HttpRequest,
    request: web::Json<Object<BulkDelete>>,
) -> Result<web::Json<ChangeOutcome>, ApiError> {
    let request = request.into_inner().0;
    let outcome =
        service::vectors::delete_items(&context, caller_role(&http), &name, request).await?;
    Ok(web::Json(outcome))
}

/// How many items a filter selects (every item without one), at the
/// index's current Lance version.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    request_body = CountRequest,
    responses(
        (status = 200, description = "The count and the Lance version counted", body = CountAnswer),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_filter`, `too_many_filter_fields`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/vectors/index/{name}/count")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn count_items(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    request: web::Json<Object<CountRequest>>,
) -> Result<web::Json<CountAnswer>, ApiError> {
    let answer = service::vectors::count_items(&context, &name, request.into_inner().0).await?;
    Ok(web::Json(answer))
}

/// One page of the items a filter selects, in id order. Give the answer's
/// `next_cursor` back (with the same filter) for the next page: every page
/// reads the Lance version the first one read, whatever is written
/// meanwhile, until retention removes it (`410 version_gone`).
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index")),
    request_body = ScrollRequest,
    responses(
        (status = 200, description = "The page, the cursor of the next, the version", body = ScrollPage),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 410, description = "`version_gone`: the scroll's version was removed by retention", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `invalid_filter`, `too_many_filter_fields`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/vectors/index/{name}/items/scroll")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn scroll_items(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    request: web::Json<Object<ScrollRequest>>,
) -> Result<web::Json<ScrollPage>, ApiError> {
    let page = service::vectors::scroll_items(&context, &name, request.into_inner().0).await?;
    Ok(web::Json(page))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `jsonl` (default): one `{"id", "vector", "metadata", "text"}` per
    /// line; `arrow`: an Arrow IPC stream.
    #[param(inline)]
    format: Option<ExportFormat>,
    /// The Lance version to export (default: the current one).
    #[param(minimum = 1)]
    version: Option<i64>,
}

/// Every live item of one Lance version, streamed (memory stays at one
/// batch): JSON lines or an Arrow IPC stream. The version is in
/// `x-lance-version`.
#[utoipa::path(
    tag = "vectors",
    params(("name" = String, Path, description = "The index"), ExportQuery),
    responses(
        (status = 200, description = "The items", content(
            (String = "application/x-ndjson"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
        )),
        (status = 404, description = "`index_not_found`", body = ErrorBody),
        (status = 410, description = "`version_gone`", body = ErrorBody),
        (status = 503, description = "`index_loading`, `index_failed`, `index_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
#[get("/vectors/index/{name}/export")]
#[tracing::instrument(skip_all, fields(index = %name))]
async fn export_items(
    context: web::Data<ApiContext>,
    name: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let format = query.format.unwrap_or(ExportFormat::Jsonl);
    let version = match query.version {
        None => None,
        Some(v) if v >= 1 => Some(v as u64),
        Some(v) => {
            return Err(ApiError::InvalidQuery(format!(
                "version must be at least 1, got {v}"
            )))
        }
    };
    let (stream, version) =
        service::vectors::export_items(&context, &name, format, version).await?;
    let content_type = match format {
        ExportFormat::Jsonl => "application/x-ndjson",
        ExportFormat::Arrow => "application/vnd.apache.arrow.stream",
    };
    use futures::StreamExt;
    let stream = stream.map(|chunk| {
        chunk.map_err(|err| {
            tracing::warn!(%err, "export broke off");
            actix_web::error::ErrorInternalServerError("export broke off")
        })
    });
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CONTENT_TYPE, content_type))
        .insert_header(("x-lance-version", version))
        .streaming(stream))
}
