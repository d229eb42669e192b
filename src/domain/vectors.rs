//! Vector-index rules that need no I/O: names, metrics and distances,
//! item and query validation, metadata filters.

use std::collections::HashSet;

use crate::codes::{ErrorCode, HasCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::filter::{filter_key, PreparedFilter, MAX_FILTER_CONDITIONS};
pub use super::keyword::{HitExplain, SearchMode};

/// Largest dimension an index may have.
pub const MAX_DIMENSION: usize = 4096;
/// Longest item id, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// `k` may be 1..=MAX_K.
pub const MAX_K: usize = 1000;
/// `ef_search` (an index's default, or a request's own) may be 1..=MAX_EF_SEARCH.
pub const MAX_EF_SEARCH: u32 = 4096;
/// Longest item text, in characters (it is stored for keyword search).
pub const MAX_TEXT_CHARS: usize = 65_536;
/// Longest search text, in characters.
pub const MAX_SEARCH_TEXT_CHARS: usize = 16_384;

/// How nearness is measured. Distances are reported so that smaller is
/// nearer: `1 - cos` for cosine, squared L2 for l2, `-dot` for inner product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    #[default]
    Cosine,
    L2,
    InnerProduct,
}

impl Metric {
    /// Whether vectors are L2-normalised before indexing and search.
    pub fn normalises(self) -> bool {
        self == Metric::Cosine
    }

    /// Converts faiss's raw score into the reported distance.
    pub fn distance(self, raw: f32) -> f32 {
        match self {
            Metric::Cosine => (1.0 - raw).max(0.0),
            Metric::L2 => raw,
            Metric::InnerProduct => -raw,
        }
    }

    /// The exact distance between two prepared vectors (brute-force path).
    pub fn exact(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => self.distance(dot(a, b)),
            Metric::InnerProduct => -dot(a, b),
            Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    }
}

/// HNSW build and search parameters of one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswParams {
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
}

impl HnswParams {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let check = |field: &'static str, got: u32, min: u32, max: u32| {
            if (min..=max).contains(&got) {
                Ok(())
            } else {
                Err(ValidationError::InvalidHnsw {
                    field,
                    min,
                    max,
                    got,
                })
            }
        };
        check("m", self.m, 4, 128)?;
        check("ef_construction", self.ef_construction, 8, 2048)?;
        check("ef_search", self.ef_search, 1, MAX_EF_SEARCH)
    }
}

/// How an index's faiss side holds its vectors; fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VectorStorage {
    /// 4 bytes a component.
    #[default]
    F32,
    /// 2 bytes a component (faiss `SQfp16`, no training): half the
    /// vectors' memory; distances are computed from the rounded vectors,
    /// within about 1e-3 of the f32 ones.
    Fp16,
}

/// How an index is searched when no filter narrows it; fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// An HNSW graph: approximate and sub-linear, each insert a graph walk.
    #[default]
    Hnsw,
    /// Every vector scored: exact, linear in the index's size, and an
    /// insert is a copy. For small indexes and ones always searched with a
    /// filter (filtered searches scan their candidates exactly either
    /// way), such as the playbook.
    Flat,
}

/// What defines an index; persisted beside its data and fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndexDefinition {
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    /// Build and search parameters (used by `kind: hnsw`).
    pub hnsw: HnswParams,
    /// Absent in definitions written before it: an HNSW graph.
    #[serde(default)]
    pub kind: IndexKind,
    /// Absent in definitions written before it: f32.
    #[serde(default)]
    pub storage: VectorStorage,
    /// How texts are stemmed for keywords and the built-in embedder (see
    /// `domain::analysis`). Absent in definitions written before it: `v1`;
    /// new indexes get the current one.
    #[serde(default)]
    pub analysis: crate::domain::analysis::Analysis,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Synonym groups of this index's keyword queries, beside the
    /// configured ones (`vectors.synonyms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<Vec<String>>,
    /// A move to `analysis` from an older one, not finished yet: each
    /// incarnation that loads the index resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reindex: Option<Reindex>,
}

