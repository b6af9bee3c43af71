//! `disconnect` (explicit leave) and `$disconnect` (socket closed): the connection's records
//! go, and only its room's other members hear `clientDisconnect` or `sfuDisconnect`.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[switchboard::Need::Sockets];

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use switchboard::signaling::{connection_id, depart, refuse, ws_response};
use switchboard::{ApiError, Deps};

#[tracing::instrument(skip_all, fields(route = "disconnect", connection = event.request_context.connection_id))]
pub async fn handler(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let result = match connection_id(&event) {
        Ok(connection) => depart(deps, &event.request_context, connection)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ws_response(200),
        // On `$disconnect` the socket is closed and the error frame finds no one; that is fine.
        Err(e) => refuse(deps, &event, "disconnect", &e).await,
    }
}
