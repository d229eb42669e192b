//! Tokens and roles: who is calling, and may they call this route (the
//! [`super::front_door`] asks, after it has found the route).
//!
//! Every request's route (its template, e.g. `/v1/vectors/index/{name}`)
//! and method are looked up in the [`AccessRules`], which are read from the
//! OpenAPI document's `security` requirements: `/health` and the contract
//! are open, `/ready` and `/metrics` are open unless `auth.protect_ops`,
//! everything else needs a bearer token whose role is at least the one the
//! operation names. Every operation states its `security` (open ones an
//! empty list): one that does not stops the server at start-up.
//!
//! With no tokens configured the service is open (it refuses to start like
//! that on anything but loopback, see [`crate::startup`]); every request
//! is then logged as the caller `anonymous`.

use std::collections::HashMap;

use actix_web::dev::ServiceRequest;
use actix_web::http::{header, Method};
use serde_json::Value;

use super::{ApiContext, ApiError};
use crate::domain::auth::{bearer, Role, Tokens};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/health`, the contract, the docs).
    Open,
    /// Anyone, unless `auth.protect_ops`: then any valid token.
    Ops,
    /// A token with at least this role.
    Role(Role),
}

/// Who made a request, for the log line and the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (never the token), or `anonymous`.
    pub name: String,
    /// `None` when no token was needed or none is configured.
    pub role: Option<Role>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: None,
        }
    }
}

/// Route template and method → what it needs, read from the document.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: HashMap<(String, String), Access>,
}

impl AccessRules {
    /// Every `method path` of the document whose operation has no
    /// `security` entry: a route nobody decided a role for. The server
    /// refuses to start while there is one.
    pub fn unsecured(document: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let paths = document.get("paths").and_then(Value::as_object);
        for (path, item) in paths.into_iter().flatten() {
            for method in super::openapi::METHODS {
                if let Some(operation) = item.get(method) {
                    if operation.get("security").is_none() {
                        found.push(format!("{} {path}", method.to_ascii_uppercase()));
                    }
                }
            }
        }
        found
    }

    pub fn from_document(document: &Value) -> Self {
        let mut rules = HashMap::new();
        let paths = document.get("paths").and_then(Value::as_object);
        for (path, item) in paths.into_iter().flatten() {
            for method in super::openapi::METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                rules.insert(
                    (method.to_ascii_uppercase(), normalise(path)),
                    access_of(operation.get("security")),
                );
            }
        }
        Self { rules }
    }

    /// What `method` on the route `template` needs; `None` if the document
    /// does not know it.
    pub fn access(&self, method: &Method, template: &str) -> Option<Access> {
        self.rules
            .get(&(method.as_str().to_string(), normalise(template)))
            .copied()
    }

    /// Every (method, template) the document knows, with its access.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str, Access)> {
        self.rules
            .iter()
            .map(|((method, path), access)| (method.as_str(), path.as_str(), *access))
    }

    /// The route `method` on `path` takes when `template`, the first
    /// pattern the path matches, does not serve the method: the same
    /// template with some of its parameters spelled as the path's own
    /// segments (`…/items/update` beside `…/items/{id}`), if the document
    /// has it for `method` — as actix's router, which tries the next
    /// resource when a method guard fails.
    pub fn literal_route(&self, method: &Method, template: &str, path: &str) -> Option<String> {
        self.literal(template, path, |candidate| {
            self.access(method, candidate).is_some()
        })
    }

    /// [`AccessRules::literal_route`] for any method the document has
    /// (what a `405` and its `Allow` name when no method matches).
    pub fn literal_template(&self, template: &str, path: &str) -> Option<String> {
        self.literal(template, path, |candidate| {
            !self.methods_of(candidate).is_empty()
        })
    }

    fn literal(&self, template: &str, path: &str, served: impl Fn(&str) -> bool) -> Option<String> {
        let template = normalise(template);
        let pattern: Vec<&str> = template.split('/').collect();
        let given: Vec<&str> = path.split('/').collect();
        if pattern.len() != given.len() {
            return None;
        }
        let params: Vec<usize> = (0..pattern.len())
            .filter(|&i| pattern[i].starts_with('{'))
            .collect();
        if params.is_empty() || params.len() > 4 {
            return None;
        }
        (1u32..(1 << params.len())).find_map(|mask| {
            let mut segments = pattern.clone();
            for (bit, &i) in params.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    segments[i] = given[i];
                }
            }
            let candidate = segments.join("/");
            served(&candidate).then_some(candidate)
        })
    }

    /// The methods a template is served with (for `405` and `Allow`).
    pub fn methods_of(&self, template: &str) -> Vec<&str> {
        let template = normalise(template);
        let mut methods: Vec<&str> = self
            .rules
            .keys()
            .filter(|(_, path)| *path == template)
            .map(|(method, _)| method.as_str())
            .collect();
        methods.sort_unstable();
        methods
    }
}

/// `{key:.+}` (actix's pattern) and `{key}` (the document's) are one route.
pub(crate) fn normalise(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_regex = false;
    for c in template.chars() {
        match c {
            ':' if out.rfind('{') > out.rfind('}') => in_regex = true,
            '}' => {
                in_regex = false;
                out.push(c);
            }
            _ if in_regex => {}
            _ => out.push(c),
        }
    }
    out
}

/// Reads an operation's `security`: `[]` is open; `[{}, {"bearer": []}]`
/// (token optional) is ops; `[{"bearer": ["write"]}]` needs `write`. An
/// operation without one is refused at start-up
/// ([`AccessRules::unsecured`]); should one get here, it needs a token.
fn access_of(security: Option<&Value>) -> Access {
    let Some(requirements) = security.and_then(Value::as_array) else {
        return Access::Role(Role::Read);
    };
    let optional = requirements
        .iter()
        .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
    let scopes: Vec<&str> = requirements
        .iter()
        .filter_map(|r| r.get("bearer").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match scopes.iter().filter_map(|s| Role::parse(s)).min() {
        Some(role) => Access::Role(role),
        None if optional => Access::Ops,
        None if requirements.is_empty() => Access::Open,
        // A bearer requirement without a role: any token.
        None => Access::Role(Role::Read),
    }
}

/// Whether the request's bearer token may use a route that needs
/// `access`: the caller it names, or why not.
pub(super) fn check_access(
    req: &ServiceRequest,
    context: &ApiContext,
    access: Access,
) -> Result<Caller, (Caller, ApiError)> {
    let anonymous = Caller::anonymous();
    let tokens: &Tokens = &context.tokens;
    let needed = match access {
        Access::Open => return Ok(anonymous),
        Access::Ops if !context.settings.auth.protect_ops => return Ok(anonymous),
        Access::Ops => None,
        Access::Role(role) => Some(role),
    };
    if tokens.is_empty() {
        return Ok(anonymous);
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = match header {
        None => {
            let refusal = ApiError::Unauthorized(
                "this route needs a bearer token (Authorization: Bearer <token>)".into(),
            );
            return Err((anonymous, refusal));
        }
        Some(value) => bearer(value),
    };
    let Some(entry) = presented.and_then(|token| tokens.check(token)) else {
        let refusal = ApiError::Unauthorized("the bearer token is not valid".into());
        return Err((anonymous, refusal));
    };
    let caller = Caller {
        name: entry.name.clone(),
        role: Some(entry.role),
    };
    match needed {
        Some(needed) if entry.role < needed => {
            let refusal = ApiError::Forbidden {
                needed,
                token: entry.name.clone(),
                role: entry.role,
            };
            Err((caller, refusal))
        }
        _ => Ok(caller),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_with_and_without_regexes_are_one_route() {
        assert_eq!(
            normalise("/v1/storage/objects/{key:.+}"),
            "/v1/storage/objects/{key}"
        );
        assert_eq!(
            normalise("/v1/vectors/index/{name}"),
            "/v1/vectors/index/{name}"
        );
        assert_eq!(normalise("/a/{x:[0-9]+}/b/{y}"), "/a/{x}/b/{y}");
    }

    #[test]
    fn security_requirements_map_to_access() {
        assert_eq!(access_of(None), Access::Role(Role::Read));
        assert_eq!(access_of(Some(&json!([]))), Access::Open);
        assert_eq!(access_of(Some(&json!([{}, {"bearer": []}]))), Access::Ops);
        assert_eq!(
            access_of(Some(&json!([{"bearer": ["write"]}]))),
            Access::Role(Role::Write)
        );
        let doc = json!({"paths": {
            "/v1/x/{id}": {"get": {"security": [{"bearer": ["read"]}]},
                           "delete": {"security": [{"bearer": ["admin"]}]}},
            "/health": {"get": {"security": []}},
            "/forgotten": {"post": {}}
        }});
        let rules = AccessRules::from_document(&doc);
        assert_eq!(
            rules.access(&Method::GET, "/v1/x/{id}"),
            Some(Access::Role(Role::Read))
        );
        assert_eq!(
            rules.access(&Method::DELETE, "/v1/x/{id}"),
            Some(Access::Role(Role::Admin))
        );
        assert_eq!(rules.access(&Method::POST, "/v1/x/{id}"), None);
        assert_eq!(rules.access(&Method::GET, "/health"), Some(Access::Open));
        assert_eq!(rules.methods_of("/v1/x/{id}"), ["DELETE", "GET"]);
        assert_eq!(AccessRules::unsecured(&doc), ["POST /forgotten"]);
        // A literal route beside a parameter one takes its own method.
        let doc = json!({"paths": {
            "/v1/x/{id}": {"get": {"security": [{"bearer": ["read"]}]}},
            "/v1/x/count": {"post": {"security": [{"bearer": ["read"]}]}},
        }});
        let rules = AccessRules::from_document(&doc);
        assert_eq!(
            rules.literal_route(&Method::POST, "/v1/x/{id}", "/v1/x/count"),
            Some("/v1/x/count".to_string())
        );
        assert_eq!(
            rules.literal_route(&Method::POST, "/v1/x/{id}", "/v1/x/other"),
            None
        );
        assert_eq!(
            rules.literal_template("/v1/x/{id}", "/v1/x/count"),
            Some("/v1/x/count".to_string())
        );
        assert_eq!(
            rules.literal_route(&Method::POST, "/v1/x/{id}", "/v1/x/count/more"),
            None
        );
    }
}
