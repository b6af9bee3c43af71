//! The HTTP API as API Gateway (HTTP API, payload 2.0) serves it: each request becomes a v2
//! event for the route's function handler; CORS is answered here, as the HttpApi's
//! CorsConfiguration does when deployed.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body as EventBody;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use switchboard::Deps;

use crate::template::HttpRoute;

/// The local stack's own route: the totals of the functions' metrics.
pub const METRICS_PATH: &str = "/__local/metrics";

pub const CORS_METHODS: &str = "GET,PUT,POST,PATCH,DELETE,OPTIONS";
pub const CORS_HEADERS: &str = "authorization,content-type";

pub struct HttpState {
    pub functions: std::sync::Arc<crate::Functions>,
    pub routes: Vec<HttpRoute>,
    pub allowed_origins: Vec<String>,
    pub pages: Vec<crate::pages::Pages>,
}

impl HttpState {
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<String> {
        let origin = headers.get("origin")?.to_str().ok()?;
        if self.allowed_origins.iter().any(|o| o == "*") {
            Some("*".to_string())
        } else {
            self.allowed_origins.iter().find(|o| *o == origin).cloned()
        }
    }
}

/// Runs the handler a route names.
pub async fn invoke(
    function: &str,
    deps: &Deps,
    event: ApiGatewayV2httpRequest,
) -> Option<ApiGatewayV2httpResponse> {
    Some(match function {
        "get-room-id" => get_room_id::handler(deps, event).await,
        "claim-room" => claim_room::handler(deps, event).await,
        "create-room" => create_room::handler(deps, event).await,
        "heartbeat" => heartbeat::handler(deps, event).await,
        "status" => status::handler(deps, event).await,
        "find-match" => find_match::handler(deps, event).await,
        "delete-room" => delete_room::handler(deps, event).await,
        "available-location" => available_location::handler(deps, event).await,
        "create-session" => create_session::handler(deps, event).await,
        "list-sessions" => list_sessions::handler(deps, event).await,
        "get-session" => get_session::handler(deps, event).await,
        "delete-session" => delete_session::handler(deps, event).await,
        "join-players" => join_players::handler(deps, event).await,
        "leave-players" => leave_players::handler(deps, event).await,
        _ => return None,
    })
}

pub fn known_function(function: &str) -> bool {
    matches!(
        function,
        "get-room-id"
            | "claim-room"
            | "create-room"
            | "heartbeat"
            | "status"
            | "find-match"
            | "delete-room"
            | "available-location"
            | "create-session"
            | "list-sessions"
            | "get-session"
            | "delete-session"
            | "join-players"
            | "leave-players"
    )
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

pub async fn serve(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cors = state.allowed_origin(&headers);
    let mut response = if method == Method::OPTIONS
        && headers.contains_key("access-control-request-method")
    {
        preflight(cors.as_deref())
    } else if let Some(page) = state.pages.iter().find_map(|p| p.get(uri.path())) {
        page
    } else if uri.path() == METRICS_PATH && method == Method::GET {
        axum::Json(state.functions.metrics.totals()).into_response()
    } else {
        let matched = state.routes.iter().find_map(|r| {
            (r.method == method.as_str())
                .then(|| path_parameters(&r.path, uri.path()))
                .flatten()
                .map(|parameters| (r, parameters))
        });
        match matched {
            Some((route, parameters)) => {
                let event = event_for(route, &parameters, &method, &uri, &headers, &body, peer);
                match event {
                    Ok(event) => match match state.functions.deps(&route.function) {
                        Some(deps) => {
                            state
                                .functions
                                .invocation(invoke(&route.function, deps, event))
                                .await
                        }
                        None => None,
                    } {
                        Some(reply) => to_response(reply),
                        None => {
                            json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                        }
                    },
                    Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
                }
            }
            None => json_error(StatusCode::NOT_FOUND, "Not Found"),
        }
    };
    if let Some(origin) = cors
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        response
            .headers_mut()
            .insert("access-control-allow-origin", value);
    }
    response
}

fn preflight(origin: Option<&str>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if origin.is_some() {
        let headers = response.headers_mut();
        headers.insert(
            "access-control-allow-methods",
            HeaderValue::from_static(CORS_METHODS),
        );
        headers.insert(
            "access-control-allow-headers",
            HeaderValue::from_static(CORS_HEADERS),
        );
        headers.insert("access-control-max-age", HeaderValue::from_static("600"));
    }
    response
}

/// Matches a request path against a route path with `{name}` segments, as API Gateway does;
/// returns the path parameters (URL-decoded).
fn path_parameters(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let (wanted, got): (Vec<&str>, Vec<&str>) =
        (template.split('/').collect(), path.split('/').collect());
    if wanted.len() != got.len() {
        return None;
    }
    let mut parameters = BTreeMap::new();
    for (w, g) in wanted.iter().zip(&got) {
        match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) if !g.is_empty() => {
                let value = percent_decode(g)?;
                parameters.insert(name.to_string(), value);
            }
            Some(_) => return None,
            None if w == g => {}
            None => return None,
        }
    }
    Some(parameters)
}

fn percent_decode(segment: &str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(&format!("v={}", segment.replace('+', "%2B"))).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

#[allow(clippy::too_many_arguments)]
fn event_for(
    route: &HttpRoute,
    path_parameters: &BTreeMap<String, String>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    peer: std::net::SocketAddr,
) -> Result<ApiGatewayV2httpRequest, String> {
    let raw_query = uri.query().unwrap_or_default();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw_query).map_err(|_| "malformed query string".to_string())?;
    // API Gateway joins repeated parameters and headers with commas.
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        query
            .entry(k)
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v)
            })
            .or_insert(v);
    }
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        header_map
            .entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&value)
            })
            .or_insert(value);
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (None, false),
        Ok(text) => (Some(text.to_string()), false),
        Err(_) => (
            Some(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let route_key = format!("{} {}", route.method, route.path);
    let event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": raw_query,
        "headers": header_map,
        "queryStringParameters": if query.is_empty() { Value::Null } else { json!(query) },
        "pathParameters": if path_parameters.is_empty() { Value::Null } else { json!(path_parameters) },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "timeEpoch": now.as_millis() as i64,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    });
    serde_json::from_value(event).map_err(|e| format!("event: {e}"))
}

fn to_response(reply: ApiGatewayV2httpResponse) -> Response {
    let status =
        StatusCode::from_u16(reply.status_code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match reply.body {
        Some(EventBody::Text(text)) if reply.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default()
        }
        Some(EventBody::Text(text)) => text.into_bytes(),
        Some(EventBody::Binary(bytes)) => bytes,
        _ => Vec::new(),
    };
    let mut response = (status, body).into_response();
    for (name, value) in &reply.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}
