//! The front door: the one middleware every request passes before any
//! handler, and which fails closed.
//!
//! In order:
//! 1. **Host.** The `Host` header must be one of `server.allowed_hosts`
//!    (loopback names always are), else `421 host_not_allowed`: a web page
//!    that rebinds its own DNS name to 127.0.0.1 cannot reach the API.
//! 2. **Route.** The route is looked up on the path *as the router matches
//!    it* (percent-decoded), never on the raw one: `/v1/wh%6Fami` is
//!    `/v1/whoami` to both. A path no route matches gets its `404` (or
//!    `405` with `Allow`) here and is never forwarded.
//! 3. **Proxy in open mode.** With no tokens the service trusts the
//!    loopback address; a `Forwarded` or `X-Forwarded-*` header says the
//!    loopback address is a proxy for someone else, so such a request is
//!    refused (`403 open_behind_proxy`) unless `auth.allow_open = true`.
//! 4. **Access.** The route's role, read from the contract
//!    ([`super::auth::AccessRules`]), against the bearer token.
//! 5. **MCP sessions.** A new `/mcp` session is refused past `mcp.max_sessions`
//!    (and, with tokens, past `mcp.max_sessions_per_token` for its token).
//! 6. **Body.** Each route has its own body limit (a search takes a few
//!    hundred KiB, an item batch 16 MiB): a larger `Content-Length` is
//!    refused at once, and a body that turns out larger is cut off as it
//!    streams, both `413 payload_too_large`.
//!
//! The route and caller it decided on are left in the request's
//! extensions ([`Admitted`], [`super::auth::Caller`]) for the handlers and
//! the access log.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, Error, HttpMessage};
use futures::Stream;
use parking_lot::Mutex;

use super::auth::{self, Access, Caller};
use super::{ApiContext, ApiError};
use crate::config::Settings;
use crate::domain::auth::host_name;

/// What the front door let in: the route template (as the document names
/// it) and the body limit it applied.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub route: String,
    pub body_limit: u64,
}

/// The headers a proxy adds (RFC 7239 and the de-facto ones).
const PROXY_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// The front door's own state: which hosts it serves, whether it is open,
/// and the per-token shares of the long-lived resources.
#[derive(Debug)]
pub struct FrontDoor {
    hosts: HostRule,
    /// No tokens configured: every caller is `anonymous`.
    open: bool,
    /// `auth.allow_open`: an open service may be reached through a proxy.
    allow_open_proxied: bool,
    /// How many of each resource a token holds now.
    pub shares: Arc<Shares>,
}

impl FrontDoor {
    pub fn new(settings: &Settings) -> Self {
        Self {
            hosts: HostRule::from_settings(settings),
            open: settings.auth.tokens.is_empty(),
            allow_open_proxied: settings.auth.allow_open,
            shares: Arc::new(Shares::default()),
        }
    }

    /// Whether tokens are configured (per-token shares then apply).
    pub fn has_tokens(&self) -> bool {
        !self.open
    }

    /// A share of `kind` for `caller`, at most `per_token` at once (no
    /// per-token bound in open mode, where everyone is `anonymous`).
    pub fn share(&self, kind: &'static str, caller: &str, per_token: usize) -> Option<Share> {
        let max = if self.open { usize::MAX } else { per_token };
        self.shares.take(kind, caller, max)
    }
}

/// Which `Host` headers are served.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// `"*"` among `server.allowed_hosts`.
    Any,
    /// Lower-case host names (without port).
    Names(HashSet<String>),
}

impl HostRule {
    fn from_settings(settings: &Settings) -> Self {
        let configured = settings
            .server
            .allowed_hosts
            .iter()
            .chain(&settings.mcp.allowed_hosts);
        let mut names: HashSet<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(str::to_string)
            .collect();
        for name in configured {
            if name == "*" {
                return HostRule::Any;
            }
            names.insert(name.to_ascii_lowercase());
        }
        // The address the service binds, when it is a specific one.
        if let Some(bound) = host_name(&settings.server.host) {
            if !["0.0.0.0", "[::]", "::"].contains(&bound.as_str()) {
                names.insert(bound);
            }
        }
        HostRule::Names(names)
    }

    fn allows(&self, host: Option<&str>) -> bool {
        match self {
            HostRule::Any => true,
            HostRule::Names(names) => host
                .and_then(host_name)
                .is_some_and(|name| names.contains(&name)),
        }
    }
}

/// Counts of what each caller holds, by kind (event streams, transfers,
/// MCP sessions).
#[derive(Debug, Default)]
pub struct Shares {
    held: Mutex<HashMap<(&'static str, String), usize>>,
}

impl Shares {
    fn take(self: &Arc<Self>, kind: &'static str, caller: &str, max: usize) -> Option<Share> {
        let mut held = self.held.lock();
        let count = held.entry((kind, caller.to_string())).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Share {
            shares: self.clone(),
            key: (kind, caller.to_string()),
        })
    }

