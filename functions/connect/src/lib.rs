//! `$connect`: record the connection (with a TTL past API Gateway's 2 h limit).

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[];

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use switchboard::signaling::{connection_id, ws_response};
use switchboard::{ApiError, Deps};

#[tracing::instrument(skip_all, fields(route = "connect", connection = event.request_context.connection_id))]
pub async fn handler(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Ok(connection) = connection_id(&event) else {
        return ws_response(400);
    };
    match deps.store.open_connection(connection).await {
        Ok(()) => ws_response(200),
        Err(e) => {
            // A non-2xx answer makes API Gateway refuse the socket, so nothing is half-open:
            // 503 when DynamoDB is unavailable, else 500.
            tracing::error!(error = %e, "could not record the connection");
            ws_response(ApiError::from(e).status())
        }
    }
}
