//! `PUT|POST /createRoom` (operator key): record a starting room, then launch its SFU task.
//! A launch that fails leaves no room behind that could ever be claimed, and no task without a
//! record (see `switchboard::lifecycle::launch_room`).

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::OperatorKeys,
    switchboard::Need::Ice,
    switchboard::Need::SignalingUrl,
    switchboard::Need::SfuTasks,
    switchboard::Need::StartTimeout,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, JsonBody, require_bearer, respond};
use switchboard::lifecycle;
use switchboard::{ApiError, Deps};

const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Failed to start task.",
};

#[tracing::instrument(skip_all, fields(route = "create-room"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(create_room(deps, &event).await, STYLE)
}

async fn create_room(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    JsonBody::parse(event)?;
    // An outage or ECS out of capacity is a 503 with Retry-After; anything else a 500.
    let launched = lifecycle::launch_room(deps, None)
        .await
        .map_err(ApiError::from)?;
    Ok(json!({
        "message": "Task started successfully!",
        "roomId": launched.room_id,
        "taskArn": launched.task_arn,
    }))
}
