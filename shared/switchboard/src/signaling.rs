//! WebSocket route plumbing shared by the signaling functions: frames, delivery that cleans
//! up after closed sockets, and a peer's departure from its room.

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
    ApiGatewayWebsocketProxyRequestContext,
};
use aws_lambda_events::encodings::Body;
use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value, json};

use crate::deps::Deps;
use crate::error::{ApiError, StoreError};
use crate::model::Role;
use crate::sockets::Delivery;

/// Posts of one departure notice in flight at once.
const NOTIFY_CONCURRENCY: usize = 16;

/// Largest inbound frame API Gateway accepts (128 KiB); larger ones are refused the same way
/// locally.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

pub fn error_frame(action: &str, status: u16, message: &str) -> Value {
    json!({ "type": "error", "action": action, "status": status, "message": message })
}

/// The integration response: API Gateway only looks at the status code.
pub fn ws_response(status: u16) -> ApiGatewayProxyResponse {
    tracing::info!(status, "answered");
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.body = Some(Body::Text(String::new()));
    response
}

pub fn connection_id(event: &ApiGatewayWebsocketProxyRequest) -> Result<&str, ApiError> {
    event
        .request_context
        .connection_id
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("event has no connectionId"))
}

/// An inbound frame, within API Gateway's size limit and valid JSON.
pub fn parse_frame(event: &ApiGatewayWebsocketProxyRequest) -> Result<Value, ApiError> {
    let body = event.body.as_deref().unwrap_or_default();
    if body.len() > MAX_FRAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "Frame exceeds {MAX_FRAME_BYTES} bytes"
        )));
    }
    serde_json::from_str(body).map_err(|_| ApiError::bad_request("Malformed JSON"))
}

/// The `data` object of an inbound frame `{"action": ..., "data": {...}}`.
pub fn frame_data(event: &ApiGatewayWebsocketProxyRequest) -> Result<Map<String, Value>, ApiError> {
    let frame = parse_frame(event)?;
    match frame.get("data") {
        Some(Value::Object(data)) => Ok(data.clone()),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(_) => Err(ApiError::bad_request("data must be an object")),
    }
}

pub fn optional_str<'a>(
    data: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a string"))),
    }
}

/// Sends `frame` to `target`. A closed target is removed (records and serving role) and the
/// send reports `Gone`; it never fails the sender's request.
pub async fn send(
    deps: &Deps,
    context: &ApiGatewayWebsocketProxyRequestContext,
    target: &str,
    frame: &Value,
) -> Result<Delivery, StoreError> {
    let delivery = deps.sockets.post(Some(context), target, frame).await?;
    if delivery == Delivery::Gone {
        crate::metrics::one(crate::metrics::name::GONE_CLEANUPS, &[]);
        tracing::info!(connection = target, "connection gone; removing its records");
        forget_quietly(deps, target).await;
    }
    Ok(delivery)
}

/// Removes a gone connection's records; a failure is logged, never the caller's (the records
/// expire with their TTL, and the next 410 tries again).
async fn forget_quietly(deps: &Deps, connection_id: &str) {
    if let Err(e) = forget(deps, connection_id).await {
        tracing::warn!(error = %e, connection = connection_id, "could not remove a gone connection's records");
    }
}

/// Tells the sender its request was refused, and returns the status for the integration.
pub async fn refuse(
    deps: &Deps,
    event: &ApiGatewayWebsocketProxyRequest,
    action: &str,
    error: &ApiError,
) -> ApiGatewayProxyResponse {
    let status = error.status();
    let message = error.public_message("Something broke on the server");
    if let Some(sender) = event.request_context.connection_id.as_deref() {
        let frame = error_frame(action, status, &message);
        if let Err(e) = send(deps, &event.request_context, sender, &frame).await {
            tracing::warn!(error = %e, "could not deliver an error frame");
        }
    }
    ws_response(status)
}

/// Removes a connection's records without telling anyone (its socket is gone). Returns the
/// membership whose departure is news to the room: a client's. A serving peer (SFU, host)
/// leaving is not news yet: its room waits out the reconnect grace, and the sweeper tells the
/// room if it does not come back.
async fn forget(
    deps: &Deps,
    connection_id: &str,
) -> Result<Option<(String, String, Role)>, StoreError> {
    let Some(connection) = deps.store.close_connection(connection_id).await? else {
        return Ok(None);
    };
    match connection.membership {
        Some((room_id, _, role)) if role.is_serving() => {
            deps.store
                .detach_serving_peer(&room_id, connection_id, deps.config.reconnect_grace_seconds)
                .await?;
            Ok(None)
        }
        membership => Ok(membership),
    }
}

/// A connection leaves (explicitly or because its socket closed): its records go, and when a
/// client leaves the room's remaining members hear `clientDisconnect`. A serving peer's
/// departure starts its room's reconnect grace instead (see `forget`).
pub async fn depart(
    deps: &Deps,
    context: &ApiGatewayWebsocketProxyRequestContext,
    connection_id: &str,
) -> Result<(), StoreError> {
    let Some((room_id, peer_id, _)) = forget(deps, connection_id).await? else {
        return Ok(());
    };
    let notice = json!({ "type": "clientDisconnect", "clientId": peer_id });
    notify_members(deps, Some(context), &room_id, Some(connection_id), &notice).await
}

/// Posts `notice` to every live member of `room_id` but `except`, all at once (at most
/// NOTIFY_CONCURRENCY posts in flight). A member that is gone too is removed quietly, and no
/// failure stops the others hearing of it.
pub async fn notify_members(
    deps: &Deps,
    context: Option<&ApiGatewayWebsocketProxyRequestContext>,
    room_id: &str,
    except: Option<&str>,
    notice: &Value,
) -> Result<(), StoreError> {
    let members = deps.store.members(room_id).await?;
    stream::iter(
        members
            .iter()
            .filter(|member| Some(member.connection_id.as_str()) != except),
    )
    .for_each_concurrent(NOTIFY_CONCURRENCY, |member| async move {
        match deps
            .sockets
            .post(context, &member.connection_id, notice)
            .await
        {
            Ok(Delivery::Delivered) => {}
            Ok(Delivery::Gone) => forget_quietly(deps, &member.connection_id).await,
            Err(e) => {
                tracing::warn!(error = %e, member = member.connection_id, "notice not delivered")
            }
        }
    })
    .await;
    Ok(())
}
