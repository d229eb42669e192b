//! What `/openapi.json` states beyond the handlers' annotations, so that a
//! request the document allows is one the server accepts, and one it
//! forbids is one the server refuses:
//!
//! - the rules of the request fields, from the same constants the
//!   validators use ([`FIELD_RULES`]) and from configuration (batch sizes,
//!   id lists, row limits, the embedder's model);
//! - a pattern or an enum for every path parameter ([`PATH_RULES`]): the
//!   document is refused at start-up if a path parameter has neither;
//! - the events of `/v1/supervision/events`, as Server-Sent Events;
//! - the rules a schema cannot state ([`RUNTIME_RULES`]): a vector's
//!   length is the index's dimension, known only at run time. Each is
//!   listed under the operation as `x-runtime-rules` (code → rule) and in
//!   its description, and answered with that code.
//!
//! The tests in `tests/api/contract.rs` walk the document: for each
//! documented bound, a request just inside it is accepted and one just
//! outside is refused with the documented code.

use serde_json::{json, Map, Value};

use crate::config::Settings;
use crate::domain::{chat, geo, keyword, matrix, validate, vectors};

/// Contains a character that is not white space: Rust's `trim` (Unicode
/// `White_Space`) leaves something. Spelled out, because `\s` differs
/// between regex dialects (ECMA 262 counts U+FEFF, not U+0085).
pub const NOT_BLANK: &str =
    "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/// No control character (Unicode `Cc`: what `char::is_control` tests).
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// A vector index's name.
pub const INDEX_NAME: &str = "^[a-z0-9_-]{1,64}$";
/// A dataset's name: an SQL identifier that needs no quoting.
pub const DATASET_NAME: &str = "^[a-z][a-z0-9_]{0,63}$";
/// A replay run's id.
pub const RUN_ID: &str = "^[0-9a-fA-F]{32}$";

/// One segment of an object key: not `.` or `..`, not ending in `#` and
/// digits (the local store's name for an upload in progress), no `/`,
/// `\`, `%` or control character, at most `MAX_SEGMENT_CHARS` characters.
fn key_segment() -> String {
    format!(
        "(?!\\.\\.?(?:/|$))(?![^/]*#[0-9]+(?:/|$))[^/\\\\%\\u0000-\\u001f\\u007f-\\u009f]{{1,{}}}",
        crate::actors::storage::MAX_SEGMENT_CHARS
    )
}

fn key_pattern() -> String {
    let segment = key_segment();
    format!("^{segment}(?:/{segment})*$")
}

/// An item id: 1 to 256 characters, none of them a control character.
fn id_rules() -> Value {
    json!({"minLength": 1, "maxLength": vectors::MAX_ID_CHARS, "pattern": NO_CONTROL})
}

/// A text that must say something, of at most `max` characters.
fn said(max: usize) -> Value {
    json!({"maxLength": max, "pattern": NOT_BLANK})
}

/// A model name: 1 to 200 characters that say something, no control
/// characters.
fn model_rules() -> Value {
    json!({
        "maxLength": chat::MAX_MODEL_CHARS,
        "allOf": [{"pattern": NO_CONTROL}, {"pattern": NOT_BLANK}],
    })
}

