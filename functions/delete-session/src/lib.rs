//! `DELETE /session/{id}` (operator key): end a session through the one server lifecycle: its
//! task gets SIGTERM, its records go, its players are released.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::OperatorKeys,
    switchboard::Need::Sessions,
    switchboard::Need::Sockets,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{require_bearer, respond};
use switchboard::{ApiError, Deps, lifecycle, sessions};

#[tracing::instrument(skip_all, fields(route = "delete-session"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(delete(deps, &event).await, sessions::STYLE)
}

async fn delete(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let id = sessions::path_id(event)?;
    let session = deps
        .store
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("session not found"))?;
    lifecycle::end_server(
        deps,
        &session.server_id,
        "session stopped by DELETE /session",
        false,
    )
    .await?;
    // A server already ending elsewhere takes the session with it; make sure it is gone. Only
    // this session: once the ending has removed it, its id may already carry a new one.
    deps.store
        .delete_session(&id, &session.server_id, Some(session.created))
        .await?;
    Ok(json!({ "id": id, "message": "Session stopped" }))
}
