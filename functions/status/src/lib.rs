//! `POST /api/host/status` (host key): a host reports `busy` or `idle`; ends a reservation.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::HostKeys];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, JsonBody, require_bearer, respond};
use switchboard::model::HostStatus;
use switchboard::{ApiError, Deps, validate};

#[tracing::instrument(skip_all, fields(route = "status"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(status(deps, &event).await, ErrorStyle::Matchmaking)
}

async fn status(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    if !deps.config.host_keys.is_empty() {
        require_bearer(event, &deps.config.host_keys)?;
    }
    let body = JsonBody::parse(event)?;
    let host_id = validate::identifier("hostId", body.required_str("hostId")?)?;
    let status = HostStatus::parse(body.required_str("status")?)
        .ok_or_else(|| ApiError::bad_request("status must be idle or busy"))?;
    if deps.store.set_host_status(&host_id, status).await? {
        Ok(json!({ "success": true }))
    } else {
        Err(ApiError::not_found("Host not registered"))
    }
}
