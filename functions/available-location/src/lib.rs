//! `GET /available-location/{image}` (operator key): the locations an image can run in, with
//! the IPs clients ping to choose one.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] =
    &[switchboard::Need::OperatorKeys, switchboard::Need::Sessions];

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use switchboard::http::{require_bearer, respond};
use switchboard::{ApiError, Deps, sessions};

#[tracing::instrument(skip_all, fields(route = "available-location"))]
pub async fn handler(deps: &Deps, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    respond(available(deps, &event), sessions::STYLE)
}

fn available(deps: &Deps, event: &ApiGatewayV2httpRequest) -> Result<Value, ApiError> {
    require_bearer(event, &deps.config.operator_keys)?;
    let image = event
        .path_parameters
        .get("image")
        .map(String::as_str)
        .unwrap_or_default();
    let application = deps
        .config
        .applications
        .get(image)
        .ok_or_else(|| ApiError::not_found("image not found"))?;
    let locations: Vec<Value> = deps
        .config
        .locations
        .iter()
        .filter(|(name, _)| application.runs_in(name))
        .map(|(name, location)| json!({ "location": name, "ips": location.ips }))
        .collect();
    Ok(json!({ "locations": locations }))
}
