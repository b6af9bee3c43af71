//! `GET /getRoomId?urlPath=P`: the room a page's URL path belongs to, with the signaling URL
//! and ICE servers (TURN credentials for the room) the page connects with.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::Ice, switchboard::Need::SignalingUrl];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::Value;
use switchboard::http::{ErrorStyle, query, respond};
use switchboard::{ApiError, Deps, turn, validate};

const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Something broke on the server",
};

#[tracing::instrument(skip_all, fields(route = "get-room-id"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(get_room_id(deps, &event).await, STYLE)
}

async fn get_room_id(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    let url_path = validate::url_path(query(event, "urlPath"))?;
    let room_id = deps
        .store
        .room_for_path(&url_path)
        .await?
        .ok_or_else(|| ApiError::not_found("Room not found"))?;
    turn::room_answer(deps, &room_id)
}