/// A reindex in progress, as its definition records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reindex {
    /// The analysis the index had; its built-in vectors are re-embedded.
    pub from: crate::domain::analysis::Analysis,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// How far a reindex has come (`GET /v1/vectors/index/{name}` and the
/// answer of `POST /v1/admin/indexes/{name}/reindex`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReindexProgress {
    pub from: crate::domain::analysis::Analysis,
    pub to: crate::domain::analysis::Analysis,
    pub state: ReindexState,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Items whose vector the built-in model of `from` made from their
    /// text, found by this incarnation's pass (a pass resumed after a
    /// restart finds only those still left).
    pub to_reembed: usize,
    /// Of those, re-embedded so far.
    pub reembedded: usize,
    /// Write backs skipped because a client wrote the item meanwhile: one
    /// embedded anew is left alone; one whose fields alone changed (its
    /// old vector kept) is re-embedded by the pass's next round.
    pub skipped: usize,
    /// Why the pass stopped, when `state` is `failed` (the next load of
    /// the index resumes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `POST /v1/admin/indexes/{name}/reindex`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReindexAnswer {
    pub index: String,
    pub from: crate::domain::analysis::Analysis,
    pub to: crate::domain::analysis::Analysis,
    /// `started` (202: the index restarts, then re-embeds in the
    /// background; its info's `reindex` shows how far), `running` (202: one
    /// was under way already), `current` (200: nothing to do).
    pub state: ReindexRequestState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReindexRequestState {
    Started,
    Running,
    Current,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReindexState {
    /// The keyword side already answers with the new analysis; vectors
    /// are being re-embedded.
    Running,
    Done,
    Failed,
}

impl IndexDefinition {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name(&self.name)?;
        validate_dimension(self.dimension)?;
        crate::domain::keyword::validate_synonyms(&self.synonyms, "synonyms")
            .map_err(ValidationError::InvalidSynonyms)?;
        self.hnsw.validate()
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Why an index request is invalid. Each variant carries the values a
/// caller needs to fix the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("index name '{0}' is invalid: use 1 to 64 of a-z, 0-9, '_' and '-'")]
    InvalidName(String),
    #[error("dimension must be between 1 and {MAX_DIMENSION}, got {0}")]
    InvalidDimension(usize),
    #[error("expected dimension {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("{field}: {reason}")]
    InvalidVector { field: String, reason: String },
    #[error("{field}: {reason}")]
    InvalidId { field: String, reason: String },
    #[error("id '{0}' appears more than once in the batch")]
    DuplicateId(String),
    #[error("at most {max} items per batch, got {got}")]
    BatchTooLarge { max: usize, got: usize },
    #[error("items must not be empty")]
    EmptyBatch,
    #[error("{field}: {reason}")]
    InvalidMetadata { field: String, reason: String },
    #[error("{field}: give exactly one of 'vector' and 'text'")]
    VectorOrText { field: String },
    #[error("k must be between 1 and {MAX_K}, got {0}")]
    InvalidK(usize),
    #[error("ef_search must be between 1 and {MAX_EF_SEARCH}, got {0}")]
    InvalidEfSearch(u32),
    #[error("hnsw.{field} must be between {min} and {max}, got {got}")]
    InvalidHnsw {
        field: &'static str,
        min: u32,
        max: u32,
        got: u32,
    },
    #[error("invalid filter at {0}")]
    Filter(super::filter::FilterError),
    #[error("a {mode} search needs a text: {reason}")]
    ModeNeedsText { mode: SearchMode, reason: String },
    #[error("keyword_weight must be between 0 and 1, got {0}")]
    InvalidKeywordWeight(f32),
    #[error("a hybrid search fuses cosine distances; this index's metric is {0:?} (use semantic or keyword)")]
    UnsupportedMode(Metric),
    #[error("{0}")]
    InvalidSynonyms(String),
}

impl HasCode for ValidationError {
    fn code(&self) -> ErrorCode {
        match self {
            ValidationError::InvalidName(_) => ErrorCode::InvalidName,
            ValidationError::InvalidDimension(_) => ErrorCode::InvalidDimension,
            ValidationError::DimensionMismatch { .. } => ErrorCode::DimensionMismatch,
            ValidationError::InvalidVector { .. } => ErrorCode::InvalidVector,
            ValidationError::InvalidId { .. } => ErrorCode::InvalidId,
            ValidationError::DuplicateId(_) => ErrorCode::DuplicateId,
            ValidationError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            ValidationError::EmptyBatch => ErrorCode::EmptyBatch,
            ValidationError::InvalidMetadata { .. } => ErrorCode::InvalidMetadata,
            ValidationError::VectorOrText { .. } => ErrorCode::VectorOrText,
            ValidationError::InvalidK(_) => ErrorCode::InvalidK,
            ValidationError::InvalidEfSearch(_) => ErrorCode::InvalidEfSearch,
            ValidationError::ModeNeedsText { .. } => ErrorCode::ModeNeedsText,
            ValidationError::InvalidKeywordWeight(_) => ErrorCode::InvalidKeywordWeight,
            ValidationError::UnsupportedMode(_) => ErrorCode::UnsupportedMode,
            ValidationError::InvalidHnsw { .. } => ErrorCode::InvalidHnsw,
            ValidationError::Filter(_) => ErrorCode::InvalidFilter,
            ValidationError::InvalidSynonyms(_) => ErrorCode::InvalidSynonyms,
        }
    }
}

/// `POST /v1/vectors/index` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// `[a-z0-9_-]{1,64}`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    #[serde(deserialize_with = "crate::domain::de::integer")]
    #[schema(minimum = 1, maximum = 4096)]
    pub dimension: usize,
    pub metric: Option<Metric>,
    #[serde(default, deserialize_with = "crate::domain::de::optional_object")]
    pub hnsw: Option<HnswOverrides>,
    /// `hnsw` (the default) or `flat`.
    pub kind: Option<IndexKind>,
    /// `f32` or `fp16`; the default is `vectors.storage`.
    pub storage: Option<VectorStorage>,
    /// Synonym groups of this index's keyword queries (beside the
    /// configured `vectors.synonyms`): each 2 to 16 words or phrases that
    /// mean the same, e.g. `[["CNA", "certified nursing assistant"]]`.
    #[schema(max_items = 1024)]
    pub synonyms: Option<Vec<Vec<String>>>,
}

