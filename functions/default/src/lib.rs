//! `$default`: `ping` answers `pong` (keep-alive under API Gateway's 10 min idle timeout) and
//! keeps the connection's records alive, a serving peer's room and path with them; anything
//! else gets an error frame.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::Sockets];

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::{Value, json};
use switchboard::signaling::{connection_id, parse_frame, refuse, send, ws_response};
use switchboard::{ApiError, Deps};

#[tracing::instrument(skip_all, fields(route = "default", connection = event.request_context.connection_id))]
pub async fn handler(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    match answer(deps, &event).await {
        Ok(()) => ws_response(200),
        Err(e) => refuse(deps, &event, "default", &e).await,
    }
}

async fn answer(deps: &Deps, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let connection = connection_id(event)?;
    let frame = parse_frame(event)?;
    match frame.get("action").and_then(Value::as_str) {
        Some("ping") => {
            // The pong is about the socket; during a DynamoDB outage it still answers, and the
            // records keep the life the last ping or identify gave them (2 h 10 min).
            if let Err(e) = deps.store.keep_alive(connection).await {
                tracing::warn!(error = %e, "ping could not refresh the connection's records");
            }
            send(
                deps,
                &event.request_context,
                connection,
                &json!({ "type": "pong" }),
            )
            .await?;
            Ok(())
        }
        Some(action) => Err(ApiError::bad_request(format!("Unknown action: {action}"))),
        None => Err(ApiError::bad_request("Missing action")),
    }
}
