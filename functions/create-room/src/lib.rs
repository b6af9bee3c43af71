//! `PUT|POST /createRoom` (operator key): record a starting room, then launch its SFU task.
//! A launch that fails leaves no room behind that could ever be claimed.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, JsonBody, require_bearer, respond};
use switchboard::{ApiError, Deps, ecs, turn};
use uuid::Uuid;

const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Failed to start task.",
};

#[tracing::instrument(skip_all)]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(create_room(deps, &event).await, STYLE)
}

async fn create_room(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    JsonBody::parse(event)?;
    let signal_url = deps
        .config
        .ws_url
        .clone()
        .ok_or_else(|| ApiError::Internal("SWITCHBOARD_WS_URL is not configured".into()))?;

    let room_id = Uuid::new_v4().to_string();
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    deps.store.create_starting_room(&room_id, &token).await?;

    let now = deps.store.clock().now();
    let rtc_config = json!({ "iceServers": turn::ice_servers(&deps.config, &room_id, now) });
    let environment = [
        ("ROOM_ID", room_id.clone()),
        ("SFU_ID", room_id.clone()),
        ("SFU_TOKEN", token),
        ("SIGNAL_SERVER_URL", signal_url),
        ("RTC_CONFIG", rtc_config.to_string()),
    ];
    let task_arn = match ecs::run_task(&deps.ecs, deps.config.ecs.as_ref(), &environment).await {
        Ok(arn) => arn,
        Err(launch) => {
            if let Err(e) = deps.store.delete_room(&room_id).await {
                // Still never claimable: it is `starting` until its SFU identifies, and expires.
                tracing::error!(error = %e, room_id, "could not delete the room of a failed launch");
            }
            return Err(ApiError::Internal(launch.to_string()));
        }
    };
    deps.store.record_task(&room_id, &task_arn).await?;
    tracing::info!(room_id, task_arn, "SFU task started");
    Ok(json!({ "message": "Task started successfully!", "roomId": room_id, "taskArn": task_arn }))
}