/// Per-index HNSW settings; omitted ones come from `vectors.*` config.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswOverrides {
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 4, maximum = 128)]
    pub m: Option<u32>,
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 8, maximum = 2048)]
    pub ef_construction: Option<u32>,
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 1, maximum = 4096)]
    pub ef_search: Option<u32>,
}

impl CreateIndex {
    /// The definition this request asks for, defaults filled in.
    pub fn into_definition(
        self,
        defaults: HnswParams,
        storage: VectorStorage,
    ) -> Result<IndexDefinition, ValidationError> {
        let overrides = self.hnsw.unwrap_or_default();
        let definition = IndexDefinition {
            name: self.name,
            dimension: self.dimension,
            metric: self.metric.unwrap_or_default(),
            hnsw: HnswParams {
                m: overrides.m.unwrap_or(defaults.m),
                ef_construction: overrides
                    .ef_construction
                    .unwrap_or(defaults.ef_construction),
                ef_search: overrides.ef_search.unwrap_or(defaults.ef_search),
            },
            kind: self.kind.unwrap_or_default(),
            storage: self.storage.unwrap_or(storage),
            analysis: crate::domain::analysis::Analysis::CURRENT,
            created_at: chrono::Utc::now(),
            synonyms: self.synonyms.unwrap_or_default(),
            reindex: None,
        };
        definition.validate()?;
        Ok(definition)
    }
}

/// One item of `POST …/{name}/add`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    pub id: String,
    /// The item's vector; without one, `text` is embedded.
    pub vector: Option<Vec<f32>>,
    /// The item's text: stored for keyword search, and embedded when no
    /// `vector` is given.
    pub text: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItems {
    #[serde(deserialize_with = "crate::domain::de::objects")]
    pub items: Vec<ItemInput>,
}

/// `POST …/{name}/add` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UpsertOutcome {
    pub inserted: usize,
    pub updated: usize,
}

