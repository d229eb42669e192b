//! The vector-index use cases: create, list, inspect and drop indexes; add,
//! search, get, patch and delete items, update and delete them in bulk,
//! count them. Index changes go to `vector_catalog`,
//! item operations to the index's own actor `index:<name>`; a search of a
//! loaded index runs on its published reader, without a message.

use crate::actors::vectors::catalog::{self, VectorCatalogMessage};
use crate::actors::vectors::index::{
    self, actor_name, ChangeKind, ChangeRequest, IndexMessage, Tally, Target,
};
use crate::actors::vectors::IndexError;
use crate::domain::auth::Role;
use crate::domain::filter::PreparedFilter;
use crate::domain::items::{
    check_facets, BulkDelete, BulkUpdate, ChangeError, ChangeOutcome, CountAnswer, CountRequest,
    Cursor, ItemPatch, ScrollPage, ScrollRequest, Selection, SelectionError, MAX_SCROLL_LIMIT,
};
use crate::domain::vectors::{
    CreateIndex, Hit, IndexDefinition, IndexInfo, IndexSummary, Item, ItemInput, ReindexAnswer,
    SearchRequest, UpsertOutcome, ValidationError,
};
use crate::supervision::{CallError, ChildStatus};

use super::limits::{check_ids, check_reserved, prepare_filter};
use super::{ApiError, Context};

/// Calls the actor of index `name`. The `vectors` board answers first,
/// without a message: an index that is not in the tree is a 404, one that
/// is loading (starting or restarting) a `503 index_loading`, one its
/// supervisor gave up on a `503 index_failed` with the last reason — all
/// at once, never after a request timeout.
pub async fn call_index<T, F>(context: &Context, name: &str, build: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(ractor::RpcReplyPort<T>) -> IndexMessage,
{
    call_index_with(context, name, context.timeout(), build).await
}

/// [`call_index`] with a timeout of its own.
pub async fn call_index_with<T, F>(
    context: &Context,
    name: &str,
    timeout: std::time::Duration,
    build: F,
) -> Result<T, ApiError>
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
    match context.call_with(&actor, build, timeout).await {
        Err(CallError::Unavailable { .. }) => match context.vectors_board.status(&actor) {
            None => Err(not_found()),
            Some(ChildStatus::Failed) => Err(failed()),
            Some(_) => Err(IndexError::Unavailable.into()),
        },
        Err(CallError::Failed { .. }) => Err(failed()),
        other => Ok(other?),
    }
}

/// Creates an index; answers once it is loaded and usable. `role` is the
/// caller's (`None`: no tokens configured).
pub async fn create_index(
    context: &Context,
    role: Option<Role>,
    request: CreateIndex,
) -> Result<IndexDefinition, ApiError> {
    check_reserved(role, &request.name)?;
    Ok(context
        .call(catalog::NAME, |reply| VectorCatalogMessage::Create {
            request,
            reply,
        })
        .await??)
}

/// Every index with its status and count.
pub async fn list_indexes(context: &Context) -> Result<Vec<IndexSummary>, ApiError> {
    Ok(context
        .call(catalog::NAME, |reply| VectorCatalogMessage::List { reply })
        .await?)
}

/// An index's definition and state.
pub async fn index_info(context: &Context, name: &str) -> Result<IndexInfo, ApiError> {
    call_index(context, name, |reply| IndexMessage::Info { reply }).await
}

/// Drops an index and removes its data.
pub async fn drop_index(context: &Context, name: &str) -> Result<(), ApiError> {
    let name = name.to_string();
    Ok(context
        .call(catalog::NAME, |reply| VectorCatalogMessage::Drop {
            name,
            reply,
        })
        .await??)
}

