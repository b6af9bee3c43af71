//! `POST /api/host/heartbeat` (host key): register a host or refresh its 30 s liveness; the
//! answer also carries the signaling URL and ICE servers the host answers viewers with.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::HostKeys,
    switchboard::Need::Regions,
    switchboard::Need::HostTtl,
    switchboard::Need::Ice,
    switchboard::Need::SignalingUrl,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, JsonBody, require_bearer, respond};
use switchboard::model::{HeartbeatOutcome, HostStatus};
use switchboard::{ApiError, Deps, turn, validate};

#[tracing::instrument(skip_all, fields(route = "heartbeat"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(heartbeat(deps, &event).await, ErrorStyle::Matchmaking)
}

async fn heartbeat(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    if !deps.config.host_keys.is_empty() {
        require_bearer(event, &deps.config.host_keys)?;
    }
    let body = JsonBody::parse(event)?;
    let host_id = validate::identifier("hostId", body.required_str("hostId")?)?;
    let room_id = validate::identifier("roomId", body.required_str("roomId")?)?;
    let region = validate::region(&deps.config, body.required_str("region")?)?;
    let status = match body.optional_str("status")? {
        None => HostStatus::Idle,
        Some(s) => HostStatus::parse(s)
            .ok_or_else(|| ApiError::bad_request("status must be idle or busy"))?,
    };
    let ttl = deps.config.host_ttl_seconds;
    match deps
        .store
        .heartbeat(&host_id, &room_id, region, status, ttl)
        .await?
    {
        // The host answers viewers over the same relays: it gets the signaling URL and TURN
        // credentials too (fresh each heartbeat, valid for SWITCHBOARD_TURN_TTL_SECONDS).
        HeartbeatOutcome::Registered => Ok(json!({
            "success": true,
            "ttl": ttl,
            "signalingUrl": deps.config.ws_url,
            "iceServers": turn::ice_servers(&deps.config, &room_id, deps.store.clock().now()),
        })),
        HeartbeatOutcome::RoomTaken => Err(ApiError::Conflict(
            "roomId is in use by another host".into(),
        )),
    }
}