/// `(schema pointer under /components/schemas, keywords merged into it)`.
#[allow(clippy::type_complexity)]
const FIELD_RULES: &[(&str, fn(&Settings) -> Value)] = &[
    ("/ItemInput/properties/id", |_| id_rules()),
    ("/ItemInput/properties/text", |_| {
        said(vectors::MAX_TEXT_CHARS)
    }),
    ("/ItemInput/properties/vector/items", |_| finite_f32()),
    ("/ItemInput", |s| {
        // A text without a vector is embedded: the embedder's bound holds.
        json!({"anyOf": [
            {"required": ["vector"], "properties": {"vector": {"type": "array"}}},
            {"required": ["text"], "properties": {"text": {"type": "string", "maxLength": s.embed.max_text_chars}}},
        ]})
    }),
    (
        "/AddItems/properties/items",
        |s| json!({"minItems": 1, "maxItems": s.vectors.max_batch}),
    ),
    ("/SearchRequest/properties/text", |s| {
        said(crate::service::vectors::search_text_limit(s))
    }),
    ("/SearchRequest/properties/vector/items", |_| finite_f32()),
    (
        "/SearchRequest/properties/exclude_ids",
        |s| json!({"maxItems": s.limits.max_id_list}),
    ),
    ("/SearchRequest", |_| search_modes()),
    ("/SearchRequest/properties/facets", |_| facet_rules()),
    ("/ItemPatch/properties/text", |_| {
        said(vectors::MAX_TEXT_CHARS)
    }),
    ("/ItemPatch/properties/vector/items", |_| finite_f32()),
    ("/ItemPatch", |s| {
        // Something to change; a text without a vector is embedded, so
        // the embedder's bound holds.
        json!({"allOf": [
            {"anyOf": [
                {"required": ["metadata"], "properties": {"metadata": {"type": "object", "minProperties": 1}}},
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
                {"required": ["vector"], "properties": {"vector": {"type": "array"}}},
            ]},
            {"anyOf": [
                {"required": ["vector"], "properties": {"vector": {"type": "array"}}},
                {"properties": {"text": {"type": ["string", "null"], "maxLength": s.embed.max_text_chars}}},
            ]},
        ]})
    }),
    ("/BulkUpdate/properties/ids", selected_ids),
    (
        "/BulkUpdate/properties/set",
        |_| json!({"minProperties": 1}),
    ),
    ("/BulkUpdate", |_| selection_rules()),
    ("/BulkDelete/properties/ids", selected_ids),
    ("/BulkDelete", |_| selection_rules()),
    (
        "/WorkerPatch/properties/metadata",
        |_| json!({"minProperties": 1}),
    ),
    ("/WorkerCount/properties/facets", |_| facet_rules()),
    ("/MatrixSearch/properties/query", |_| {
        said(matrix::MAX_QUERY_CHARS)
    }),
    (
        "/MatrixSearch/properties/exclude_ids",
        |s| json!({"maxItems": s.limits.max_id_list}),
    ),
    ("/MatrixSearch/properties/skills_all", |_| typed_values()),
    ("/MatrixSearch/properties/certifications_any", |_| {
        typed_values()
    }),
    (
        "/MatrixSearch/properties/available_by",
        |_| json!({"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}),
    ),
    (
        "/MatrixSearch/properties/certifications_valid_on",
        |_| json!({"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]}),
    ),
    ("/MatrixSearch", |_| {
        // A validity day says when certifications_any must be valid.
        json!({
            "if": {"required": ["certifications_valid_on"], "properties": {"certifications_valid_on": {"type": "string"}}},
            "then": {"required": ["certifications_any"], "properties": {"certifications_any": {"type": "array"}}},
        })
    }),
    (
        "/Near/properties/city",
        |_| json!({"minLength": 1, "allOf": [{"pattern": NO_CONTROL}, {"pattern": NOT_BLANK}]}),
    ),
    (
        "/Near/properties/state",
        |_| json!({"pattern": "^[ ]*[A-Za-z]{2}[ ]*$"}),
    ),
    (
        "/Near/properties/miles",
        |_| json!({"exclusiveMinimum": 0.0, "maximum": geo::MAX_RADIUS_KM / geo::KM_PER_MILE}),
    ),
    (
        "/Near/properties/km",
        |_| json!({"exclusiveMinimum": 0.0, "maximum": geo::MAX_RADIUS_KM}),
    ),
    ("/Near", |_| {
        // A centre (a point, or a city and its state) and one radius.
        let number = json!({"type": "number"});
        let text = json!({"type": "string"});
        let none = json!({"type": "null"});
        json!({"allOf": [
            {"oneOf": [
                {"required": ["lat", "lon"], "properties": {"lat": number, "lon": number, "city": none, "state": none}},
                {"required": ["city", "state"], "properties": {"city": text, "state": text, "lat": none, "lon": none}},
            ]},
            {"oneOf": [
                {"required": ["miles"], "properties": {"miles": number, "km": none}},
                {"required": ["km"], "properties": {"km": number, "miles": none}},
            ]},
        ]})
    }),
    (
        "/CreateIndex/properties/synonyms/items",
        |_| json!({"minItems": 2, "maxItems": keyword::MAX_SYNONYM_MEMBERS}),
    ),
    ("/CreateIndex/properties/synonyms/items/items", |_| {
        json!({
            "maxLength": keyword::MAX_SYNONYM_CHARS,
            "allOf": [{"pattern": NO_CONTROL}, {"pattern": NOT_BLANK}],
        })
    }),
    ("/PlaybookRecord/properties/query", |_| {
        said(matrix::MAX_QUERY_CHARS)
    }),
    (
        "/PlaybookRecord/properties/role",
        |_| json!({"pattern": NOT_BLANK}),
    ),
    ("/PlaybookRecord/properties/worker_ids", |s| {
        let max = matrix::MAX_RECORDED_WORKERS.min(s.limits.max_id_list);
        json!({"minItems": 1, "maxItems": max, "uniqueItems": true})
    }),
    ("/ChatRequest/properties/messages", |_| {
        json!({
            "minItems": 1,
            "maxItems": chat::MAX_MESSAGES,
            "contains": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"const": "user"}, "content": {"type": "string", "pattern": NOT_BLANK}},
            },
        })
    }),
    ("/ChatRequest/properties/model", |_| model_rules()),
    (
        "/Message/properties/content",
        |_| json!({"maxLength": chat::MAX_MESSAGE_CHARS}),
    ),
    (
        "/ContextRequest/properties/source",
        |_| json!({"pattern": "^(?:workers|index:[a-z0-9_-]{1,64})$"}),
    ),
    ("/ContextRequest/properties/query", |_| {
        said(matrix::MAX_QUERY_CHARS)
    }),
    ("/ContextRequest", |_| {
        // The playbook's recordings are per role, and only the workers have them.
        json!({
            "if": {"required": ["use_playbook"], "properties": {"use_playbook": {"const": true}}},
            "then": {
                "required": ["filter"],
                "properties": {
                    "source": {"const": "workers"},
                    "filter": {"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}},
                },
            },
        })
    }),
    ("/ReplayRequest/properties/query", |_| {
        said(matrix::MAX_QUERY_CHARS)
    }),
    ("/ReplayRequest/properties/model", |_| model_rules()),
    (
        "/SqlRequest/properties/sql",
        |_| json!({"pattern": NOT_BLANK}),
    ),
    (
        "/SqlRequest/properties/limit",
        |s| json!({"maximum": s.query.max_rows}),
    ),
    (
        "/EmbedRequest/properties/texts",
        |s| json!({"minItems": 1, "maxItems": s.embed.max_texts}),
    ),
    ("/EmbedRequest/properties/texts/items", |s| {
        said(s.embed.max_text_chars)
    }),
    (
        "/EmbedRequest/properties/model",
        |s| json!({"enum": crate::actors::embed::served_models(&s.embed).into_iter().map(Some).chain([None]).collect::<Vec<_>>(), "description": "A model this server's embedder serves (the built-in provider: one per analysis, the current first)."}),
    ),
    (
        "/ValidateRequest/oneOf/2/properties/worker_ids",
        |_| json!({"maxItems": validate::MAX_FILL_WORKERS}),
    ),
    (
        "/FaultRequest/properties/actor",
        |_| json!({"minLength": 1, "pattern": NO_CONTROL}),
    ),
    ("/FaultRequest", |_| {
        json!({"oneOf": [
            {"required": ["delay_ms"], "properties": {"fault": {"enum": ["delay", "slow_load"]}, "delay_ms": {"type": "integer"}}},
            {"properties": {"fault": {"enum": ["panic", "error", "commit_panic"]}, "delay_ms": {"type": "null"}}},
        ]})
    }),
    // Each kind takes its own fields and no others.
    (
        "/ValidateRequest/oneOf/0",
        |_| json!({"additionalProperties": false}),
    ),
    (
        "/ValidateRequest/oneOf/1",
        |_| json!({"additionalProperties": false}),
    ),
    (
        "/ValidateRequest/oneOf/2",
        |_| json!({"additionalProperties": false}),
    ),
];

/// A vector component: a number an `f32` holds (larger ones would be
/// infinite, and are refused as `invalid_vector`).
fn finite_f32() -> Value {
    json!({"minimum": -f32::MAX as f64, "maximum": f32::MAX as f64})
}

/// A bulk operation's id list: unique ids, at most
/// `vectors.max_bulk_items`.
fn selected_ids(settings: &Settings) -> Value {
    json!({
        "minItems": 1,
        "maxItems": settings.vectors.max_bulk_items,
        "uniqueItems": true,
        "items": {"type": "string", "minLength": 1, "maxLength": vectors::MAX_ID_CHARS, "pattern": NO_CONTROL},
    })
}

/// A bulk operation selects by exactly one of `ids` and a `filter` that
/// names something.
fn selection_rules() -> Value {
    let given = |field: &str| json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}});
    let absent = |field: &str| json!({"properties": {field: {"type": "null"}}});
    json!({"oneOf": [
        {"allOf": [given("ids"), absent("filter")]},
        {"allOf": [given("filter"), absent("ids"), {"properties": {"filter": {"minProperties": 1}}}]},
    ]})
}

