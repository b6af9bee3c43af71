//! `handshake {type, receiver?, description?|candidate?, ...}`: relay signaling within the
//! sender's room only, to `receiver` or else to the room's serving peer. `sender` is always
//! the sender's identified id.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::Value;
use switchboard::signaling::{connection_id, frame_data, optional_str, refuse, send, ws_response};
use switchboard::sockets::Delivery;
use switchboard::{ApiError, Deps, validate};

const ACTION: &str = "handshake";

#[tracing::instrument(skip_all, fields(connection = event.request_context.connection_id))]
pub async fn handler(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    match handshake(deps, &event).await {
        Ok(()) => ws_response(200),
        Err(e) => refuse(deps, &event, ACTION, &e).await,
    }
}

async fn handshake(deps: &Deps, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let connection = connection_id(event)?;
    let mut data = frame_data(event)?;
    // Strongly consistent: a handshake sent right after identify is routed.
    let (room_id, sender_id, _) = deps
        .store
        .connection(connection)
        .await?
        .and_then(|c| c.membership)
        .ok_or_else(|| ApiError::bad_request("WebSocket Connection Not Found"))?;
    // Its id may since have been taken over (an SFU or host reconnecting): then this socket
    // no longer speaks for it.
    let current = deps.store.member(&room_id, &sender_id).await?;
    if current.is_none_or(|m| m.connection_id != connection) {
        return Err(ApiError::bad_request("WebSocket Connection Not Found"));
    }
    if !matches!(
        optional_str(&data, "type").ok().flatten(),
        Some("producer" | "consumer")
    ) {
        return Err(ApiError::bad_request("Missing valid type property"));
    }
    let target = match optional_str(&data, "receiver")? {
        Some(receiver) => deps
            .store
            .member(&room_id, &validate::identifier("receiver", receiver)?)
            .await?
            .map(|m| m.connection_id),
        None => deps
            .store
            .room(&room_id)
            .await?
            .and_then(|r| r.serving_connection),
    }
    .ok_or_else(|| ApiError::not_found("Receiver not found"))?;

    data.insert("sender".into(), Value::String(sender_id));
    match send(deps, &event.request_context, &target, &Value::Object(data)).await? {
        Delivery::Delivered => Ok(()),
        Delivery::Gone => Err(ApiError::not_found("Receiver not found")),
    }
}
