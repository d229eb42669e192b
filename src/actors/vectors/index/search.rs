//! The read path: searches, gets and lookups against the shared
//! [`crate::actors::vectors::core::Core`], on the caller's thread through
//! the published [`super::IndexReader`], or on a task of their own when
//! they came through the mailbox: reads run on every core and never wait
//! for a commit or each other.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use ractor::RpcReplyPort;
use serde_json::Value;

use super::write::embed_texts;
use super::{IndexArguments, Pipeline};
use crate::actors::vectors::core::Query;
use crate::actors::vectors::store::{self, PinnedMiss, PinnedQuery};
use crate::actors::vectors::IndexError;
use crate::domain::keyword::{KeywordQuery, SearchMode};
use crate::domain::vectors::{
    prepare_filter, prepare_vector, Hit, Item, Metric, PinnedHits, PinnedSearch, SearchRequest,
    ValidationError,
};

/// Validates a search in the mailbox (cheap), then runs it on its own task.
pub(super) fn dispatch(
    arguments: Arc<IndexArguments>,
    pipeline: Arc<Pipeline>,
    request: SearchRequest,
    reply: RpcReplyPort<Result<Vec<Hit>, IndexError>>,
) {
    if let Err(err) = request.validate() {
        let _ = reply.send(Err(err.into()));
        return;
    }
    tokio::spawn(async move {
        let result = run(&arguments, &pipeline, request, Run::Blocking).await;
        let _ = reply.send(result);
    });
}

/// Where the search itself (the CPU part) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Run {
    /// On the calling thread.
    Inline,
    /// On tokio's blocking pool (the caller is a task of the actor's
    /// runtime that should not be held).
    Blocking,
}

/// A validated search: embeds the text if the mode needs a vector, then
/// scores. `request.validate()` has passed.
pub(super) async fn run(
    arguments: &IndexArguments,
    pipeline: &Arc<Pipeline>,
    request: SearchRequest,
    on: Run,
) -> Result<Vec<Hit>, IndexError> {
    let started = Instant::now();
    let definition = &arguments.definition;
    let mode = request.mode();
    if mode == SearchMode::Hybrid && definition.metric != Metric::Cosine {
        return Err(ValidationError::UnsupportedMode(definition.metric).into());
    }
    let keywords = match (mode.uses_keywords(), request.text.as_deref()) {
        (true, Some(text)) => KeywordQuery::parse(text, definition.analysis, &pipeline.synonyms),
        _ => KeywordQuery::default(),
    };
    // A keyword search embeds nothing: it works while the embedder is down.
    let vector = if mode.uses_vectors() {
        let raw = match (request.vector, request.text) {
            (Some(vector), _) => vector,
            (None, Some(text)) => embed_texts(arguments, vec![text])
                .await?
                .pop()
                .ok_or_else(|| IndexError::Internal("embedder returned no vector".into()))?,
            (None, None) => {
                return Err(ValidationError::VectorOrText {
                    field: "query".into(),
                }
                .into())
            }
        };
        prepare_vector(raw, definition.dimension, definition.metric, "vector")?
    } else {
        Vec::new()
    };
    let filter = match request.prepared {
        Some(prepared) => prepared,
        None => prepare_filter(request.filter)?,
    };
    let query = Query {
        vector,
        k: request.k,
        filter: filter.equalities,
        predicate: filter.predicate,
        exclude_ids: request.exclude_ids.unwrap_or_default(),
        ef_search: request.ef_search,
        mode,
        keywords,
        keyword_weight: request
            .keyword_weight
            .unwrap_or(arguments.settings.keyword_weight),
        explain: request.explain,
        include_ids: request.include_ids,
    };
    let hits = match on {
        Run::Inline => pipeline.core.search(&query)?,
        Run::Blocking => {
            let core = pipeline.core.clone();
            tokio::task::spawn_blocking(move || core.search(&query))
                .await
                .map_err(|e| IndexError::Internal(e.to_string()))??
        }
    };
    pipeline
        .metrics
        .vector_search_duration
        .with_label_values(&[&definition.name])
        .observe(started.elapsed().as_secs_f64());
    Ok(hits)
}

pub(super) fn get_item(pipeline: &Pipeline, id: &str) -> Result<Item, IndexError> {
    let entry = pipeline
        .core
        .get(id)
        .ok_or_else(|| IndexError::ItemNotFound {
            index: pipeline.name.clone(),
            id: id.to_string(),
        })?;
    let vector = pipeline.core.vector(entry.seq)?;
    Ok(Item {
        id: id.to_string(),
        vector,
        metadata: serde_json::from_str(&entry.metadata).unwrap_or(Value::Null),
    })
}

/// The metadata of those of `ids` that exist.
pub(super) fn lookup(pipeline: &Pipeline, ids: Vec<String>) -> HashMap<String, Value> {
    ids.into_iter()
        .filter_map(|id| {
            let entry = pipeline.core.get(&id)?;
            let metadata = serde_json::from_str(&entry.metadata).unwrap_or(Value::Null);
            Some((id, metadata))
        })
        .collect()
}