/// Facet fields: at most 8 field names, none twice.
fn facet_rules() -> Value {
    json!({
        "maxItems": crate::domain::items::MAX_FACET_FIELDS,
        "uniqueItems": true,
        "items": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": NO_CONTROL},
    })
}

fn typed_values() -> Value {
    json!({"minItems": 1, "maxItems": matrix::MAX_TYPED_VALUES})
}

/// Which of `vector` and `text` each mode needs: `semantic` (the
/// default) exactly one; `keyword` a `text` and no `vector`; `hybrid` a
/// `text`, and a `vector` if the caller has one.
fn search_modes() -> Value {
    let given = |field: &str| json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}});
    let absent = |field: &str| json!({"properties": {field: {"type": "null"}}});
    json!({
        "if": {"required": ["mode"], "properties": {"mode": {"enum": ["keyword", "hybrid"]}}},
        "then": {
            "allOf": [
                given("text"),
                {
                    "if": {"properties": {"mode": {"const": "keyword"}}},
                    "then": absent("vector"),
                },
            ],
        },
        "else": {
            "oneOf": [
                {"allOf": [given("vector"), absent("text")]},
                {"allOf": [given("text"), absent("vector")]},
            ],
        },
    })
}

/// `(path, parameter, its schema's rules)`: every path parameter of the
/// document needs one.
const PATH_RULES: &[(&str, &str, fn() -> Value)] = &[
    (
        "/v1/vectors/index/{name}",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/vectors/index/{name}/add",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/vectors/index/{name}/search",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/vectors/index/{name}/items/{id}",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    ("/v1/vectors/index/{name}/items/{id}", "id", id_rules),
    (
        "/v1/vectors/index/{name}/items/update",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/vectors/index/{name}/items/delete",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/vectors/index/{name}/count",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    ("/v1/matrix/workers/{id}", "id", id_rules),
    ("/v1/matrix/playbooks/recordings/{id}", "id", id_rules),
    (
        "/v1/vectors/index/{name}/items/scroll",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/vectors/index/{name}/export",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/admin/indexes/{name}/restart",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/admin/indexes/{name}/reindex",
        "name",
        || json!({"pattern": INDEX_NAME}),
    ),
    (
        "/v1/catalog/datasets/{name}",
        "name",
        || json!({"pattern": DATASET_NAME}),
    ),
    (
        "/v1/ingest/{dataset}",
        "dataset",
        || json!({"pattern": DATASET_NAME}),
    ),
    (
        "/v1/storage/objects/{key}",
        "key",
        || json!({"pattern": key_pattern(), "maxLength": crate::actors::storage::MAX_KEY_CHARS}),
    ),
    (
        "/v1/replay/{run_id}/rerun",
        "run_id",
        || json!({"pattern": RUN_ID}),
    ),
    (
        "/console/{file}",
        "file",
        || json!({"enum": super::console::FILES}),
    ),
];

/// `(method, path, status, [(link, operationId, [(parameter, expression)])])`:
/// what a response lets a client (or the fuzzer's stateful phase) call next.
#[allow(clippy::type_complexity)]
const LINKS: &[(&str, &str, &str, &[(&str, &str, &[(&str, &str)])])] = &[
    (
        "post",
        "/v1/vectors/index",
        "201",
        &[
            ("AddItems", "add_items", &[("name", "$response.body#/name")]),
            (
                "SearchIndex",
                "search_index",
                &[("name", "$response.body#/name")],
            ),
            (
                "IndexInfo",
                "index_info",
                &[("name", "$response.body#/name")],
            ),
            (
                "DropIndex",
                "drop_index",
                &[("name", "$response.body#/name")],
            ),
        ],
    ),
    (
        "post",
        "/v1/vectors/index/{name}/add",
        "200",
        &[
            (
                "GetItem",
                "get_item",
                &[
                    ("name", "$request.path.name"),
                    ("id", "$request.body#/items/0/id"),
                ],
            ),
            (
                "DeleteItem",
                "delete_item",
                &[
                    ("name", "$request.path.name"),
                    ("id", "$request.body#/items/0/id"),
                ],
            ),
            (
                "SearchIndex",
                "search_index",
                &[("name", "$request.path.name")],
            ),
        ],
    ),
    (
        "post",
        "/v1/ingest/{dataset}",
        "200",
        &[
            (
                "GetDataset",
                "get_dataset",
                &[("name", "$request.path.dataset")],
            ),
            (
                "DropDataset",
                "drop_dataset",
                &[("name", "$request.path.dataset")],
            ),
        ],
    ),
    (
        "put",
        "/v1/storage/objects/{key}",
        "201",
        &[
            ("GetObject", "get_object", &[("key", "$request.path.key")]),
            (
                "DeleteObject",
                "delete_object",
                &[("key", "$request.path.key")],
            ),
        ],
    ),
];

/// The filter rules of every search that takes one.
const INVALID_FILTER: (&str, &str) = (
    "invalid_filter",
    "the filter is in the filter language (docs/api.md), at most 4 levels deep",
);
const TOO_MANY_FILTER_FIELDS: (&str, &str) = (
    "too_many_filter_fields",
    "the filter names at most `limits.max_filter_fields` fields",
);

/// `(method, path, [(code, the rule)])`: rules only the running service
/// can check. The codes are among the operation's documented responses.
pub const RUNTIME_RULES: &[(&str, &str, &[(&str, &str)])] = &[
    (
        "post",
        "/v1/vectors/index/{name}/add",
        &[
            (
                "dimension_mismatch",
                "each vector has the index's dimension",
            ),
            ("duplicate_id", "an id appears once in a batch"),
            ("invalid_vector", "a cosine index takes no zero vector"),
            (
                "invalid_metadata",
                "an item's metadata is at most `vectors.max_metadata_bytes` bytes of JSON; its `location` is {lat, lon}; in `workers`, `shift`, `available_from`, `available_to`, `unavailable` and `certifications` have their types (docs/api.md)",
            ),
        ],
    ),
    (
        "post",
        "/v1/vectors/index/{name}/search",
        &[
            ("dimension_mismatch", "the vector has the index's dimension"),
            (
                "invalid_vector",
                "a cosine index is not searched by a zero vector, or a text that embeds to one",
            ),
            (
                "mode_needs_text",
                "a keyword or hybrid search's text has a letter or a digit",
            ),
            ("unsupported_mode", "a hybrid search needs a cosine index"),
            INVALID_FILTER,
            TOO_MANY_FILTER_FIELDS,
        ],
    ),
    (
        "patch",
        "/v1/vectors/index/{name}/items/{id}",
        &[
            ("dimension_mismatch", "a new vector has the index's dimension"),
            ("invalid_vector", "a cosine index takes no zero vector, nor a text that embeds to one"),
            (
                "invalid_metadata",
                "the merged metadata is within `vectors.max_metadata_bytes`, with a `location` of {lat, lon}, and in `workers` typed worker fields of their types (docs/api.md)",
            ),
            ("write_conflict", "the item stops changing under other writes within three tries"),
        ],
    ),
    (
        "post",
        "/v1/vectors/index/{name}/items/update",
        &[
            (
                "invalid_metadata",
                "each item's merged metadata is within `vectors.max_metadata_bytes`, with a `location` of {lat, lon}, and in `workers` typed worker fields of their types (docs/api.md)",
            ),
            (
                "bulk_too_large",
                "a filter selects at most `vectors.max_bulk_items` items, unless `allow_large` is true",
            ),
            ("write_conflict", "the items stop changing under other writes within three tries"),
            INVALID_FILTER,
            TOO_MANY_FILTER_FIELDS,
        ],
    ),
    (
        "post",
        "/v1/vectors/index/{name}/items/delete",
        &[
            (
                "bulk_too_large",
                "a filter selects at most `vectors.max_bulk_items` items, unless `allow_large` is true",
            ),
            ("write_conflict", "the items stop changing under other writes within three tries"),
            INVALID_FILTER,
            TOO_MANY_FILTER_FIELDS,
        ],
    ),
    (
        "post",
        "/v1/vectors/index/{name}/count",
        &[INVALID_FILTER, TOO_MANY_FILTER_FIELDS],
    ),
    (
        "get",
        "/v1/vectors/index/{name}/export",
        &[("version_gone", "`version` is a version the index has and still keeps")],
    ),
    (
        "post",
        "/v1/vectors/index/{name}/items/scroll",
        &[
            ("invalid_cursor", "the cursor is a `next_cursor` this service gave"),
            ("version_gone", "the cursor's version is still kept"),
            INVALID_FILTER,
            TOO_MANY_FILTER_FIELDS,
        ],
    ),
    (
        "post",
        "/v1/matrix/search",
        &[
            (
                "mode_needs_text",
                "a keyword search's query has a letter or a digit",
            ),
            (
                "unknown_city",
                "`near`'s city and state are a city of the shipped table",
            ),
            (
                "invalid_window",
                "`available_between`'s `from` is not after its `to`, and before 9999-12-31",
            ),
            INVALID_FILTER,
            TOO_MANY_FILTER_FIELDS,
        ],
    ),
    (
        "patch",
        "/v1/matrix/workers/{id}",
        &[
            (
                "invalid_metadata",
                "the merged fields are within `vectors.max_metadata_bytes`, and `status`, `shift`, `available_from`, `available_to`, `unavailable`, `certifications` and `location` have their types (docs/api.md)",
            ),
            ("write_conflict", "the worker stops changing under other writes within three tries"),
        ],
    ),
    (
        "post",
        "/v1/matrix/workers/count",
        &[
            (
                "unknown_city",
                "`near`'s city and state are a city of the shipped table",
            ),
            INVALID_FILTER,
            TOO_MANY_FILTER_FIELDS,
        ],
    ),
    (
        "post",
        "/v1/matrix/playbooks/record",
        &[("unknown_workers", "every id names a worker of the index")],
    ),
    (
        "post",
        "/v1/chat",
        &[(
            "invalid_filter",
            "the context's filter is in the filter language (docs/api.md)",
        )],
    ),
    (
        "post",
        "/v1/sql",
        &[
            (
                "read_only",
                "one SELECT, WITH … SELECT or EXPLAIN statement",
            ),
            (
                "sql_error",
                "the statement parses and plans over the datasets",
            ),
            (
                "sql_too_long",
                "the statement is at most `query.max_sql_bytes` bytes of UTF-8",
            ),
            (
                "sql_too_deep",
                "no expression nests deeper than `query.max_expression_depth`",
            ),
            ("query_memory_exceeded", "the query fits its memory"),
            (
                "function_output_too_large",
                "no function call's output is over `query.max_function_output` bytes",
            ),
        ],
    ),
    (
        "post",
        "/v1/ingest/{dataset}",
        &[
            ("malformed_csv", "the body is CSV with a header row"),
            (
                "malformed_json_lines",
                "the body is one JSON object per line",
            ),
            ("too_many_columns", "at most `ingest.max_columns` columns"),
            (
                "column_name_too_long",
                "column names of at most `ingest.max_column_name_bytes` bytes",
            ),
        ],
    ),
    (
        "put",
        "/v1/storage/objects/{key}",
        &[(
            "invalid_key",
            "each segment of the key is at most 200 bytes of UTF-8",
        )],
    ),
    (
        "post",
        "/v1/validate",
        &[("valid: false", "a check failed: the 422 verdict lists why")],
    ),
];

/// Applies the rules above to the document. Fails when a rule's target
/// is missing (a type or a route was renamed) or a path parameter has no
/// rule: the server then does not start.
pub fn apply(doc: &mut Value, settings: &Settings) -> Result<(), String> {
    for (pointer, rules) in FIELD_RULES {
        let target = doc
            .pointer_mut(&format!("/components/schemas{pointer}"))
            .ok_or_else(|| format!("contract: no schema at {pointer}"))?;
        merge(target, rules(settings))?;
    }
    for (path, name, rules) in PATH_RULES {
        let mut found = false;
        for parameter in parameters_mut(doc, path) {
            if parameter["name"] == *name && parameter["in"] == "path" {
                merge(&mut parameter["schema"], rules())?;
                found = true;
            }
        }
        if !found {
            return Err(format!("contract: no path parameter {name} of {path}"));
        }
    }
    // A listing's prefix: a key, with any trailing slashes, or nothing.
    let segment = key_segment();
    let prefix = parameters_mut(doc, "/v1/storage/objects")
        .find(|p| p["name"] == "prefix")
        .map(|p| &mut p["schema"])
        .ok_or("contract: no parameter prefix of /v1/storage/objects")?;
    merge(
        prefix,
        json!({
            "pattern": format!("^(?:{segment}(?:/{segment})*)?/*$"),
            "maxLength": crate::actors::storage::MAX_KEY_CHARS,
        }),
    )?;
    for (method, path, rules) in RUNTIME_RULES {
        let operation = operation_mut(doc, method, path)?;
        let listed: Map<String, Value> = rules
            .iter()
            .map(|(code, rule)| (code.to_string(), json!(rule)))
            .collect();
        let text = rules
            .iter()
            .map(|(code, rule)| format!("- `{code}`: {rule}"))
            .collect::<Vec<_>>()
            .join("\n");
        let description = operation["description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        operation["description"] = json!(format!(
            "{description}\n\nRules the schema cannot state, each answered with its code:\n{text}"
        ));
        operation["x-runtime-rules"] = Value::Object(listed);
    }
    for (method, path, status, links) in LINKS {
        let response = operation_mut(doc, method, path)?
            .pointer_mut(&format!("/responses/{status}"))
            .ok_or_else(|| format!("contract: no {status} of {path}"))?;
        let mut all = Map::new();
        for (name, operation, parameters) in *links {
            let parameters: Map<String, Value> = parameters
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            all.insert(
                name.to_string(),
                json!({"operationId": operation, "parameters": parameters}),
            );
        }
        response["links"] = Value::Object(all);
    }
    supervision_events(doc)?;
    chat_events(doc)?;
    // An ingest's body is bytes (CSV or JSON lines), whatever they spell.
    let ingest = operation_mut(doc, "post", "/v1/ingest/{dataset}")?;
    for content in ingest["requestBody"]["content"]
        .as_object_mut()
        .into_iter()
        .flat_map(|c| c.values_mut())
    {
        content["schema"] = json!({"description": "The file's bytes"});
    }
    // An empty body stores an empty object (a marker such as `_SUCCESS`).
    operation_mut(doc, "put", "/v1/storage/objects/{key}")?["requestBody"]["required"] =
        json!(false);
    unruled_path_parameters(doc)
}

/// One Server-Sent Event as schemathesis and OpenAPI 3.2 read one:
/// `event` its name, `data` JSON text of `data`'s schema.
fn sse_event(name: Value, data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": name,
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
    })
}

