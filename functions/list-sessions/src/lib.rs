//! `GET /session` (operator key): every live session, from an index (never a Scan).

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::OperatorKeys];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{require_bearer, respond};
use switchboard::{ApiError, Deps, sessions};

#[tracing::instrument(skip_all, fields(route = "list-sessions"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(list(deps, &event).await, sessions::STYLE)
}

async fn list(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let listed: Vec<Value> = deps
        .store
        .sessions()
        .await?
        .iter()
        .map(|s| sessions::view(s, false))
        .collect();
    Ok(json!({ "sessions": listed }))
}
