//! `PATCH /claimRoom {"urlPath"}`: map a URL path to a ready SFU room, atomically and
//! idempotently (a path that has a live room gets that room back). Taking a room out of the
//! warm pool refills its slot at once, without waiting for the new room to become ready.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::Ice,
    switchboard::Need::SignalingUrl,
    switchboard::Need::SfuTasks,
    switchboard::Need::WarmRooms,
    switchboard::Need::StartTimeout,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::Value;
use switchboard::http::{ErrorStyle, JsonBody, respond};
use switchboard::{ApiError, Deps, lifecycle, metrics, turn, validate};

const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Something broke on the server",
};

#[tracing::instrument(skip_all, fields(route = "claim-room"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(claim_room(deps, &event).await, STYLE)
}

async fn claim_room(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    let body = JsonBody::parse(event)?;
    let url_path = validate::url_path(body.optional_str("urlPath")?)?;
    let claimed = deps
        .store
        .claim_room(&url_path)
        .await?
        .ok_or_else(|| ApiError::not_found("Room not found"))?;
    metrics::one(metrics::name::CLAIMS, &[]);
    tracing::info!(room = claimed.room_id, "claimed");
    if let Some(slot) = claimed.vacated_slot
        && slot < deps.config.warm_rooms
    {
        // The claim has happened; a failed refill (capacity, say) waits for the next sweep.
        match lifecycle::refill_slot(deps, slot).await {
            Ok(outcome) => tracing::info!(slot, ?outcome, "warm pool refill"),
            Err(e) => tracing::warn!(slot, error = %e, "warm pool refill left to the sweeper"),
        }
    }
    turn::room_answer(deps, &claimed.room_id)
}
