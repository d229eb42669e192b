//! The web console: `/console` (the page) and `/console/{file}` (its
//! script and style), compiled into the binary from `console/` — nothing
//! is fetched from anywhere else, so it works offline; a Content Security
//! Policy of `'self'` makes the browser refuse anything else too. The page
//! is open (it signs in with a token, kept in the tab's session storage);
//! every call it makes goes through the API and its roles.
//!
//! `GET /v1/whoami` tells the page what the token may do, so it shows only
//! those controls.

use actix_web::http::header;
use actix_web::{get, web, HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Caller;
use super::{ApiContext, ApiError};
use crate::domain::auth::Role;

/// `(file, contents, media type)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        include_str!("../../console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "app.js",
        include_str!("../../console/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "style.css",
        include_str!("../../console/style.css"),
        "text/css; charset=utf-8",
    ),
];

/// The files `/console/{file}` serves.
pub const FILES: [&str; 3] = [ASSETS[0].0, ASSETS[1].0, ASSETS[2].0];

/// Only this origin: no CDN, no third-party request, no inline script.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

/// Routes outside `/v1`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(console_page).service(console_file);
}

/// Routes under `/v1`.
pub fn configure_v1(cfg: &mut ServiceConfig) {
    cfg.service(whoami);
}

/// The console (always open: it asks for a token itself).
#[utoipa::path(
    tag = "console",
    responses((status = 200, description = "The console's page", content_type = "text/html", body = String))
)]
#[get("/console")]
async fn console_page() -> HttpResponse {
    serve("index.html").unwrap_or_else(|| HttpResponse::NotFound().finish())
}

/// One of the console's files (`app.js`, `style.css`).
#[utoipa::path(
    tag = "console",
    params(("file" = String, Path, description = "The file")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/html"),
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "`asset_not_found`: no such file", body = super::error::ErrorBody),
    )
)]
#[get("/console/{file}")]
async fn console_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&file).ok_or_else(|| ApiError::AssetNotFound(file.chars().take(80).collect()))
}

fn serve(file: &str) -> Option<HttpResponse> {
    let (_, body, media) = ASSETS.iter().find(|(name, _, _)| *name == file)?;
    Some(
        HttpResponse::Ok()
            .content_type(*media)
            .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
    )
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name, or `anonymous` when the service has no tokens.
    name: String,
    /// What the caller may do: `read`, `write` or `admin` (`admin` when
    /// the service has no tokens: it is open on loopback).
    role: Role,
    /// The service has no tokens configured.
    open: bool,
    /// `POST /v1/admin/faults` is enabled (`faults.enabled`).
    faults_enabled: bool,
}

/// Who the token is and what it may do.
#[utoipa::path(
    tag = "console",
    responses((status = 200, description = "The caller", body = WhoAmI)),
    security(("bearer" = ["read"]))
)]
#[get("/whoami")]
async fn whoami(context: web::Data<ApiContext>, request: HttpRequest) -> web::Json<WhoAmI> {
    let caller = request.extensions().get::<Caller>().cloned();
    let open = context.tokens.is_empty();
    web::Json(WhoAmI {
        name: caller
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |c| c.name.clone()),
        role: caller.and_then(|c| c.role).unwrap_or(Role::Admin),
        open,
        faults_enabled: context.settings.faults.enabled,
    })
}