/// `POST …/{name}/add` reply: the counts, and in `workers` the items that
/// look like a worker already there or earlier in the batch (a hint:
/// nothing is merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AddOutcome {
    pub inserted: usize,
    pub updated: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub possible_duplicates: Vec<super::dedupe::DuplicateHint>,
}

/// The supervision-tree name of index `name`'s actor: `index:<name>`.
pub fn index_actor(name: &str) -> String {
    format!("index:{name}")
}

/// The index an actor's tree name belongs to (`index:<name>`), if any.
pub fn index_of(actor: &str) -> Option<&str> {
    actor.strip_prefix("index:")
}

/// `POST …/{name}/search` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector (of the index's dimension), or…
    pub vector: Option<Vec<f32>>,
    /// …a text, embedded by the service.
    pub text: Option<String>,
    #[serde(deserialize_with = "crate::domain::de::integer")]
    #[schema(minimum = 1, maximum = 1000)]
    pub k: usize,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Map<String, Value>>,
    /// Ids never returned (at most `limits.max_id_list`).
    pub exclude_ids: Option<Vec<String>>,
    /// This search's own graph-walk width (default: the index's).
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 1, maximum = 4096)]
    pub ef_search: Option<u32>,
    /// `semantic` (default): nearest vectors; `keyword`: BM25 over the
    /// items' texts (needs `text`); `hybrid`: both, fused (needs `text`,
    /// which is also embedded unless `vector` is given).
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// The keyword side's weight in a hybrid search, 0 to 1 (default:
    /// `vectors.keyword_weight`).
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub keyword_weight: Option<f32>,
    /// Give each hit an `explain` with the parts of its distance.
    #[serde(default)]
    pub explain: bool,
    /// Fields whose values are counted over every item the filter selects
    /// (not only the k hits): at most 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facets: Option<Vec<String>>,
    /// Ids to score and return even when they rank below `k` (the matrix
    /// search's playbook candidates); never from a client.
    #[serde(skip)]
    pub include_ids: Vec<String>,
    /// `filter`, parsed once by the use case that checked it (the matrix
    /// search's, with its typed conditions); the index parses `filter`
    /// itself when this is `None`. Never from a client.
    #[serde(skip)]
    pub prepared: Option<PreparedFilter>,
}

impl SearchRequest {
    /// A search of `k` for `text` (embedded in semantic mode), everything
    /// else default.
    pub fn for_text(text: String, k: usize) -> Self {
        Self {
            vector: None,
            text: Some(text),
            ..Self::for_vector(Vec::new(), k)
        }
    }

    /// A semantic search for `vector`, everything else default.
    pub fn for_vector(vector: Vec<f32>, k: usize) -> Self {
        Self {
            vector: Some(vector),
            text: None,
            k,
            filter: None,
            exclude_ids: None,
            ef_search: None,
            mode: None,
            keyword_weight: None,
            explain: false,
            facets: None,
            include_ids: Vec::new(),
            prepared: None,
        }
    }

    pub fn mode(&self) -> SearchMode {
        self.mode.unwrap_or_default()
    }

