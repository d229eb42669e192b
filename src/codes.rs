//! The error codes: every code the service answers with, its HTTP status
//! and what it means, in one table. The ground floor: it imports nothing of
//! the crate, so every layer can name its codes (each error type says its
//! own code next to its definition), and the doors map them to their wire
//! shapes (`http::error` to a status and JSON body, `mcp` to a tool error).
//! `docs/errors.md` is checked against [`ErrorCode::ALL`].

/// An HTTP status, as a number (the doors turn it into their own type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(u16);

impl Status {
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const CONFLICT: Status = Status(409);
    pub const GONE: Status = Status(410);
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    pub const UNSUPPORTED_MEDIA_TYPE: Status = Status(415);
    pub const MISDIRECTED_REQUEST: Status = Status(421);
    pub const UNPROCESSABLE_ENTITY: Status = Status(422);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const BAD_GATEWAY: Status = Status(502);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const INSUFFICIENT_STORAGE: Status = Status(507);
    pub const GATEWAY_TIMEOUT: Status = Status(504);

    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// A 5xx: the service's fault, not the client's.
    pub fn is_server_error(self) -> bool {
        self.0 >= 500
    }
}

/// An error that knows its code: each error type implements it next to its
/// definition, with one exhaustive match, so a new variant forces a decision
/// where it is added.
pub trait HasCode {
    fn code(&self) -> ErrorCode;
}

