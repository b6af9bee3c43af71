//! `POST /api/find-match {"region"?}`: reserve a live idle host and hand the client its room,
//! the signaling URL and ICE servers with fresh TURN credentials.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::Regions,
    switchboard::Need::MatchLease,
    switchboard::Need::Ice,
    switchboard::Need::SignalingUrl,
];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, JsonBody, respond};
use switchboard::{ApiError, Deps, metrics, turn, validate};

#[tracing::instrument(skip_all, fields(route = "find-match"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(find_match(deps, &event).await, ErrorStyle::Matchmaking)
}

async fn find_match(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    let body = JsonBody::parse(event)?;
    let requested = match body.optional_str("region")? {
        Some(region) => Some(validate::region(&deps.config, region)?),
        None => None,
    };
    let regions = match requested {
        Some(region) => vec![region.to_string()],
        None => deps.config.regions.clone(),
    };
    let signaling_url = deps
        .config
        .ws_url
        .clone()
        .ok_or_else(|| ApiError::Internal("SWITCHBOARD_WS_URL is not configured".into()))?;
    let outcome = deps
        .store
        .reserve_idle_host(&regions, deps.config.match_lease_seconds)
        .await?;
    tracing::info!(
        items_read = outcome.items_read,
        capacity = outcome.capacity_units,
        "match"
    );
    let region = [("Region", requested.unwrap_or("any"))];
    let Some(host) = outcome.host else {
        metrics::one(metrics::name::MISSES, &region);
        return Err(match requested {
            Some(region) => ApiError::not_found(format!("No available hosts in region {region}")),
            None => ApiError::not_found("No available hosts"),
        });
    };
    metrics::one(metrics::name::MATCHES, &region);
    tracing::info!(room = host.room_id, "matched");
    let now = deps.store.clock().now();
    Ok(json!({
        "success": true,
        "roomId": host.room_id,
        "signalingUrl": signaling_url,
        "iceServers": turn::ice_servers(&deps.config, &host.room_id, now),
    }))
}