    /// What can be checked without the index: `k`, the query the mode
    /// needs (semantic: exactly one of `vector` and `text`; keyword: a
    /// `text` and no `vector`; hybrid: a `text`, a `vector` optional), the
    /// bounds of `ef_search` and of `keyword_weight`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_k(self.k)?;
        if let Some(text) = &self.text {
            let chars = text.chars().count();
            if chars > MAX_SEARCH_TEXT_CHARS {
                return Err(ValidationError::InvalidVector {
                    field: "query.text".into(),
                    reason: format!(
                        "must be at most {MAX_SEARCH_TEXT_CHARS} characters, got {chars}"
                    ),
                });
            }
        }
        match self.mode() {
            SearchMode::Semantic => {
                exactly_one_of_vector_or_text(self.vector.is_some(), self.text.as_deref(), "query")?
            }
            mode => {
                let needs = |reason: &str| ValidationError::ModeNeedsText {
                    mode,
                    reason: reason.to_string(),
                };
                match self.text.as_deref() {
                    None => return Err(needs("give the words to match in 'text'")),
                    Some(text) if text.trim().is_empty() => {
                        return Err(needs("'text' must not be empty"))
                    }
                    Some(text)
                        if crate::domain::keyword::query_terms(text, Default::default())
                            .is_empty() =>
                    {
                        return Err(needs("'text' has no letters or digits to match"))
                    }
                    Some(_) => {}
                }
                if mode == SearchMode::Keyword && self.vector.is_some() {
                    return Err(needs("a keyword search takes no 'vector'"));
                }
            }
        }
        if let Some(weight) = self.keyword_weight {
            if !(0.0..=1.0).contains(&weight) {
                return Err(ValidationError::InvalidKeywordWeight(weight));
            }
        }
        match self.ef_search {
            Some(ef) if !(1..=MAX_EF_SEARCH).contains(&ef) => {
                Err(ValidationError::InvalidEfSearch(ef))
            }
            _ => Ok(()),
        }
    }
}

/// An add batch, checked in full before anything is written: not empty,
/// at most `max_batch` items, valid and unique ids, and each item with a
/// vector, a non-empty text of at most [`MAX_TEXT_CHARS`] characters, or both (the
/// text is then stored for keyword search, not embedded).
pub fn validate_items(items: &[ItemInput], max_batch: usize) -> Result<(), ValidationError> {
    if items.is_empty() {
        return Err(ValidationError::EmptyBatch);
    }
    if items.len() > max_batch {
        return Err(ValidationError::BatchTooLarge {
            max: max_batch,
            got: items.len(),
        });
    }
    for (i, item) in items.iter().enumerate() {
        validate_id(&item.id, &format!("items[{i}].id"))?;
        let field = format!("items[{i}]");
        match (&item.vector, item.text.as_deref()) {
            (None, None) => return Err(ValidationError::VectorOrText { field }),
            (_, Some(text)) if text.trim().is_empty() => {
                return Err(ValidationError::InvalidVector {
                    field: format!("{field}.text"),
                    reason: "must not be empty".into(),
                })
            }
            (_, Some(text)) if text.chars().count() > MAX_TEXT_CHARS => {
                return Err(ValidationError::InvalidVector {
                    field: format!("{field}.text"),
                    reason: format!(
                        "must be at most {MAX_TEXT_CHARS} characters, got {}",
                        text.chars().count()
                    ),
                })
            }
            _ => {}
        }
    }
    check_unique_ids(items.iter().map(|i| i.id.as_str()))
}

