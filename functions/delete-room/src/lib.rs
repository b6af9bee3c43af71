//! `DELETE /rooms/{roomId}` (operator key): end a room now, through the one lifecycle: its
//! task is stopped, its members hear `sfuDisconnect`, its records go.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::OperatorKeys,
    switchboard::Need::SfuTasks,
    switchboard::Need::Sockets,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, require_bearer, respond};
use switchboard::model::RoomKind;
use switchboard::{ApiError, Deps, lifecycle, validate};

const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Something broke on the server",
};

#[tracing::instrument(skip_all, fields(route = "delete-room"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(delete_room(deps, &event).await, STYLE)
}

async fn delete_room(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let raw = event
        .path_parameters
        .get("roomId")
        .map(String::as_str)
        .unwrap_or_default();
    let room_id = validate::identifier("roomId", raw)?;
    // Only SFU rooms are servers an operator can end; a host's room is the host's.
    let room = deps
        .store
        .room_record(&room_id)
        .await?
        .filter(|r| r.kind == RoomKind::Sfu)
        .ok_or_else(|| ApiError::not_found("Room not found"))?;
    lifecycle::end_server(deps, &room.room_id, "ended by an operator", false).await?;
    Ok(json!({ "message": "Room ended", "roomId": room_id }))
}