/// Moves an index to the current analysis: recorded, then the index
/// restarts and re-embeds in the background (see `index::reindex`).
pub async fn reindex(context: &Context, name: &str) -> Result<ReindexAnswer, ApiError> {
    use crate::actors::vectors::catalog::ReindexStarted;
    use crate::domain::analysis::Analysis;
    use crate::domain::vectors::ReindexRequestState;
    let index = name.to_string();
    let started = context
        .call_with(
            catalog::NAME,
            |reply| VectorCatalogMessage::Reindex {
                name: index.clone(),
                reply,
            },
            // It includes a restart of the index.
            context.timeout() * 5,
        )
        .await??;
    let (from, state) = match started {
        ReindexStarted::Started { from } => (from, ReindexRequestState::Started),
        ReindexStarted::Running { from } => (from, ReindexRequestState::Running),
        ReindexStarted::Current => (Analysis::CURRENT, ReindexRequestState::Current),
    };
    Ok(ReindexAnswer {
        index,
        from,
        to: Analysis::CURRENT,
        state,
    })
}

/// Upserts items by id; acknowledged once committed to Lance. In
/// `workers`, the answer names the items that look like a worker already
/// there, or one earlier in the batch (checked before the write).
pub async fn add_items(
    context: &Context,
    role: Option<Role>,
    name: &str,
    items: Vec<ItemInput>,
) -> Result<crate::domain::vectors::AddOutcome, ApiError> {
    check_reserved(role, name)?;
    let hints = match index::reader(&context.directory, name) {
        Some(reader) if name == crate::actors::matrix::WORKERS => {
            let batch = items
                .iter()
                .filter_map(|item| match &item.metadata {
                    Some(serde_json::Value::Object(map)) => Some((
                        item.id.clone(),
                        serde_json::Value::Object(map.clone()).to_string(),
                    )),
                    _ => None,
                })
                .collect();
            reader.duplicates(batch).await
        }
        _ => Vec::new(),
    };
    let outcome: UpsertOutcome =
        call_index(context, name, |reply| IndexMessage::Upsert { items, reply }).await??;
    Ok(crate::domain::vectors::AddOutcome {
        inserted: outcome.inserted,
        updated: outcome.updated,
        possible_duplicates: hints,
    })
}

/// The k best items for a query. A loaded index is searched on its
/// published reader (on the caller's thread); otherwise the actor answers,
/// and says whether the index is loading, failed or gone.
pub async fn search_index(
    context: &Context,
    name: &str,
    request: SearchRequest,
) -> Result<Vec<Hit>, ApiError> {
    Ok(search_with_facets(context, name, request).await?.hits)
}

/// [`search_index`], and with `facets` asked the counts of their values
/// over every item the filter selects.
pub async fn search_with_facets(
    context: &Context,
    name: &str,
    mut request: SearchRequest,
) -> Result<crate::domain::vectors::SearchResults, ApiError> {
    request.prepared = prepare_filter(context, request.filter.as_ref())?;
    check_ids(context, "exclude_ids", request.exclude_ids.as_deref())?;
    check_search_text(context, request.text.as_deref())?;
    let facets = request.facets.take().unwrap_or_default();
    check_facets(&facets).map_err(IndexError::from)?;
    let filter = request.prepared.clone();
    let hits = match index::reader(&context.directory, name) {
        Some(reader) => reader.search(request).await?,
        None => {
            call_index(context, name, |reply| IndexMessage::Search {
                request,
                reply,
            })
            .await??
        }
    };
    let facets = if facets.is_empty() {
        None
    } else {
        Some(
            tally(context, name, filter, facets, Vec::new())
                .await?
                .facets
                .into_iter()
                .collect(),
        )
    };
    Ok(crate::domain::vectors::SearchResults { hits, facets })
}

/// How many items a filter selects (every item without one).
pub async fn count_items(
    context: &Context,
    name: &str,
    request: CountRequest,
) -> Result<CountAnswer, ApiError> {
    let filter = prepare_filter(context, request.filter.as_ref())?;
    let tally = tally(context, name, filter, Vec::new(), Vec::new()).await?;
    Ok(CountAnswer {
        count: tally.count,
        lance_version: tally.version,
    })
}

