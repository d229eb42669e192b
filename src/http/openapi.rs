//! The published contract: an OpenAPI 3.1 document generated from the
//! handlers' `#[utoipa::path]` annotations and the request and response
//! types (utoipa), served at `/openapi.json`, with Swagger UI at `/docs/`
//! (its assets are compiled into the binary: nothing is fetched).
//!
//! The routes are registered through `utoipa-actix-web`, which records
//! each one in the document as it registers it with actix-web: a route the
//! server serves cannot be missing from the document. The role an
//! operation needs is its `security` requirement, and the access rules are
//! read back from the document ([`super::auth::AccessRules`]), so the
//! contract clients see is the one the server enforces.
//!
//! Every operation's own responses are in its annotation; the ones every
//! route shares (a body that is not JSON, a missing token, an actor that is
//! restarting, …) are added here, from what the operation takes, so none
//! is forgotten and none is listed where it cannot happen.

use actix_web::get;
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lakehouse",
        description = "A self-healing knowledge service for staffing analytics: semantic worker \
search with a playbook learning loop, vector indexes (Lance + faiss HNSW), outreach validators, \
CSV ingest and read-only SQL, every component an actor under an OTP-style supervision tree.\n\n\
Errors have one shape: `{\"error\": {\"code\", \"message\"}}`. Send `Authorization: Bearer \
<token>`; each operation names the role it needs (`read` < `write` < `admin`).",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "ops", description = "Liveness, readiness, metrics, the supervision tree and its events, alarms, the contract"),
        (name = "console", description = "The web console and who the caller is"),
        (name = "admin", description = "Operator actions: faults, index restarts"),
        (name = "embed", description = "Text to unit vectors"),
        (name = "vectors", description = "Vector indexes: Lance as the truth, faiss HNSW derived"),
        (name = "matrix", description = "Worker search and the playbook learning loop"),
        (name = "validate", description = "Outreach validators: e-mail, SMS, fill proposals"),
        (name = "data", description = "Objects, CSV ingest into Lance datasets, the catalog, SQL"),
        (name = "chat", description = "Answers over retrieved records, with citations pinned to Lance versions; the replay log"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme the operations' requirements refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token made with `lakehouse token new`. The requirement's scope is \
                         the least role the operation needs: read < write < admin.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The operations anyone may call: they state it with an empty
/// `security` list. Every other operation names its role; one that states
/// nothing stops the server at start-up ([`super::Contract::build`]).
pub const OPEN: [(&str, &str); 4] = [
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("get", "/console"),
    ("get", "/console/{file}"),
];

/// The whole document: the annotated routes (as registered) merged into
/// the root above, with the open operations marked, the shared responses
/// added (body limits from `settings`) and the rules of
/// [`super::contract`] applied.
pub fn document(
    routes: utoipa::openapi::OpenApi,
    settings: &crate::config::Settings,
) -> Result<Value, String> {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes);
    let mut value = serde_json::to_value(&doc).unwrap_or_else(|_| json!({}));
    for (method, path) in OPEN {
        if let Some(operation) = value
            .pointer_mut(&format!(
                "/paths/{}/{method}",
                super::contract::escape(path)
            ))
            .and_then(Value::as_object_mut)
        {
            operation.insert("security".into(), json!([]));
        }
    }
    add_shared_responses(&mut value, settings);
    super::contract::apply(&mut value, settings)?;
    Ok(value)
}

/// HTTP methods as the document names them.
pub const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

fn add_shared_responses(doc: &mut Value, settings: &crate::config::Settings) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for method in METHODS {
            if let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) {
                let method =
                    actix_web::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                        .unwrap_or(actix_web::http::Method::GET);
                let limit = super::front_door::body_limit(settings, &method, path);
                add_to_operation(path, operation, limit);
            }
        }
    }
}

fn add_to_operation(path: &str, operation: &mut Map<String, Value>, body_limit: u64) {
    let has_body = operation.contains_key("requestBody");
    let json_body = operation
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .is_some_and(|c| c.contains_key("application/json"));
    let parameters = |place: &str| {
        operation
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
    };
    let (path_params, query_params) = (parameters("path"), parameters("query"));
    let security = operation.get("security").and_then(Value::as_array).cloned();
    let needs_token = security
        .as_ref()
        .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearer").is_some()));
    let calls_actors = path.starts_with("/v1/") || path == "/ready";

    let mut shared: Vec<(&str, String)> = Vec::new();
    let mut bad_request = Vec::new();
    if json_body {
        bad_request.push("`malformed_json`");
    } else if has_body {
        bad_request.push("`malformed_body`");
    }
    if path_params {
        bad_request.push("`invalid_path`");
    }
    if query_params {
        bad_request.push("`invalid_query`");
    }
    if !bad_request.is_empty() {
        shared.push(("400", bad_request.join(", ")));
    }
    if needs_token {
        shared.push(("401", "`unauthorized`: no valid bearer token".into()));
        let optional = security.as_ref().is_some_and(|reqs| {
            reqs.iter()
                .any(|r| r.as_object().is_some_and(Map::is_empty))
        });
        if !optional {
            shared.push(("403", "`forbidden`: the token's role is too low".into()));
        }
    }
    if has_body {
        shared.push((
            "413",
            format!(
                "`payload_too_large`: the body is over this route's limit of {body_limit} bytes"
            ),
        ));
        operation.insert("x-max-body-bytes".into(), json!(body_limit));
    }
    if json_body {
        shared.push((
            "415",
            "`unsupported_media_type`: send `application/json`".into(),
        ));
        shared.push((
            "422",
            "`invalid_body`: wrong types, missing or unknown fields".into(),
        ));
    }
    shared.push((
        "421",
        "`host_not_allowed`: the `Host` header is not one of `server.allowed_hosts`".into(),
    ));
    shared.push((
        "500",
        "`internal`: a bug, with the request id in the log".into(),
    ));
    if calls_actors {
        shared.push((
            "503",
            "`actor_unavailable` or `actor_failed`: the actor behind the route is restarting \
             or was given up on (with `Retry-After`)"
                .into(),
        ));
        shared.push((
            "504",
            "`actor_timeout`: no reply within `server.request_timeout_ms`".into(),
        ));
    }

    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    for (status, description) in shared {
        let error = json!({"$ref": "#/components/schemas/ErrorBody"});
        match responses.get_mut(status) {
            // The route documents its own codes for this status: say that
            // the shared ones can happen too.
            Some(existing) => {
                if let Some(text) = existing.get("description").and_then(Value::as_str) {
                    if !text.contains(description.as_str()) {
                        existing["description"] = json!(format!("{text}; or {description}"));
                    }
                }
            }
            None => {
                responses.insert(
                    status.to_string(),
                    json!({
                        "description": description,
                        "content": {"application/json": {"schema": error}},
                    }),
                );
            }
        }
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json"))
)]
#[get("/openapi.json")]
pub async fn openapi_json(
    context: actix_web::web::Data<super::ApiContext>,
) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(&context.contract.document)
}
