//! `PUT /session/player/join {"session", "players"}` (operator key): players join a live
//! session; a player already in another live session is a 409 and nobody joins.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::OperatorKeys];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard::http::{require_bearer, respond, typed_body};
use switchboard::model::Join;
use switchboard::{ApiError, Deps, sessions};

#[derive(Deserialize)]
struct JoinRequest {
    session: String,
    players: Vec<String>,
}

#[tracing::instrument(skip_all, fields(route = "join-players"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(join(deps, &event).await, sessions::STYLE)
}

async fn join(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let request: JoinRequest = typed_body(event)?;
    sessions::check_players(&request.players)?;
    if uuid::Uuid::parse_str(&request.session).is_err() {
        return Err(ApiError::not_found("session not found"));
    }
    match deps
        .store
        .join_players(&request.session, &request.players)
        .await?
    {
        Join::Joined(players) => Ok(json!({ "session": request.session, "players": players })),
        Join::UnknownSession => Err(ApiError::not_found("session not found")),
        Join::Taken(player) => Err(ApiError::Conflict(format!(
            "player {player} is in another session"
        ))),
    }
}