/// How many live items a filter selects, and the counts of some fields'
/// values among them (facets), at the live version.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub count: usize,
    pub version: u64,
    pub facets: HashMap<String, Vec<crate::actors::vectors::core::FacetCount>>,
}

/// [`Tally`] of the live items, on the blocking pool (a facet parses the
/// metadata of every selected item).
pub(super) async fn tally(
    pipeline: &Pipeline,
    filter: Option<crate::domain::filter::PreparedFilter>,
    facets: Vec<String>,
    exclude_ids: Vec<String>,
) -> Result<Tally, IndexError> {
    let core = pipeline.core.clone();
    tokio::task::spawn_blocking(move || {
        let (version, count, facets) = if facets.is_empty() {
            let (version, count) = core.count(filter.as_ref(), &exclude_ids)?;
            (version, count, HashMap::new())
        } else {
            core.facets(filter.as_ref(), &facets, &exclude_ids)?
        };
        Ok(Tally {
            count,
            version,
            facets,
        })
    })
    .await
    .map_err(|e| IndexError::Internal(e.to_string()))?
}

/// One page of a scroll, checked: the version it reads (`None`: the
/// current one), where it stands, its size.
#[derive(Debug, Clone)]
pub struct ScrollQuery {
    pub filter: Option<crate::domain::filter::PreparedFilter>,
    pub cursor: Option<crate::domain::items::Cursor>,
    pub limit: usize,
    pub with_vectors: bool,
}

