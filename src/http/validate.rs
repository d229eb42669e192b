//! `POST /v1/validate {kind: email | sms | fill, …}`: `200 {"valid": true}`
//! or `422 {"valid": false, "errors": [{kind, field, reason}]}`.

use actix_web::{web, HttpResponse};

use super::{ApiContext, ApiError};
use crate::actors::validate::{ValidateMessage, NAME};
use crate::domain::validate::ValidateRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/validate", web::post().to(validate));
}

#[tracing::instrument(skip_all)]
async fn validate(
    context: web::Data<ApiContext>,
    request: web::Json<ValidateRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = request.into_inner();
    let verdict = context
        .call(NAME, |reply| ValidateMessage::Validate { request, reply })
        .await??;
    Ok(if verdict.valid {
        HttpResponse::Ok().json(verdict)
    } else {
        HttpResponse::UnprocessableEntity().json(verdict)
    })
}