/// A query or an item gives a vector or a text, never both or neither,
/// and a text must say something.
fn exactly_one_of_vector_or_text(
    has_vector: bool,
    text: Option<&str>,
    field: &str,
) -> Result<(), ValidationError> {
    if has_vector == text.is_some() {
        return Err(ValidationError::VectorOrText {
            field: field.to_string(),
        });
    }
    if text.is_some_and(|t| t.trim().is_empty()) {
        return Err(ValidationError::InvalidVector {
            field: format!("{field}.text"),
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// One search hit; smaller distance is nearer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub id: String,
    pub distance: f32,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// With `explain: true`: the parts of `distance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<HitExplain>,
    /// Returned only because the search asked for its id (`include_ids`):
    /// it ranked below `k`.
    #[serde(skip)]
    pub beyond_k: bool,
}

/// An exact search of an index as of one Lance version (time travel).
#[derive(Debug, Clone)]
pub struct PinnedSearch {
    pub vector: Vec<f32>,
    pub k: usize,
    pub filter: Option<Map<String, Value>>,
    pub exclude_ids: Vec<String>,
    /// Only these ids are candidates.
    pub only_ids: Option<Vec<String>>,
    /// `None`: the newest committed version.
    pub version: Option<u64>,
}

/// The hits of a [`PinnedSearch`] and the version they come from.
#[derive(Debug, Clone)]
pub struct PinnedHits {
    pub version: u64,
    pub hits: Vec<Hit>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    /// With `facets` asked: per field, its values and how many of the
    /// items the filter selects hold each, most frequent first (at most
    /// 100 values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<std::collections::BTreeMap<String, Vec<super::items::FacetCount>>>,
}

/// `GET …/{name}/items/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub id: String,
    pub vector: Vec<f32>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// `GET /v1/vectors/index/{name}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndexInfo {
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    pub hnsw: HnswParams,
    pub kind: IndexKind,
    pub storage: VectorStorage,
    /// How its texts are stemmed for keywords and the built-in embedder.
    pub analysis: crate::domain::analysis::Analysis,
    /// False for an index built with an older analysis: it keeps
    /// answering with that one (e.g. "nurses" does not find "nurse" under
    /// `v1`) until it is rebuilt.
    pub analysis_current: bool,
    /// Live items.
    pub count: usize,
    pub status: String,
    pub restarts: u64,
    pub lance_version: u64,
    pub fragments: u64,
    /// Vectors in the faiss graph, tombstoned ones included.
    pub graph_vectors: u64,
    /// Live items with a text in the keyword index.
    pub keyword_documents: usize,
    pub tombstones: u64,
    /// Seconds since the faiss snapshot was written; null if none.
    pub snapshot_age_secs: Option<f64>,
    /// Writes the faiss snapshot does not cover yet: what a restart would
    /// replay from Lance (the derived graph's lag behind its dataset).
    pub writes_since_snapshot: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The index's own synonym groups (the configured `vectors.synonyms`
    /// apply beside them).
    pub synonyms: Vec<Vec<String>>,
    /// The reindex this incarnation runs or finished; null if none.
    pub reindex: Option<ReindexProgress>,
}

/// `GET /v1/vectors/index`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndexList {
    pub indexes: Vec<IndexSummary>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndexSummary {
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    pub status: String,
    pub count: Option<usize>,
}

/// `[a-z0-9_-]{1,64}`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::InvalidName(
            name.chars().take(80).collect(),
        ))
    }
}

pub fn validate_dimension(dimension: usize) -> Result<(), ValidationError> {
    if (1..=MAX_DIMENSION).contains(&dimension) {
        Ok(())
    } else {
        Err(ValidationError::InvalidDimension(dimension))
    }
}

pub fn validate_k(k: usize) -> Result<(), ValidationError> {
    if (1..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(ValidationError::InvalidK(k))
    }
}

pub fn validate_id(id: &str, field: &str) -> Result<(), ValidationError> {
    let reason = if id.is_empty() {
        Some("must not be empty".to_string())
    } else if id.chars().count() > MAX_ID_CHARS {
        Some(format!(
            "must be at most {MAX_ID_CHARS} characters, got {}",
            id.chars().count()
        ))
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters".to_string())
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ValidationError::InvalidId {
            field: field.to_string(),
            reason,
        }),
    }
}

/// Checks a vector's length and components and prepares it for the index
/// (normalised for cosine).
pub fn prepare_vector(
    mut vector: Vec<f32>,
    dimension: usize,
    metric: Metric,
    field: &str,
) -> Result<Vec<f32>, ValidationError> {
    if vector.len() != dimension {
        return Err(ValidationError::DimensionMismatch {
            expected: dimension,
            got: vector.len(),
        });
    }
    if let Some(position) = vector.iter().position(|x| !x.is_finite()) {
        return Err(ValidationError::InvalidVector {
            field: field.to_string(),
            reason: format!("component {position} is not a finite number"),
        });
    }
    if metric.normalises() {
        // In f64: an f32's square overflows f32 from about 1.8e19 on.
        let norm = vector
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(ValidationError::InvalidVector {
                field: field.to_string(),
                reason: "a zero vector has no direction (cosine metric)".to_string(),
            });
        }
        for x in vector.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    Ok(vector)
}