/// Counts and facets on the published reader, else through the actor.
pub(crate) async fn tally(
    context: &Context,
    name: &str,
    filter: Option<PreparedFilter>,
    facets: Vec<String>,
    exclude_ids: Vec<String>,
) -> Result<Tally, ApiError> {
    match index::reader(&context.directory, name) {
        Some(reader) => Ok(reader.tally(filter, facets, exclude_ids).await?),
        None => Ok(call_index(context, name, |reply| IndexMessage::Tally {
            filter,
            facets,
            exclude_ids,
            reply,
        })
        .await??),
    }
}

/// One page of the items a filter selects, in id order; every page of
/// one scroll reads the version its first page read.
pub async fn scroll_items(
    context: &Context,
    name: &str,
    request: ScrollRequest,
) -> Result<ScrollPage, ApiError> {
    let limit = request.limit.unwrap_or(100);
    if !(1..=MAX_SCROLL_LIMIT).contains(&limit) {
        return Err(IndexError::from(ChangeError::InvalidLimit(limit)).into());
    }
    let cursor = request
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()
        .map_err(IndexError::from)?;
    let query = index::ScrollQuery {
        filter: prepare_filter(context, request.filter.as_ref())?,
        cursor,
        limit,
        with_vectors: request.with_vectors,
    };
    match index::reader(&context.directory, name) {
        Some(reader) => Ok(reader.scroll(query).await?),
        None => {
            Ok(call_index(context, name, |reply| IndexMessage::Scroll { query, reply }).await??)
        }
    }
}

/// Every live item of one version of the index (the current one unless
/// `version` is given), streamed in `format`, and the version.
pub async fn export_items(
    context: &Context,
    name: &str,
    format: crate::actors::vectors::store::ExportFormat,
    version: Option<u64>,
) -> Result<
    (
        futures::stream::BoxStream<
            'static,
            Result<bytes::Bytes, crate::actors::vectors::store::StoreError>,
        >,
        u64,
    ),
    ApiError,
> {
    let (dataset, version) = call_index(context, name, |reply| IndexMessage::ExportSource {
        version,
        reply,
    })
    .await??;
    let stream = crate::actors::vectors::store::export(dataset, format)
        .await
        .map_err(IndexError::from)?;
    Ok((stream, version))
}

/// Changes one item's fields, text or vector; the rest stays (a change of
/// metadata only is not embedded again). Durable once answered.
pub async fn patch_item(
    context: &Context,
    role: Option<Role>,
    name: &str,
    id: String,
    patch: ItemPatch,
) -> Result<ChangeOutcome, ApiError> {
    check_reserved(role, name)?;
    crate::domain::vectors::validate_id(&id, "id").map_err(IndexError::from)?;
    let metadata = patch.metadata.unwrap_or_default();
    if metadata.is_empty() && patch.text.is_none() && patch.vector.is_none() {
        return Err(IndexError::from(ChangeError::EmptyChange(
            "give at least one of 'metadata' (not empty), 'text' and 'vector'",
        ))
        .into());
    }
    check_change_text(patch.text.as_deref())?;
    let request = ChangeRequest {
        target: Target::One(id),
        change: ChangeKind::Patch {
            metadata,
            text: patch.text,
            vector: patch.vector,
        },
        allow_large: false,
        max_items: 1,
    };
    change(context, name, request).await
}

/// Sets fields on the items some ids or a filter select.
pub async fn update_items(
    context: &Context,
    role: Option<Role>,
    name: &str,
    request: BulkUpdate,
) -> Result<ChangeOutcome, ApiError> {
    check_reserved(role, name)?;
    let (selection, set) = request.split();
    if set.is_empty() {
        return Err(IndexError::from(ChangeError::EmptyChange(
            "'set' names no field: nothing to update",
        ))
        .into());
    }
    let request = ChangeRequest {
        target: target(context, "update", &selection)?,
        change: ChangeKind::Patch {
            metadata: set,
            text: None,
            vector: None,
        },
        allow_large: selection.allow_large,
        max_items: context.settings.vectors.max_bulk_items,
    };
    change(context, name, request).await
}