/// Declares every error code the API answers with, its status and what it
/// means, in one table: [`ErrorCode::ALL`] is what `docs/errors.md`
/// and the OpenAPI document are checked against.
macro_rules! error_codes {
    ($($variant:ident = ($status:ident, $code:literal, $meaning:literal),)*) => {
        /// A stable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn status(self) -> Status {
                match self {
                    $(ErrorCode::$variant => Status::$status,)*
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// One line on when it happens.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson = (BAD_REQUEST, "malformed_json", "the body is not JSON"),
    MalformedBody = (BAD_REQUEST, "malformed_body", "the body could not be read"),
    MalformedCsv = (BAD_REQUEST, "malformed_csv", "the CSV does not parse (names the line)"),
    MalformedJsonLines = (BAD_REQUEST, "malformed_json_lines", "the JSON lines do not parse (names the line)"),
    InvalidPath = (BAD_REQUEST, "invalid_path", "a path parameter does not parse"),
    InvalidQuery = (BAD_REQUEST, "invalid_query", "the query string does not parse"),
    InvalidKey = (BAD_REQUEST, "invalid_key", "an object key that could leave the store"),
    ReadOnly = (BAD_REQUEST, "read_only", "SQL that is not a single read-only query"),
    SqlError = (BAD_REQUEST, "sql_error", "SQL that does not plan or run"),
    SqlTooLong = (BAD_REQUEST, "sql_too_long", "SQL text over query.max_sql_bytes"),
    SqlTooDeep = (BAD_REQUEST, "sql_too_deep", "an expression nested deeper than query.max_expression_depth (a long `a+b+…` chain)"),
    UploadAborted = (BAD_REQUEST, "upload_aborted", "the client stopped sending the body"),
    Cancelled = (BAD_REQUEST, "cancelled", "the client went away mid-answer (seen only in logs and metrics)"),
    InvalidName = (BAD_REQUEST, "invalid_name", "an index or dataset name outside its pattern"),
    InvalidDimension = (BAD_REQUEST, "invalid_dimension", "a dimension out of range"),
    InvalidHnsw = (BAD_REQUEST, "invalid_hnsw", "HNSW parameters out of range"),
    InvalidSynonyms = (BAD_REQUEST, "invalid_synonyms", "synonym groups out of bounds: how many, their members, a member's length"),
    DimensionMismatch = (BAD_REQUEST, "dimension_mismatch", "a vector of the wrong length (names expected and got)"),
    InvalidVector = (BAD_REQUEST, "invalid_vector", "a vector with NaN, infinite or (cosine) zero components"),
    InvalidId = (BAD_REQUEST, "invalid_id", "an empty, overlong or control-character id"),
    DuplicateId = (BAD_REQUEST, "duplicate_id", "an id twice in one batch"),
    Unauthorized = (UNAUTHORIZED, "unauthorized", "no valid bearer token (with `WWW-Authenticate: Bearer`)"),
    Forbidden = (FORBIDDEN, "forbidden", "the token's role is below the one the route needs (named)"),
    OpenBehindProxy = (FORBIDDEN, "open_behind_proxy", "a service without tokens reached through a proxy (`Forwarded`, `X-Forwarded-*`), unless auth.allow_open"),
    CrossSite = (FORBIDDEN, "cross_site_request", "a service without tokens sent a change by another site's page (`Sec-Fetch-Site: cross-site`, or an `Origin` outside server.allowed_hosts)"),
    NotFound = (NOT_FOUND, "not_found", "no such route"),
    AssetNotFound = (NOT_FOUND, "asset_not_found", "no such console file"),
    UnknownActor = (NOT_FOUND, "unknown_actor", "a fault aimed at an actor that is not in the tree"),
    IndexNotFound = (NOT_FOUND, "index_not_found", "no such index"),
    ItemNotFound = (NOT_FOUND, "item_not_found", "no such item in the index"),
    ObjectNotFound = (NOT_FOUND, "object_not_found", "no such object"),
    DatasetNotFound = (NOT_FOUND, "dataset_not_found", "no such dataset"),
    NoWorkers = (NOT_FOUND, "no_workers", "the workers index does not exist yet: seed first"),
    RecordingNotFound = (NOT_FOUND, "recording_not_found", "no playbook recording with that id (withdrawn already, or never recorded)"),
    RunNotFound = (NOT_FOUND, "run_not_found", "no replay run with that id"),
    ModelNotFound = (NOT_FOUND, "model_not_found", "the chat model is not pulled on Ollama (names it and the URL)"),
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "method_not_allowed", "the route exists with other methods (listed in `Allow`)"),
    IndexExists = (CONFLICT, "index_exists", "an index of that name exists"),
    KeyConflict = (CONFLICT, "key_conflict", "an object key whose folder is an object, or that is a folder of objects"),
    ReservedIndex = (CONFLICT, "reserved_index", "a create, add or delete on `workers` or `playbook_memory` without the admin role; or one of them defined unlike the matrix needs"),
    SchemaDrift = (CONFLICT, "schema_drift", "the CSV's columns differ from the dataset's (lists added, missing, retyped)"),
    ReservedDataset = (CONFLICT, "reserved_dataset", "an ingest into a dataset the service writes itself (`replay_runs`)"),
    WriteConflict = (CONFLICT, "write_conflict", "a patch, bulk update or delete whose items kept changing under other writes (three tries): the count written is named, retry the rest"),
    SnapshotInProgress = (CONFLICT, "snapshot_in_progress", "a snapshot is being taken: one at a time"),
    IngestInProgress = (CONFLICT, "ingest_in_progress", "another ingest into the same dataset is running"),
    VersionGone = (GONE, "version_gone", "a cited Lance version that retention has removed"),
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "payload_too_large", "a body over its route's limit (nothing stored)"),
    HostNotAllowed = (MISDIRECTED_REQUEST, "host_not_allowed", "a `Host` header outside server.allowed_hosts (DNS rebinding)"),
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "a JSON route sent another content type; an ingest that is not CSV, JSON lines or JSON"),
    InvalidBody = (UNPROCESSABLE_ENTITY, "invalid_body", "wrong types, missing or unknown fields"),
    EmptyBatch = (UNPROCESSABLE_ENTITY, "empty_batch", "no items or texts"),
    EmptyText = (UNPROCESSABLE_ENTITY, "empty_text", "a text with nothing to embed"),
    TooManyTexts = (UNPROCESSABLE_ENTITY, "too_many_texts", "more texts than embed.max_texts"),
    TextTooLong = (UNPROCESSABLE_ENTITY, "text_too_long", "a text over embed.max_text_chars"),
    UnknownModel = (UNPROCESSABLE_ENTITY, "unknown_model", "a model the embedder does not serve"),
    FaultNotSupported = (UNPROCESSABLE_ENTITY, "fault_not_supported", "a fault aimed at a supervisor"),
    NoSelection = (UNPROCESSABLE_ENTITY, "no_selection", "a bulk update or delete without exactly one of `ids` (not empty) and a `filter` naming a field"),
    BulkTooLarge = (UNPROCESSABLE_ENTITY, "bulk_too_large", "a bulk update or delete over vectors.max_bulk_items items without `allow_large: true` (names the count)"),
    EmptyChange = (UNPROCESSABLE_ENTITY, "empty_change", "a patch with nothing in it, or an update whose `set` is empty"),
    InvalidFacets = (UNPROCESSABLE_ENTITY, "invalid_facets", "more than 8 facet fields, an empty, overlong or control-character field name, or one twice"),
    BatchTooLarge = (UNPROCESSABLE_ENTITY, "batch_too_large", "more items than vectors.max_batch"),
    InvalidMetadata = (UNPROCESSABLE_ENTITY, "invalid_metadata", "metadata that is not an object, over its size, or with a `location` or (in `workers`) a typed worker field out of shape"),
    VectorOrText = (UNPROCESSABLE_ENTITY, "vector_or_text", "not exactly one of `vector` and `text`"),
    InvalidK = (UNPROCESSABLE_ENTITY, "invalid_k", "k out of range"),
    InvalidMessages = (UNPROCESSABLE_ENTITY, "invalid_messages", "chat messages empty, too many, too long, not ending with the user's, or a bad model name"),
    InvalidContext = (UNPROCESSABLE_ENTITY, "invalid_context", "a chat context source that is not `workers` or `index:<name>`, or a playbook without a role"),
    InvalidEfSearch = (UNPROCESSABLE_ENTITY, "invalid_ef_search", "ef_search out of range"),
    ModeNeedsText = (UNPROCESSABLE_ENTITY, "mode_needs_text", "a keyword or hybrid search without a usable `text` (or a keyword search with a `vector`)"),
    InvalidKeywordWeight = (UNPROCESSABLE_ENTITY, "invalid_keyword_weight", "keyword_weight outside 0 to 1"),
    UnsupportedMode = (UNPROCESSABLE_ENTITY, "unsupported_mode", "a hybrid search of an index whose metric is not cosine"),
    InvalidFilter = (UNPROCESSABLE_ENTITY, "invalid_filter", "a filter that does not parse: unknown operator, wrong type, too deep (names the path inside it)"),
    TooManyFilterFields = (UNPROCESSABLE_ENTITY, "too_many_filter_fields", "more filter fields than limits.max_filter_fields"),
    TooManyIds = (UNPROCESSABLE_ENTITY, "too_many_ids", "an exclude_ids or worker_ids list over limits.max_id_list (a fill proposal: over 1,000)"),
    EmptyQuery = (UNPROCESSABLE_ENTITY, "empty_query", "a search query with nothing in it"),
    QueryTooLong = (UNPROCESSABLE_ENTITY, "query_too_long", "a search query over its length"),
    EmptyRole = (UNPROCESSABLE_ENTITY, "empty_role", "an empty role"),
    InvalidScore = (UNPROCESSABLE_ENTITY, "invalid_score", "a score outside [0, 1]"),
    InvalidWorkerIds = (UNPROCESSABLE_ENTITY, "invalid_worker_ids", "an empty or duplicated worker list"),
    UnknownWorkers = (UNPROCESSABLE_ENTITY, "unknown_workers", "worker ids that do not exist (listed)"),
    InvalidWindow = (UNPROCESSABLE_ENTITY, "invalid_window", "a window of days this service cannot compare: `from` after `to`, or a day past 9999-12-30"),
    UnknownCity = (UNPROCESSABLE_ENTITY, "unknown_city", "a `near` city and state that are not in the shipped city table (give lat and lon)"),
    InvalidLimit = (UNPROCESSABLE_ENTITY, "invalid_limit", "a row limit out of range: SQL's, or a scroll page's (1 to 1000)"),
    InvalidCursor = (UNPROCESSABLE_ENTITY, "invalid_cursor", "a scroll cursor this service did not give"),
    TooManyColumns = (UNPROCESSABLE_ENTITY, "too_many_columns", "an ingest header over ingest.max_columns"),
    ColumnNameTooLong = (UNPROCESSABLE_ENTITY, "column_name_too_long", "a column name over ingest.max_column_name_bytes"),
    QueryMemoryExceeded = (UNPROCESSABLE_ENTITY, "query_memory_exceeded", "a SQL query that needs more than query.memory_limit_bytes"),
    FunctionOutputTooLarge = (UNPROCESSABLE_ENTITY, "function_output_too_large", "`repeat`, `lpad`, `range`, … asked to build more than query.max_function_output"),
    Internal = (INTERNAL_SERVER_ERROR, "internal", "a bug: reported, with the request id in the log"),
    StorageError = (INTERNAL_SERVER_ERROR, "storage_error", "the data dir or object store failed"),
    IndexError = (INTERNAL_SERVER_ERROR, "index_error", "faiss failed"),
    EmbedFailed = (INTERNAL_SERVER_ERROR, "embed_failed", "the embedder failed inside"),
    ChatBadResponse = (BAD_GATEWAY, "chat_bad_response", "Ollama's chat answer broke off or did not parse"),
    EmbedderBadResponse = (BAD_GATEWAY, "embedder_bad_response", "Ollama answered with the wrong model or dimension"),
    DiskFull = (INSUFFICIENT_STORAGE, "disk_full", "the data directory's disk is below ingest.min_free_bytes: nothing written"),
    ActorUnavailable = (SERVICE_UNAVAILABLE, "actor_unavailable", "the actor behind the route is restarting or stopped"),
    ActorFailed = (SERVICE_UNAVAILABLE, "actor_failed", "the actor behind the route was given up on after a crash loop"),
    IndexLoading = (SERVICE_UNAVAILABLE, "index_loading", "the index is loading from storage (starting or restarting)"),
    IndexUnavailable = (SERVICE_UNAVAILABLE, "index_unavailable", "the index went down with the request in hand (a commit that failed): retry"),
    IndexFailed = (SERVICE_UNAVAILABLE, "index_failed", "the index was left failed after a crash loop (names the reason)"),
    NotReady = (SERVICE_UNAVAILABLE, "not_ready", "`/ready`: actors still starting or restarting (named)"),
    ChatUnavailable = (SERVICE_UNAVAILABLE, "chat_unavailable", "Ollama (chat) cannot be reached (names the URL)"),
    EmbedderUnavailable = (SERVICE_UNAVAILABLE, "embedder_unavailable", "Ollama cannot be reached (names the URL)"),
    TooManyTransfers = (SERVICE_UNAVAILABLE, "too_many_transfers", "storage.max_concurrent_transfers are running"),
    TooManyQueries = (SERVICE_UNAVAILABLE, "too_many_queries", "query.max_concurrent queries are running"),
    TooManyIngests = (SERVICE_UNAVAILABLE, "too_many_ingests", "ingest.max_concurrent ingests are running"),
    TooManyChats = (SERVICE_UNAVAILABLE, "too_many_chats", "chat.max_concurrent chats, replays or reruns are running"),
    TooManyStreams = (SERVICE_UNAVAILABLE, "too_many_streams", "limits.max_event_streams event streams are open, or the token holds its share"),
    TooManySessions = (SERVICE_UNAVAILABLE, "too_many_sessions", "mcp.max_sessions MCP sessions are open, or the token holds mcp.max_sessions_per_token"),
    ActorTimeout = (GATEWAY_TIMEOUT, "actor_timeout", "no reply within server.request_timeout_ms"),
    EmbedderTimeout = (GATEWAY_TIMEOUT, "embedder_timeout", "the embedder did not answer in time"),
    QueryTimeout = (GATEWAY_TIMEOUT, "query_timeout", "SQL over query.timeout_ms"),
    ChatTimeout = (GATEWAY_TIMEOUT, "chat_timeout", "a chat over chat.timeout_ms"),
}
