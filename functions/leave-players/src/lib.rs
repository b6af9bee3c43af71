//! `DELETE /session/player/leave {"players"}` (operator key): players leave whatever session
//! they are in; the answer names those that were in one.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::OperatorKeys];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard::http::{require_bearer, respond, typed_body};
use switchboard::{ApiError, Deps, sessions};

#[derive(Deserialize)]
struct LeaveRequest {
    players: Vec<String>,
}

#[tracing::instrument(skip_all, fields(route = "leave-players"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(leave(deps, &event).await, sessions::STYLE)
}

async fn leave(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let request: LeaveRequest = typed_body(event)?;
    sessions::check_players(&request.players)?;
    let left = deps.store.leave_players(&request.players).await?;
    Ok(json!({ "players": left }))
}