/// Deletes the items some ids or a filter select.
pub async fn delete_items(
    context: &Context,
    role: Option<Role>,
    name: &str,
    request: BulkDelete,
) -> Result<ChangeOutcome, ApiError> {
    check_reserved(role, name)?;
    let selection = request.selection();
    let request = ChangeRequest {
        target: target(context, "delete", &selection)?,
        change: ChangeKind::Delete,
        allow_large: selection.allow_large,
        max_items: context.settings.vectors.max_bulk_items,
    };
    change(context, name, request).await
}

/// A selection's ids or filter, checked (see [`Selection::checked_ids`]).
fn target(
    context: &Context,
    what: &'static str,
    selection: &Selection,
) -> Result<Target, ApiError> {
    let max = context.settings.vectors.max_bulk_items;
    let ids = selection.checked_ids(what, max).map_err(|err| match err {
        SelectionError::Change(err) => IndexError::from(err),
        SelectionError::Invalid(err) => IndexError::from(err),
    })?;
    match ids {
        Some(ids) => Ok(Target::Ids(ids.to_vec())),
        None => {
            let filter = prepare_filter(context, selection.filter.as_ref())?
                .filter(|f| !f.is_empty())
                .ok_or_else(|| IndexError::from(ChangeError::NoSelection(what)))?;
            Ok(Target::Filter(filter))
        }
    }
}

/// Runs a checked change on index `name` (the caller has checked the role).
pub(crate) async fn change(
    context: &Context,
    name: &str,
    request: ChangeRequest,
) -> Result<ChangeOutcome, ApiError> {
    // A large change commits group after group: it may take longer than
    // one request's bound.
    let groups = if request.allow_large { 20 } else { 2 };
    Ok(
        call_index_with(context, name, context.timeout() * groups, |reply| {
            IndexMessage::Change { request, reply }
        })
        .await??,
    )
}

/// One item: its vector and metadata.
pub async fn get_item(context: &Context, name: &str, id: String) -> Result<Item, ApiError> {
    Ok(call_index(context, name, |reply| IndexMessage::Get { id, reply }).await??)
}

/// Deletes one item (acknowledged once committed to Lance).
pub async fn delete_item(
    context: &Context,
    role: Option<Role>,
    name: &str,
    id: String,
) -> Result<(), ApiError> {
    check_reserved(role, name)?;
    Ok(call_index(context, name, |reply| IndexMessage::Delete { id, reply }).await??)
}

/// The longest search text: the vectors' own bound, or the embedder's
/// when that is smaller (a semantic or hybrid text is embedded), in every
/// mode, so the bound is one number the document can state.
pub fn search_text_limit(settings: &crate::config::Settings) -> usize {
    crate::domain::vectors::MAX_SEARCH_TEXT_CHARS.min(settings.embed.max_text_chars)
}

/// A patch's new text says something and is within the items' text bound
/// (the embedder holds its own when it embeds it).
fn check_change_text(text: Option<&str>) -> Result<(), ApiError> {
    let max = crate::domain::vectors::MAX_TEXT_CHARS;
    let invalid = |reason: String| {
        Err(IndexError::Invalid(ValidationError::InvalidVector {
            field: "text".into(),
            reason,
        })
        .into())
    };
    match text {
        Some(text) if text.trim().is_empty() => invalid("must not be empty".into()),
        Some(text) if text.chars().count() > max => invalid(format!(
            "must be at most {max} characters, got {}",
            text.chars().count()
        )),
        _ => Ok(()),
    }
}

fn check_search_text(context: &Context, text: Option<&str>) -> Result<(), ApiError> {
    let max = search_text_limit(&context.settings);
    match text.map(|t| t.chars().count()) {
        Some(chars) if chars > max => Err(IndexError::Invalid(ValidationError::InvalidVector {
            field: "query.text".into(),
            reason: format!("must be at most {max} characters, got {chars}"),
        })
        .into()),
        _ => Ok(()),
    }
}
