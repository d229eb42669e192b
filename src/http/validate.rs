//! `POST /v1/validate {kind: email | sms | fill, …}`: `200 {"valid": true}`
//! or `422 {"valid": false, "errors": [{kind, field, reason}]}`.

use crate::domain::de::Object;
use actix_web::{post, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiContext, ApiError};
use crate::domain::validate::{ValidateRequest, Verdict};
use crate::service;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(validate);
}

/// A 422 of `/v1/validate`: the verdict of a check that failed, or the
/// error of a request that could not be read.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
enum ValidateFailure {
    Verdict(Verdict),
    Error(super::error::ErrorBody),
}

/// Check outreach before it is sent: an e-mail, an SMS, or a fill proposal
/// (workers for an order). A failed check is a verdict, not an error.
#[utoipa::path(
    tag = "validate",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "`{\"valid\": true}`", body = Verdict),
        (status = 422, description = "`{\"valid\": false, \"errors\": [...]}` — or `invalid_body`, `too_many_ids` (a fill proposal of more than 1,000 workers)", body = ValidateFailure),
    ),
    security(("bearer" = ["read"]))
)]
#[post("/validate")]
#[tracing::instrument(skip_all)]
async fn validate(
    context: web::Data<ApiContext>,
    request: web::Json<Object<ValidateRequest>>,
) -> Result<HttpResponse, ApiError> {
    let verdict = service::ops::validate(&context, request.into_inner().0).await?;
    Ok(if verdict.valid {
        HttpResponse::Ok().json(verdict)
    } else {
        HttpResponse::UnprocessableEntity().json(verdict)
    })
}
