//! `handshake {type, receiver?, description?|candidate?, ...}`: relay signaling within the
//! sender's room only, to `receiver` or else to the room's serving peer. `sender` is always
//! the sender's identified id.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::Sockets];

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::Value;
use switchboard::signaling::{connection_id, frame_data, optional_str, refuse, send, ws_response};
use switchboard::sockets::Delivery;
use switchboard::{ApiError, Deps, validate};

const ACTION: &str = "handshake";

#[tracing::instrument(skip_all, fields(route = "handshake", connection = event.request_context.connection_id))]
pub async fn handler(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    match handshake(deps, &event).await {
        Ok(()) => ws_response(200),
        Err(e) => refuse(deps, &event, ACTION, &e).await,
    }
}

/// How long a handshake from a connection that has not identified yet waits for its identify
/// to land. API Gateway invokes one Lambda per frame with no ordering, so a client's offer sent
/// right after its identify may run first; a connection that never identifies is refused
/// after this.
pub const IDENTIFY_WAIT: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_millis(20);
const LONGEST_RETRY: Duration = Duration::from_millis(250);

async fn handshake(deps: &Deps, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let connection = connection_id(event)?;
    let mut data = frame_data(event)?;
    let (room_id, sender_id) = identified_sender(deps, connection).await?;
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
        Delivery::Delivered => {
            switchboard::metrics::one(switchboard::metrics::name::FRAMES_RELAYED, &[]);
            Ok(())
        }
        Delivery::Gone => Err(ApiError::not_found("Receiver not found")),
    }
}

/// The sender's room and peer id, read strongly consistently: its connection's membership,
/// and the room's member record for that id, which must still be this connection's (an SFU or
/// host reconnecting takes its id over; then this socket no longer speaks for it).
///
/// A connection that exists but whose identify has not landed yet (no membership, or the
/// member record not written yet) is re-read with a short backoff for up to `IDENTIFY_WAIT`;
/// an unknown connection, a taken-over id, or one still unidentified then is refused.
async fn identified_sender(deps: &Deps, connection: &str) -> Result<(String, String), ApiError> {
    let not_found = || ApiError::bad_request("WebSocket Connection Not Found");
    let deadline = tokio::time::Instant::now() + IDENTIFY_WAIT;
    let mut pause = FIRST_RETRY;
    loop {
        let Some(record) = deps.store.connection(connection).await? else {
            return Err(not_found());
        };
        if let Some((room_id, sender_id, _)) = record.membership {
            match deps.store.member(&room_id, &sender_id).await? {
                Some(member) if member.connection_id == connection => {
                    return Ok((room_id, sender_id));
                }
                Some(_) => return Err(not_found()),
                None => {}
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            tracing::info!(
                waited_ms = IDENTIFY_WAIT.as_millis() as u64,
                "sender never identified"
            );
            return Err(not_found());
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LONGEST_RETRY);
    }
}