fn event_stream_mut<'a>(
    doc: &'a mut Value,
    method: &str,
    path: &str,
) -> Result<&'a mut Value, String> {
    operation_mut(doc, method, path)?
        .pointer_mut("/responses/200/content/text~1event-stream")
        .ok_or_else(|| format!("contract: no event stream of {path}"))
}

/// `POST /v1/chat` with `stream: true`: `token`s, `citations`, then
/// `done` or `error`.
fn chat_events(doc: &mut Value) -> Result<(), String> {
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let content = event_stream_mut(doc, "post", "/v1/chat")?;
    content["schema"] = json!({
        "description": "One event of the answer.",
        "oneOf": [
            sse_event(json!({"const": "token"}), json!({
                "type": "object", "required": ["content"], "properties": {"content": {"type": "string"}},
            })),
            sse_event(json!({"const": "citations"}), json!({
                "type": "object", "required": ["citations"],
                "properties": {"citations": {"type": "array", "items": schema("Citation")}},
            })),
            sse_event(json!({"const": "done"}), json!({
                "type": "object", "required": ["provider", "model", "usage"],
                "properties": {
                    "provider": {"type": "string"},
                    "model": {"type": "string"},
                    "usage": schema("Usage"),
                    "verdict": {"oneOf": [{"type": "null"}, schema("Verdict")]},
                },
            })),
            sse_event(json!({"const": "error"}), schema("ErrorBody")),
        ],
    });
    Ok(())
}