/// A page of the items a filter selects, in id order, of one version:
/// from the live items while they are that version (no read of Lance),
/// else from Lance as of it (`version_gone` once retention removed it).
pub(super) async fn scroll(
    arguments: &IndexArguments,
    pipeline: &Arc<Pipeline>,
    query: ScrollQuery,
) -> Result<crate::domain::items::ScrollPage, IndexError> {
    use crate::domain::items::{Cursor, ScrollPage, ScrolledItem};
    let wanted = query.cursor.as_ref().map(|c| c.version);
    let after = query.cursor.as_ref().map(|c| c.after.clone());
    let core = pipeline.core.clone();
    let (filter, limit, with_vectors) = (query.filter.clone(), query.limit, query.with_vectors);
    let live = tokio::task::spawn_blocking(move || -> Result<_, IndexError> {
        let (version, items, more) = core.page(filter.as_ref(), after.as_deref(), limit)?;
        if wanted.is_some_and(|w| w != version) {
            return Ok(None);
        }
        let items = items
            .into_iter()
            .map(|(id, entry)| {
                let vector = if with_vectors {
                    Some(core.vector(entry.seq)?)
                } else {
                    None
                };
                Ok(ScrolledItem {
                    id,
                    metadata: serde_json::from_str(&entry.metadata).unwrap_or(Value::Null),
                    vector,
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        Ok(Some((version, items, more)))
    })
    .await
    .map_err(|e| IndexError::Internal(e.to_string()))??;
    // `None` only when the cursor names a version the live items are not.
    let (version, items, more) = match (live, wanted) {
        (Some(page), _) => page,
        (None, Some(version)) => page_at(arguments, &query, version).await?,
        (None, None) => return Err(IndexError::Internal("a scroll page read no version".into())),
    };
    let next_cursor = more.then(|| items.last()).flatten().map(|last| {
        Cursor {
            version,
            after: last.id.clone(),
        }
        .encode()
    });
    Ok(ScrollPage {
        items,
        next_cursor,
        lance_version: version,
    })
}

/// A scroll page read from Lance as of `version`.
async fn page_at(
    arguments: &IndexArguments,
    query: &ScrollQuery,
    version: u64,
) -> Result<(u64, Vec<crate::domain::items::ScrolledItem>, bool), IndexError> {
    use crate::domain::items::ScrolledItem;
    let name = &arguments.definition.name;
    let dataset = store::open_at(&dataset_path(arguments), version)
        .await
        .map_err(|miss| match miss {
            PinnedMiss::VersionGone => IndexError::VersionGone {
                index: name.clone(),
                version,
            },
            PinnedMiss::Store(err) => err.into(),
        })?;
    let after = query.cursor.as_ref().map(|c| c.after.as_str());
    let mut page = Vec::with_capacity(query.limit + 1);
    for row in store::live_rows(&dataset).await? {
        if after.is_some_and(|after| row.id.as_str() <= after) {
            continue;
        }
        let metadata: Value = row
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null);
        if let Some(filter) = &query.filter {
            let passes = filter.equalities.iter().all(|(field, key)| {
                metadata
                    .get(field)
                    .and_then(crate::domain::vectors::filter_key)
                    .as_ref()
                    == Some(key)
            }) && filter
                .predicate
                .as_ref()
                .is_none_or(|p| p.matches(&metadata));
            if !passes {
                continue;
            }
        }
        page.push((
            row.seq,
            ScrolledItem {
                id: row.id,
                metadata,
                vector: None,
            },
        ));
        if page.len() > query.limit {
            break;
        }
    }
    let more = page.len() > query.limit;
    page.truncate(query.limit);
    if query.with_vectors && !page.is_empty() {
        let seqs: Vec<u64> = page.iter().map(|(seq, _)| *seq).collect();
        let rows = store::rows_at(&dataset, &seqs, arguments.definition.dimension).await?;
        for (seq, item) in page.iter_mut() {
            item.vector = rows.get(seq).map(|r| r.vector.clone());
        }
    }
    Ok((
        version,
        page.into_iter().map(|(_, item)| item).collect(),
        more,
    ))
}

/// The dataset of one version of the index, to export: the current one
/// unless `version` is given.
pub(super) async fn export_source(
    arguments: &IndexArguments,
    pipeline: &Pipeline,
    version: Option<u64>,
) -> Result<(lance::Dataset, u64), IndexError> {
    let version = version.unwrap_or_else(|| pipeline.core.version());
    let dataset = store::open_at(&dataset_path(arguments), version)
        .await
        .map_err(|miss| match miss {
            PinnedMiss::VersionGone => IndexError::VersionGone {
                index: arguments.definition.name.clone(),
                version,
            },
            PinnedMiss::Store(err) => err.into(),
        })?;
    Ok((dataset, version))
}

/// Where the index's Lance dataset lives.
pub(super) fn dataset_path(arguments: &IndexArguments) -> std::path::PathBuf {
    arguments
        .dir
        .join(format!("{}.lance", arguments.definition.name))
}

/// An exact search at one Lance version, on its own task. The newest
/// version (what a new chat reads) is answered from the live items, which
/// are exactly that version ([`crate::actors::vectors::core::Core::exact`]):
/// no scan. An older version (a rerun) is read from Lance.
pub(super) fn pinned(
    arguments: Arc<IndexArguments>,
    pipeline: Arc<Pipeline>,
    request: PinnedSearch,
    reply: RpcReplyPort<Result<PinnedHits, IndexError>>,
) {
    tokio::spawn(async move {
        let _ = reply.send(run_pinned(&arguments, &pipeline, request).await);
    });
}

async fn run_pinned(
    arguments: &IndexArguments,
    pipeline: &Arc<Pipeline>,
    request: PinnedSearch,
) -> Result<PinnedHits, IndexError> {
    let definition = &arguments.definition;
    // `only_ids` bounds a lookup by itself (the playbook's workers).
    if request.only_ids.is_none() {
        crate::domain::vectors::validate_k(request.k)?;
    }
    let vector = prepare_vector(
        request.vector,
        definition.dimension,
        definition.metric,
        "vector",
    )?;
    let filter = prepare_filter(request.filter)?;
    let live = pipeline.core.version();
    if request.version.is_none() || request.version == Some(live) {
        let query = Query {
            filter: filter.equalities,
            predicate: filter.predicate,
            exclude_ids: request.exclude_ids,
            ..Query::nearest(vector, request.k)
        };
        let only: Option<HashSet<String>> = request.only_ids.map(|ids| ids.into_iter().collect());
        // Exact scans of the live items use half the cores at most: a
        // burst of chats queues here and leaves the searches the rest.
        let _scan = live_scans()
            .acquire()
            .await
            .map_err(|e| IndexError::Internal(e.to_string()))?;
        let core = pipeline.core.clone();
        let (version, hits) =
            tokio::task::spawn_blocking(move || core.exact(&query, only.as_ref()))
                .await
                .map_err(|e| IndexError::Internal(e.to_string()))??;
        return Ok(PinnedHits { version, hits });
    }
    let path = dataset_path(arguments);
    let version = request.version.unwrap_or(live);
    let query = PinnedQuery {
        vector,
        metric: definition.metric,
        k: request.k,
        filter,
        exclude: request.exclude_ids.into_iter().collect(),
        only: request.only_ids.map(|ids| ids.into_iter().collect()),
    };
    // A scan of a whole version: two at a time in the process, so a burst
    // of reruns cannot hold every version in memory at once; its CPU on
    // the blocking pool, not on the actors' threads.
    static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _scan = SCANS
        .acquire()
        .await
        .map_err(|e| IndexError::Internal(e.to_string()))?;
    let runtime = tokio::runtime::Handle::current();
    let scanned = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move { store::search_at(&path, version, &query).await })
    })
    .await
    .map_err(|e| IndexError::Internal(e.to_string()))?;
    match scanned {
        Ok(hits) => Ok(PinnedHits { version, hits }),
        Err(PinnedMiss::VersionGone) => Err(IndexError::VersionGone {
            index: definition.name.clone(),
            version,
        }),
        Err(PinnedMiss::Store(err)) => Err(err.into()),
    }
}

/// Permits for exact scans of live items: half the cores, at least one.
fn live_scans() -> &'static tokio::sync::Semaphore {
    static SCANS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SCANS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new((cores / 2).max(1))
    })
}
