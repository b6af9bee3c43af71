//! `POST /session` (operator key): allocate a game server for a session: a warm one at once,
//! or a cold start whose address is awaited (see `switchboard::sessions::create`).

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::OperatorKeys,
    switchboard::Need::Sessions,
    switchboard::Need::SessionWait,
    switchboard::Need::SignalingUrl,
    switchboard::Need::Sockets,
    switchboard::Need::StartTimeout,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::Value;
use switchboard::http::{require_bearer, respond_with_status, typed_body};
use switchboard::sessions::{self, SessionRequest};
use switchboard::{ApiError, Deps};

#[tracing::instrument(skip_all, fields(route = "create-session"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond_with_status(create(deps, &event).await, sessions::STYLE)
}

async fn create(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<(u16, Value), ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let request: SessionRequest = typed_body(event)?;
    sessions::create(deps, request).await
}
