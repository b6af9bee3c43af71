//! `identify {id, type, roomId?, token?, hostId?}`: join a room as a client, as its SFU (with
//! the room's token) or as its matchmaking host (with the host's secret hostId).

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::Identify, switchboard::Need::Sockets];

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::{Map, Value, json};
use switchboard::model::{JoinOutcome, Role, Room, RoomKind, RoomState, SfuProof};
use switchboard::signaling::{connection_id, frame_data, optional_str, refuse, send, ws_response};
use switchboard::{ApiError, Deps, validate};

const ACTION: &str = "identify";

#[tracing::instrument(skip_all, fields(route = "identify", connection = event.request_context.connection_id))]
pub async fn handler(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    match identify(deps, &event).await {
        Ok(()) => ws_response(200),
        Err(e) => refuse(deps, &event, ACTION, &e).await,
    }
}

async fn identify(deps: &Deps, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let connection = connection_id(event)?;
    let data = frame_data(event)?;
    let role = match optional_str(&data, "type").ok().flatten() {
        Some("client") => Role::Client,
        Some("sfu") => Role::Sfu,
        Some("host") => Role::Host,
        Some("server") => Role::Server,
        _ => return Err(ApiError::bad_request("Missing valid type property")),
    };
    let peer_id = validate::identifier("id", optional_str(&data, "id")?.unwrap_or_default())?;
    let room_id = match (role, optional_str(&data, "roomId")?) {
        (_, Some(room)) => validate::identifier("roomId", room)?,
        // The Arbiter SFU identifies with its room id as `id` and no roomId.
        (Role::Sfu | Role::Server, None) => peer_id.clone(),
        (_, None) => return Err(ApiError::bad_request("missing roomId")),
    };
    if role == Role::Client && peer_id == room_id {
        // The room's id is its SFU's peer id: a client using it would pose as the SFU.
        return Err(ApiError::Conflict(
            "id is reserved for the room's serving peer".into(),
        ));
    }
    let room = authorize(deps, role, &room_id, &data).await?;

    match deps
        .store
        .join_room(
            connection,
            &room_id,
            &peer_id,
            role,
            deps.config.max_room_members,
        )
        .await?
    {
        JoinOutcome::Joined => {}
        JoinOutcome::RoomFull => return Err(ApiError::Conflict("Room is full".into())),
        JoinOutcome::RoomGone => return Err(ApiError::not_found("Room not found")),
        JoinOutcome::PeerIdTaken => {
            return Err(ApiError::Conflict(
                "id is already in use in this room".into(),
            ));
        }
        JoinOutcome::AlreadyIdentified => {
            return Err(ApiError::Conflict(
                "Connection is already identified".into(),
            ));
        }
    }
    match role {
        Role::Client => {}
        Role::Sfu => {
            let proof = match optional_str(&data, "token")? {
                Some(token) => SfuProof::Token(token),
                None => SfuProof::FirstIdentify,
            };
            if deps
                .store
                .attach_sfu(&room_id, proof, &peer_id, connection)
                .await?
                .is_none()
            {
                deps.store.close_connection(connection).await?;
                return Err(ApiError::Unauthorized);
            }
        }
        Role::Server => {
            if !deps
                .store
                .attach_server(&room, &peer_id, connection)
                .await?
            {
                deps.store.close_connection(connection).await?;
                return Err(ApiError::Unauthorized);
            }
        }
        Role::Host => {
            if !deps.store.attach_host(&room, &peer_id, connection).await? {
                deps.store.close_connection(connection).await?;
                return Err(ApiError::Unauthorized);
            }
        }
    }
    let ack = json!({ "type": "identified", "id": peer_id, "roomId": room_id });
    send(deps, &event.request_context, connection, &ack).await?;
    Ok(())
}

/// Checks the proof each role needs before it may join `room_id`; returns the room as read.
async fn authorize(
    deps: &Deps,
    role: Role,
    room_id: &str,
    data: &Map<String, Value>,
) -> Result<Room, ApiError> {
    let room = deps.store.room(room_id).await?;
    match role {
        Role::Client => room.ok_or_else(|| ApiError::not_found("Room not found")),
        Role::Sfu => {
            let room = room.ok_or(ApiError::Unauthorized)?;
            let proven = match optional_str(data, "token")? {
                Some(token) => room.token_matches(token),
                // The stock Arbiter SFU sends no token: allowed, when configured, only for the
                // first identify of a room still starting (its id went only to the operator
                // and the task). Every later identify, reconnects included, needs the token.
                None => {
                    deps.config.sfu_token_optional
                        && room.kind == RoomKind::Sfu
                        && room.state == RoomState::Starting
                        && !room.identified
                }
            };
            if proven {
                Ok(room)
            } else {
                Err(ApiError::Unauthorized)
            }
        }
        Role::Server => {
            let token = optional_str(data, "token")?.ok_or(ApiError::Unauthorized)?;
            room.filter(|r| r.kind == RoomKind::Server && r.token_matches(token))
                .ok_or(ApiError::Unauthorized)
        }
        Role::Host => {
            let host_id = optional_str(data, "hostId")?.ok_or(ApiError::Unauthorized)?;
            room.filter(|r| r.kind == RoomKind::Host && r.owned_by_host(host_id))
                .ok_or(ApiError::Unauthorized)
        }
    }
}