    /// What `caller` holds of `kind` now.
    pub fn held(&self, kind: &'static str, caller: &str) -> usize {
        self.held
            .lock()
            .get(&(kind, caller.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// One unit of a caller's share, given back when dropped.
#[derive(Debug)]
pub struct Share {
    shares: Arc<Shares>,
    key: (&'static str, String),
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The body limit of a route: item batches (adds, bulk updates and
/// deletes, a patch's text) take `limits.max_body_bytes`,
/// embedding, validation and SQL `limits.max_text_body_bytes`, uploads their own
/// (`storage.max_object_bytes`, `ingest.max_bytes`), every other route
/// `limits.max_request_bytes`; no JSON route more than
/// `limits.max_body_bytes`.
pub fn body_limit(settings: &Settings, method: &Method, route: &str) -> u64 {
    let limits = &settings.limits;
    let json = |limit: usize| limit.min(limits.max_body_bytes) as u64;
    match (method.as_str(), route) {
        // Item batches, and what may name as many ids or a whole text.
        ("POST", "/v1/vectors/index/{name}/add")
        | ("POST", "/v1/vectors/index/{name}/items/update")
        | ("POST", "/v1/vectors/index/{name}/items/delete")
        | ("PATCH", "/v1/vectors/index/{name}/items/{id}") => json(limits.max_body_bytes),
        // SQL too: a text over query.max_sql_bytes is told so (400), not
        // just refused as a body.
        ("POST", "/v1/embed") | ("POST", "/v1/validate") | ("POST", "/v1/sql") => {
            json(limits.max_text_body_bytes)
        }
        ("PUT", "/v1/storage/objects/{key}") => settings.storage.max_object_bytes,
        ("POST", "/v1/ingest/{dataset}") => settings.ingest.max_bytes,
        _ => json(limits.max_request_bytes),
    }
}

/// The route a request will be routed to, as the document names it: the
/// resource map matched against the percent-decoded path, which is what
/// actix's router matches (the raw path would miss `/v1/wh%6Fami`).
fn route_of(req: &ServiceRequest) -> Option<String> {
    req.resource_map()
        .match_pattern(req.match_info().as_str())
        .map(|pattern| auth::normalise(&pattern))
}

/// The middleware.
pub async fn admit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, Error> {
    let Some(context) = req.app_data::<web::Data<ApiContext>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let decision = decide(&req, &context).await;
    let (caller, admitted, session) = match decision {
        Ok(admitted) => admitted,
        Err((caller, refusal)) => {
            req.extensions_mut().insert(caller);
            let (request, _) = req.into_parts();
            let response = actix_web::ResponseError::error_response(&refusal);
            return Ok(ServiceResponse::new(request, response));
        }
    };
    limit_payload(&mut req, admitted.body_limit);
    let name = caller.name.clone();
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(admitted.clone());
    let response = next.call(req).await?;
    // The router and the front door must agree on the route: a
    // disagreement is a bypass in the making, counted and logged.
    if let Some(routed) = response.request().match_pattern() {
        if auth::normalise(&routed) != admitted.route {
            tracing::error!(admitted = %admitted.route, %routed, "the front door and the router disagree on a route");
            context.metrics.front_door_mismatches.inc();
        }
    }
    if let Some(session) = session {
        session.created(&response, &name);
    }
    Ok(response.map_into_boxed_body())
}

type Refusal = (Caller, ApiError);

/// Methods a browser may send cross-site without asking (and that change
/// nothing here).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a request looks sent by another site's page, if it does: the
/// browser says so (`Sec-Fetch-Site: cross-site`), or its `Origin` names a
/// host this service does not answer to. A service without tokens would
/// otherwise do what any page its user opens asks (a form POST needs no
/// preflight). Clients that are not browsers send neither header.
fn cross_site(req: &ServiceRequest, hosts: &HostRule) -> Option<String> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") {
            return Some("Sec-Fetch-Site: cross-site".to_string());
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("(not text)");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    match authority {
        Some(authority) if hosts.allows(Some(authority)) => None,
        _ => Some(format!(
            "Origin: {}",
            origin.chars().take(100).collect::<String>()
        )),
    }
}

async fn decide(
    req: &ServiceRequest,
    context: &ApiContext,
) -> Result<(Caller, Admitted, Option<crate::mcp::sessions::Pending>), Refusal> {
    let anonymous = Caller::anonymous();
    let front = &context.front;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !front.hosts.allows(host) {
        let shown = host.map(|h| h.chars().take(100).collect::<String>());
        return Err((anonymous, ApiError::HostNotAllowed(shown)));
    }
    let method = req.method().clone();
    let Some(mut route) = route_of(req) else {
        return Err((anonymous, ApiError::route_not_found(&method, req.path())));
    };
    // `…/items/update` beside `…/items/{id}`: the literal route serves
    // its own methods (and names them in a 405).
    let rules = &context.contract.rules;
    if rules.access(&method, &route).is_none() {
        let path = req.match_info().as_str();
        if let Some(literal) = rules
            .literal_route(&method, &route, path)
            .or_else(|| rules.literal_template(&route, path))
        {
            route = literal;
        }
    }
    if front.open && !front.allow_open_proxied {
        if let Some(found) = PROXY_HEADERS
            .iter()
            .find(|h| req.headers().contains_key(**h))
        {
            return Err((anonymous, ApiError::OpenBehindProxy(found.to_string())));
        }
    }
    if front.open && !is_safe(&method) {
        if let Some(site) = cross_site(req, &front.hosts) {
            return Err((anonymous, ApiError::CrossSite(site)));
        }
    }
    if let Some(encoding) = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
    {
        // The body limits count the bytes that arrive; a decompressed body
        // could be any size.
        return Err((
            anonymous,
            ApiError::UnsupportedMediaType(format!(
                "compressed request bodies are not accepted (Content-Encoding: {}); send it uncompressed",
                encoding.chars().take(40).collect::<String>()
            )),
        ));
    }
    let access = if route == "/mcp" || route.starts_with("/mcp/") {
        // Any valid token; each tool then checks the role it needs.
        Access::Role(crate::domain::auth::Role::Read)
    } else if route == "/docs" || route.starts_with("/docs/") {
        Access::Open
    } else {
        match context.contract.rules.access(&method, &route) {
            Some(access) => access,
            None => {
                let allow = context.contract.rules.methods_of(&route);
                if allow.is_empty() {
                    // Served but not in the contract: nobody decided a
                    // role for it (start-up checks this cannot happen).
                    tracing::error!(%route, %method, "a route without an access rule");
                    return Err((anonymous, ApiError::route_not_found(&method, req.path())));
                }
                return Err((
                    anonymous,
                    ApiError::MethodNotAllowed {
                        method: method.to_string(),
                        path: req.path().to_string(),
                        allow: allow.join(", "),
                    },
                ));
            }
        }
    };
    let caller = auth::check_access(req, context, access)?;
    // `/mcp` and `/mcp/` are the same service.
    let opens_session = route.trim_end_matches('/') == "/mcp"
        && method == Method::POST
        && !req.headers().contains_key("mcp-session-id");
    let session = if opens_session {
        match context
            .mcp_sessions
            .admit(&caller.name, front.has_tokens())
            .await
        {
            Ok(pending) => Some(pending),
            Err(refusal) => return Err((caller, refusal)),
        }
    } else {
        None
    };
    let body_limit = body_limit(&context.settings, &method, &route);
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > body_limit {
            return Err((
                caller,
                ApiError::PayloadTooLarge {
                    limit: body_limit as usize,
                },
            ));
        }
    }
    Ok((caller, Admitted { route, body_limit }, session))
}

/// Replaces the request's body with one that fails with
/// [`PayloadError::Overflow`] once more than `limit` bytes have arrived.
fn limit_payload(req: &mut ServiceRequest, limit: u64) {
    let (_, payload) = req.parts_mut();
    let inner = std::mem::replace(payload, Payload::None);
    if matches!(inner, Payload::None) {
        return;
    }
    let limited = Limited {
        inner,
        left: limit,
        over: false,
    };
    *payload = Payload::Stream {
        payload: Box::pin(limited),
    };
}

/// A body stream with a byte budget.
struct Limited {
    inner: Payload,
    left: u64,
    over: bool,
}

impl Stream for Limited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.over {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let size = chunk.len() as u64;
                if size > self.left {
                    self.over = true;
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                self.left -= size;
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_are_served() {
        let rule = HostRule::Names(
            ["localhost", "lakehouse.example.com"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        assert!(rule.allows(Some("localhost:3100")));
        assert!(rule.allows(Some("Lakehouse.Example.com")));
        assert!(!rule.allows(Some("attacker.example")));
        assert!(!rule.allows(None));
        assert!(HostRule::Any.allows(None));
    }

    #[test]
    fn shares_are_counted_per_caller_and_given_back() {
        let shares = Arc::new(Shares::default());
        let a = shares.take("streams", "reader", 2).unwrap();
        let _b = shares.take("streams", "reader", 2).unwrap();
        assert!(shares.take("streams", "reader", 2).is_none());
        assert!(shares.take("streams", "writer", 2).is_some());
        assert!(shares.take("transfers", "reader", 2).is_some());
        drop(a);
        assert_eq!(shares.held("streams", "reader"), 1);
        assert!(shares.take("streams", "reader", 2).is_some());
    }
}