/// Metadata must be a JSON object within `max_bytes` when serialised.
/// Returns its serialised form (what Lance stores).
pub fn prepare_metadata(
    metadata: Option<Value>,
    max_bytes: usize,
    field: &str,
) -> Result<Map<String, Value>, ValidationError> {
    let map = match metadata {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ValidationError::InvalidMetadata {
                field: field.to_string(),
                reason: "must be a JSON object".to_string(),
            })
        }
    };
    // `location` is an item's place, as the geo filters read it.
    if let Some(location) = map.get("location").filter(|l| !l.is_null()) {
        crate::domain::geo::Point::parse(location).map_err(|reason| {
            ValidationError::InvalidMetadata {
                field: format!("{field}.location"),
                reason,
            }
        })?;
    }
    let size = serde_json::to_vec(&map)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(ValidationError::InvalidMetadata {
            field: field.to_string(),
            reason: format!("is {size} bytes, at most {max_bytes} are allowed"),
        });
    }
    Ok(map)
}

/// Rejects ids that occur twice in one batch (the batch would be ambiguous).
pub fn check_unique_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(ValidationError::DuplicateId(id.to_string()));
        }
    }
    Ok(())
}

/// Parses a search filter (see [`super::filter`]) into the equalities the
/// field lookups answer and the rest.
pub fn prepare_filter(
    filter: Option<Map<String, Value>>,
) -> Result<PreparedFilter, ValidationError> {
    super::filter::prepare(filter).map_err(ValidationError::Filter)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for ok in ["workers", "playbook_memory", "a", "x-1", &"a".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Workers", "a b", "../x", "ä", &"a".repeat(65), "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vectors_are_checked_and_normalised_for_cosine() {
        let v = prepare_vector(vec![3.0, 4.0], 2, Metric::Cosine, "items[0].vector").unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let raw = prepare_vector(vec![3.0, 4.0], 2, Metric::L2, "v").unwrap();
        assert_eq!(raw, vec![3.0, 4.0]);
        assert_eq!(
            prepare_vector(vec![1.0], 2, Metric::L2, "v"),
            Err(ValidationError::DimensionMismatch {
                expected: 2,
                got: 1
            })
        );
        assert!(prepare_vector(vec![f32::NAN, 1.0], 2, Metric::L2, "v").is_err());
        assert!(prepare_vector(vec![f32::INFINITY, 1.0], 2, Metric::L2, "v").is_err());
        assert!(prepare_vector(vec![0.0, 0.0], 2, Metric::Cosine, "v").is_err());
    }

    #[test]
    fn distances_are_smaller_when_nearer() {
        assert_eq!(Metric::Cosine.distance(1.0), 0.0);
        assert!((Metric::Cosine.distance(0.25) - 0.75).abs() < 1e-6);
        assert_eq!(Metric::L2.exact(&[0.0, 0.0], &[3.0, 4.0]), 25.0);
        assert!(Metric::InnerProduct.distance(2.0) < Metric::InnerProduct.distance(1.0));
    }

    #[test]
    fn ids_metadata_and_filters_are_validated() {
        assert!(validate_id("", "id").is_err());
        assert!(validate_id(&"x".repeat(257), "id").is_err());
        assert!(validate_id("a\u{0}b", "id").is_err());
        assert!(validate_id("worker-42", "id").is_ok());

        assert!(prepare_metadata(Some(json!([1])), 100, "m").is_err());
        assert!(prepare_metadata(Some(json!({"a": "x".repeat(200)})), 100, "m").is_err());
        assert_eq!(prepare_metadata(None, 100, "m").unwrap().len(), 0);
        let place = prepare_metadata(
            Some(json!({"location": {"lat": 41.5, "lon": -88.1}})),
            100,
            "m",
        );
        assert!(place.is_ok());
        for bad in [
            json!("Joliet, IL"),
            json!({"lat": 95, "lon": 0}),
            json!({"lat": 41}),
        ] {
            let err = prepare_metadata(Some(json!({ "location": bad })), 1000, "m").unwrap_err();
            assert!(err.to_string().contains("m.location"), "{err}");
        }

        assert!(check_unique_ids(["a", "b", "a"]).is_err());
        assert_eq!(filter_key(&json!(5)), filter_key(&json!(5.0)));
        assert_ne!(filter_key(&json!("5")), filter_key(&json!(5)));
        assert!(prepare_filter(Some(json!({"tags": ["a"]}).as_object().unwrap().clone())).is_err());
    }
}