/// `/v1/supervision/events`: the tree's events (`id` is the `seq`), and
/// `lagged` when the listener fell behind.
fn supervision_events(doc: &mut Value) -> Result<(), String> {
    let content = event_stream_mut(doc, "get", "/v1/supervision/events")?;
    let json_text = |schema: Value| json!({"type": "string", "contentMediaType": "application/json", "contentSchema": schema});
    content["schema"] = json!({
        "description": "One event: `event` names its kind, `id` is its `seq`, `data` its JSON.",
        "oneOf": [
            {
                "type": "object",
                "required": ["event", "id", "data"],
                "properties": {
                    "event": {"$ref": "#/components/schemas/EventKind"},
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "data": json_text(json!({"$ref": "#/components/schemas/SupervisionEventView"})),
                },
            },
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"const": "lagged"},
                    "data": json_text(json!({
                        "type": "object",
                        "required": ["missed"],
                        "properties": {"missed": {"type": "integer", "minimum": 1}},
                    })),
                },
            },
        ],
    });
    Ok(())
}

fn merge(target: &mut Value, rules: Value) -> Result<(), String> {
    let (Some(target), Value::Object(rules)) = (target.as_object_mut(), rules) else {
        return Err("contract: a rule's target is not a schema object".into());
    };
    for (key, value) in rules {
        target.insert(key, value);
    }
    Ok(())
}

