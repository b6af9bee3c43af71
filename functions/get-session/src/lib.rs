//! `GET /session/{id}` (operator key): one session with its status; a cold start's host once
//! its task has an address.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] =
    &[switchboard::Need::OperatorKeys, switchboard::Need::Sessions];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::Value;
use switchboard::http::{require_bearer, respond};
use switchboard::{ApiError, Deps, sessions};

#[tracing::instrument(skip_all, fields(route = "get-session"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(get(deps, &event).await, sessions::STYLE)
}

async fn get(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let id = sessions::path_id(event)?;
    let session = deps
        .store
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("session not found"))?;
    let session = sessions::refresh(deps, session).await?;
    Ok(sessions::view(&session, true))
}
