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

/// Removes a connection's records without telling anyone (its socket is gone).
async fn forget(
    deps: &Deps,
    connection_id: &str,
) -> Result<Option<(String, String, Role)>, StoreError> {
    let Some(connection) = deps.store.close_connection(connection_id).await? else {
        return Ok(None);
    };
    match connection.membership {
        Some((room_id, peer_id, role)) if role.is_serving() => {
            // Only the room's current serving peer leaving is news; a replaced one is not.
            let was_serving = deps
                .store
                .detach_serving_peer(&room_id, connection_id)
                .await?;
            Ok(was_serving.then_some((room_id, peer_id, role)))
        }
        membership => Ok(membership),
    }
}

/// A connection leaves (explicitly or because its socket closed): its records go, and the
/// room's remaining members hear `clientDisconnect` or, for the serving peer, `sfuDisconnect`.
pub async fn depart(
    deps: &Deps,
    context: &ApiGatewayWebsocketProxyRequestContext,
    connection_id: &str,
) -> Result<(), StoreError> {
    let Some((room_id, peer_id, role)) = forget(deps, connection_id).await? else {
        return Ok(());
    };
    let notice = if role.is_serving() {
        json!({ "type": "sfuDisconnect", "sfuId": peer_id })
    } else {
        json!({ "type": "clientDisconnect", "clientId": peer_id })
    };
    let members = deps.store.members(&room_id).await?;
    // Every member is told at once (at most NOTIFY_CONCURRENCY posts in flight); a member that
    // is gone too is removed quietly, and no failure stops the others hearing of it.
    stream::iter(
        members
            .iter()
            .filter(|member| member.connection_id != connection_id),
    )
    .for_each_concurrent(NOTIFY_CONCURRENCY, |member| {
        let notice = &notice;
        async move {
            match deps
                .sockets
                .post(Some(context), &member.connection_id, notice)
                .await
            {
                Ok(Delivery::Delivered) => {}
                Ok(Delivery::Gone) => forget_quietly(deps, &member.connection_id).await,
                Err(e) => {
                    tracing::warn!(error = %e, member = member.connection_id, "notice not delivered")
                }
            }
        }
    })
    .await;
    Ok(())
}
