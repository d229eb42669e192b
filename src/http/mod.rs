//! The HTTP door: routes, extractors, the front door, and the mapping of
//! use-case results to responses. Handlers are thin: extract, make one
//! call to [`crate::service`], answer JSON. [`edge`] is the actor that owns
//! the actix-web server.

mod admin;
pub mod auth;
pub mod chat;
mod console;
pub mod contract;
mod data;
pub mod edge;
mod embed;
pub mod error;
pub mod front_door;
mod matrix;
mod middleware;
pub mod openapi;
mod ops;
mod validate;
mod vectors;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{scope, AppExt};
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::config::Settings;
use crate::domain::auth::Role;
use crate::service::Context;

pub use auth::AccessRules;
pub use error::ApiError;

/// What every handler can reach: the application's [`Context`] (through
/// `Deref`: `context.settings`, `context.call(…)`), and what only the HTTP
/// door needs: the published contract, the event-stream permits, the front
/// door's state and the `/mcp` sessions.
#[derive(Clone, Debug)]
pub struct ApiContext {
    pub service: Context,
    pub contract: Arc<Contract>,
    /// One permit per open `/v1/supervision/events` stream.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// The front door: hosts served, open mode, per-token shares.
    pub front: Arc<front_door::FrontDoor>,
    /// The `/mcp` sessions and their caps.
    pub mcp_sessions: Arc<crate::mcp::sessions::McpSessions>,
}

impl std::ops::Deref for ApiContext {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.service
    }
}

/// The OpenAPI document of every route the server serves, and the access
/// rules read from it.
#[derive(Debug)]
pub struct Contract {
    pub document: serde_json::Value,
    pub rules: AccessRules,
}

impl Contract {
    /// Registers the routes on a throwaway app to collect the document (the
    /// server's workers register the same ones), with the body limits of
    /// `settings`. Fails when an operation states no `security`: a route
    /// nobody decided a role for must not be served.
    pub fn build(settings: &Settings) -> Result<Self, String> {
        let (_, routes) = App::new()
            .into_utoipa_app()
            .configure(routes)
            .split_for_parts();
        let document = openapi::document(routes, settings)?;
        let unsecured = AccessRules::unsecured(&document);
        if !unsecured.is_empty() {
            return Err(format!(
                "these operations state no `security` (the role they need, or `[]` for open): {}",
                unsecured.join(", ")
            ));
        }
        let rules = AccessRules::from_document(&document);
        Ok(Self { document, rules })
    }
}

/// Every route, through utoipa-actix-web, which records each in the
/// OpenAPI document as it registers it.
fn routes(cfg: &mut ServiceConfig) {
    ops::configure(cfg);
    console::configure(cfg);
    cfg.service(openapi::openapi_json);
    cfg.service(
        scope::scope("/v1")
            .configure(ops::configure_v1)
            .configure(console::configure_v1)
            .configure(admin::configure)
            .configure(embed::configure)
            .configure(vectors::configure)
            .configure(matrix::configure)
            .configure(validate::configure)
            .configure(data::configure)
            .configure(chat::configure),
    );
}

/// The role of the request's caller, as the front door recorded it
/// (`None`: no tokens are configured).
pub fn caller_role(request: &actix_web::HttpRequest) -> Option<Role> {
    use actix_web::HttpMessage as _;
    request
        .extensions()
        .get::<auth::Caller>()
        .and_then(|caller| caller.role)
}

/// The name of the request's caller, as the front door recorded it.
pub fn caller_name(request: &actix_web::HttpRequest) -> String {
    use actix_web::HttpMessage as _;
    request
        .extensions()
        .get::<auth::Caller>()
        .map_or_else(|| "anonymous".to_string(), |c| c.name.clone())
}

/// The streamable HTTP MCP service (`mcp.enabled`), built once so every
/// worker shares its sessions. The front door's verdict on the caller is
/// handed to the tools, which check the role each needs.
fn mcp_service(
    context: &ApiContext,
) -> Option<rmcp_actix_web::transport::StreamableHttpService<crate::mcp::LakehouseMcp>> {
    use actix_web::HttpMessage as _;
    let settings = context.settings.mcp.clone();
    if !settings.enabled {
        return None;
    }
    let backend = Arc::new(crate::mcp::backend::Backend::Local(context.service.clone()));
    // With tokens, a tool call must come with the role the front door
    // recorded; a call without one is refused.
    let handler = crate::mcp::LakehouseMcp::new(backend, settings.clone())
        .requiring_roles(!context.tokens.is_empty());
    let mut origins = vec![
        "http://localhost:*".to_string(),
        "http://127.0.0.1:*".to_string(),
        "http://[::1]:*".to_string(),
    ];
    origins.extend(settings.allowed_origins.iter().cloned());
    Some(
        rmcp_actix_web::transport::StreamableHttpService::builder()
            .service_factory(Arc::new(move || Ok(handler.clone())))
            .session_manager(context.mcp_sessions.manager.clone())
            .stateful_mode(true)
            .allowed_origins(origins)
            // The front door checks every request's Host (server.allowed_hosts
            // and mcp.allowed_hosts): one check, not two that could disagree.
            .allowed_hosts(Vec::<String>::new())
            .on_request_fn(|request, extensions| {
                let (role, name) = request
                    .extensions()
                    .get::<auth::Caller>()
                    .map_or((None, "anonymous".to_string()), |caller| {
                        (caller.role, caller.name.clone())
                    });
                extensions.insert(crate::mcp::McpCaller { role, name });
            })
            .build(),
    )
}

/// Builds the actix-web server on `listener` (not yet running).
pub fn server(listener: TcpListener, context: ApiContext) -> std::io::Result<Server> {
    let workers = match context.settings.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown = context.settings.server.shutdown_timeout_secs;
    let mcp = mcp_service(&context);
    let data = web::Data::new(context);
    let server = HttpServer::new(move || {
        let max_body = data.settings.limits.max_body_bytes;
        let (app, _) = App::new()
            .into_utoipa_app()
            .app_data(data.clone())
            .app_data(error::json_config(max_body))
            .app_data(error::path_config())
            .app_data(error::query_config())
            .app_data(web::PayloadConfig::new(max_body))
            .configure(routes)
            .split_for_parts();
        // Middleware: the last wrapped runs first. observe (ids, metrics,
        // the log line with the caller) → authorize → one error shape.
        let app = match mcp.clone() {
            Some(mcp) => app.service(mcp.scope_with_path("/mcp")),
            None => app,
        };
        app.service(web::redirect("/docs", "/docs/"))
            .service(SwaggerUi::new("/docs/{_:.*}").config(SwaggerConfig::new(["/openapi.json"])))
            .default_service(web::to(error::not_found))
            .wrap(error::uniform_errors())
            .wrap(actix_web::middleware::from_fn(front_door::admit))
            .wrap(actix_web::middleware::from_fn(middleware::observe))
    })
    .workers(workers)
    // Small request/response exchanges: no Nagle delay on either side.
    .tcp_nodelay(true)
    // A client that goes away (an EOF on its side) ends the request: its
    // handler is dropped, which cancels what it waits for (a query, a
    // chat) instead of running it to the end for nobody. The price: a
    // client that half-closes after sending its request gets no answer.
    .h1_allow_half_closed(false)
    .shutdown_timeout(shutdown)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
