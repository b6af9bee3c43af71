//! `PATCH /claimRoom {"urlPath"}`: map a URL path to a warm SFU room, atomically and
//! idempotently (a path that has a live room gets that room back).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{ErrorStyle, JsonBody, respond};
use switchboard::{ApiError, Deps, validate};

const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Something broke on the server",
};

#[tracing::instrument(skip_all)]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(claim_room(deps, &event).await, STYLE)
}

async fn claim_room(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    let body = JsonBody::parse(event)?;
    let url_path = validate::url_path(body.optional_str("urlPath")?)?;
    let room_id = deps
        .store
        .claim_room(&url_path)
        .await?
        .ok_or_else(|| ApiError::not_found("Room not found"))?;
    Ok(json!({ "roomId": room_id, "id": room_id }))
}