fn operation_mut<'a>(
    doc: &'a mut Value,
    method: &str,
    path: &str,
) -> Result<&'a mut Value, String> {
    doc.pointer_mut(&format!("/paths/{}/{method}", escape(path)))
        .ok_or_else(|| format!("contract: no operation {} {path}", method.to_uppercase()))
}

/// `path` as one JSON-pointer token (`/v1/x` → `~1v1~1x`).
pub(super) fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

fn parameters_mut<'a>(doc: &'a mut Value, path: &str) -> impl Iterator<Item = &'a mut Value> {
    doc.pointer_mut(&format!("/paths/{}", escape(path)))
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
        .flatten()
}

/// Every operation has an operationId of its own (a generated client's
/// method names), every path parameter a pattern or an enum.
fn unruled_path_parameters(doc: &Value) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for item in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(id) = operation["operationId"].as_str() {
                if !seen.insert(id) {
                    return Err(format!("contract: two operations are named {id}"));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                if parameter["in"] == "path"
                    && schema.get("pattern").is_none()
                    && schema.get("enum").is_none()
                {
                    missing.push(format!(
                        "{} {path} {}",
                        method.to_uppercase(),
                        parameter["name"]
                    ));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "contract: these path parameters have no pattern or enum (add them to PATH_RULES): {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str) -> regex::Regex {
        // ECMA 262's \u and four hex digits is \x{…} to the regex crate; lookaheads
        // are not supported there, so the key pattern is checked in
        // tests/api/contract.rs against the server instead.
        let rust = pattern.replace("\\u", "\\x");
        let rust = regex::Regex::new(r"\\x([0-9a-fA-F]{4})")
            .unwrap()
            .replace_all(&rust, r"\x{$1}")
            .to_string();
        regex::Regex::new(&rust).unwrap()
    }

    #[test]
    fn not_blank_is_what_trim_leaves_something_of() {
        let not_blank = regex(NOT_BLANK);
        for c in (0..=0x3100u32).filter_map(char::from_u32) {
            let text = format!(" {c} ");
            assert_eq!(
                not_blank.is_match(&text),
                !text.trim().is_empty(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn no_control_is_what_is_control_refuses() {
        let no_control = regex(NO_CONTROL);
        for c in (0..=0x3100u32).filter_map(char::from_u32) {
            assert_eq!(
                no_control.is_match(&format!("a{c}b")),
                !c.is_control(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn the_name_patterns_are_the_validators() {
        let index = regex(INDEX_NAME);
        let dataset = regex(DATASET_NAME);
        for name in [
            "a",
            "workers",
            "playbook_memory",
            "a-b",
            "0",
            "A",
            "",
            "a b",
            "é",
            &"a".repeat(64),
            &"a".repeat(65),
            "_x",
            "x_1",
        ] {
            assert_eq!(
                index.is_match(name),
                vectors::validate_name(name).is_ok(),
                "{name:?}"
            );
            assert_eq!(
                dataset.is_match(name),
                crate::domain::datasets::validate_dataset_name(name).is_ok(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn every_runtime_rule_names_a_documented_code_of_its_operation() {
        let settings = Settings::for_tests(std::path::Path::new("/nonexistent"), &[]);
        let contract = crate::http::Contract::build(&settings).unwrap();
        let codes: Vec<&str> = crate::codes::ErrorCode::ALL
            .iter()
            .map(|c| c.as_str())
            .collect();
        for (method, path, rules) in RUNTIME_RULES {
            let operation = &contract.document["paths"][path][method];
            let responses = operation["responses"].to_string();
            for (code, _) in *rules {
                if *code == "valid: false" {
                    continue;
                }
                assert!(codes.contains(code), "{code} is no error code");
                assert!(
                    responses.contains(&format!("`{code}`")),
                    "{method} {path} does not document {code}"
                );
            }
        }
    }
}
