//! The WebSocket API as API Gateway serves it: `$connect` decides whether a socket opens,
//! each frame is routed by the template's `RouteSelectionExpression` (else `$default`) to its
//! function with a full WebSocket proxy event, a closed socket gets `$disconnect`, and the
//! `@connections/{id}` management API (POST, GET, DELETE) reaches the sockets, answering
//! 410 `GoneException` for a closed one.
//!
//! As strict as API Gateway: the frames of one socket are dispatched concurrently (one
//! invocation each, no ordering between them), frames over 32 KB or messages over 128 KB close
//! the socket with 1009, and idle sockets and sockets past the maximum connection time are
//! closed with 1001 ("Going away").

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::Deps;
use switchboard::signaling::MAX_FRAME_BYTES;
use tokio::sync::mpsc;

use crate::Functions;
use crate::template::WsRoute;

pub const STAGE: &str = "local";
/// The WebSocket API's id in events and in `execute-api` ARNs.
pub const API_ID: &str = "local";
/// API Gateway's limits: one WebSocket frame, and one message (frames joined).
pub const MAX_WS_FRAME_BYTES: usize = 32 * 1024;
pub const MAX_WS_MESSAGE_BYTES: usize = 128 * 1024;
/// Close codes API Gateway uses: message too big, and idle or past the connection limit.
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_GOING_AWAY: u16 = 1001;

/// How the gateway treats sockets (StackOptions carries these).
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// Each frame's dispatch first sleeps a random 0..=N ms (makes races likely in tests).
    pub frame_jitter_ms: u64,
    pub idle_timeout: Duration,
    pub max_connection: Duration,
    /// API Gateway delivers `$disconnect` on a best-effort basis; tests turn it off to show
    /// that stale records are still cleaned up.
    pub deliver_disconnect: bool,
    /// Sees every event the gateway sends a function (tests).
    pub event_tap: Option<crate::EventTap>,
}

struct Socket {
    outbox: mpsc::UnboundedSender<Message>,
    /// DeleteConnection: the gateway drops the socket without waiting for the client.
    drop_now: tokio::sync::Notify,
    connected_at: i64,
    last_active: AtomicI64,
    source_ip: String,
    user_agent: String,
}

pub struct WsState {
    functions: Arc<Functions>,
    routes: HashMap<String, String>,
    /// `RouteSelectionExpression` `$request.body.a.b` as `["a", "b"]`.
    route_selection: Vec<String>,
    sockets: Mutex<HashMap<String, Arc<Socket>>>,
    domain: String,
    settings: WsSettings,
}

impl WsState {
    pub fn new(
        functions: Arc<Functions>,
        routes: &[WsRoute],
        route_selection: Vec<String>,
        domain: String,
        settings: WsSettings,
    ) -> Self {
        Self {
            functions,
            routes: routes
                .iter()
                .map(|r| (r.route_key.clone(), r.function.clone()))
                .collect(),
            route_selection,
            sockets: Mutex::default(),
            domain,
            settings,
        }
    }

    /// The route a frame selects: the value at the route selection path when it names a
    /// route (not a `$` one), else `$default`.
    fn select_route(&self, text: &str) -> String {
        let selected = serde_json::from_str::<Value>(text).ok().and_then(|body| {
            let mut value = &body;
            for field in &self.route_selection {
                value = value.get(field)?;
            }
            value.as_str().map(String::from)
        });
        match selected {
            Some(route) if !route.starts_with('$') && self.routes.contains_key(&route) => route,
            _ => "$default".to_string(),
        }
    }

    fn socket(&self, id: &str) -> Option<Arc<Socket>> {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn open_sockets(&self) -> usize {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The API Gateway event for one route invocation.
    fn event(
        &self,
        route_key: &str,
        event_type: &str,
        id: &str,
        socket: &SocketInfo,
        body: Option<&str>,
    ) -> ApiGatewayWebsocketProxyRequest {
        self.event_with(route_key, event_type, id, socket, body, None)
    }

    fn event_with(
        &self,
        route_key: &str,
        event_type: &str,
        id: &str,
        socket: &SocketInfo,
        body: Option<&str>,
        request: Option<&ConnectRequest>,
    ) -> ApiGatewayWebsocketProxyRequest {
        let now = now_millis();
        let mut event = json!({
            "requestContext": {
                "routeKey": route_key,
                "eventType": event_type,
                "extendedRequestId": uuid::Uuid::new_v4().to_string(),
                "messageDirection": "IN",
                "stage": STAGE,
                "connectedAt": socket.connected_at,
                "requestTimeEpoch": now,
                "identity": { "sourceIp": socket.source_ip, "userAgent": socket.user_agent },
                "requestId": uuid::Uuid::new_v4().to_string(),
                "domainName": self.domain,
                "connectionId": id,
                "apiId": API_ID,
            },
            "isBase64Encoded": false,
        });
        if let Some(body) = body {
            event["body"] = json!(body);
            event["requestContext"]["messageId"] = json!(uuid::Uuid::new_v4().simple().to_string());
        }
        if let Some(request) = request {
            // As API Gateway sends `$connect`: the handshake's headers (one value each, and
            // every value), its query string likewise, plus the headers it adds itself.
            let mut headers = serde_json::Map::new();
            let mut multi_headers = serde_json::Map::new();
            for (name, value) in &request.headers {
                let Ok(value) = value.to_str() else { continue };
                let name = canonical_header(name.as_str());
                headers.insert(name.clone(), json!(value));
                if let Some(values) = multi_headers
                    .entry(name)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                {
                    values.push(json!(value));
                }
            }
            for (name, value) in [
                ("X-Forwarded-For", socket.source_ip.clone()),
                ("X-Forwarded-Port", request.port.to_string()),
                ("X-Forwarded-Proto", "http".to_string()),
                (
                    "X-Amzn-Trace-Id",
                    format!(
                        "Root=1-{:08x}-{}",
                        now / 1000,
                        &uuid::Uuid::new_v4().simple().to_string()[..24]
                    ),
                ),
            ] {
                headers.insert(name.to_string(), json!(value));
                multi_headers.insert(name.to_string(), json!([value]));
            }
            event["headers"] = Value::Object(headers);
            event["multiValueHeaders"] = Value::Object(multi_headers);
            if !request.query.is_empty() {
                let mut single = serde_json::Map::new();
                let mut multi = serde_json::Map::new();
                for (name, value) in &request.query {
                    // API Gateway's single-value map keeps the last value.
                    single.insert(name.clone(), json!(value));
                    if let Some(values) = multi
                        .entry(name.clone())
                        .or_insert_with(|| json!([]))
                        .as_array_mut()
                    {
                        values.push(json!(value));
                    }
                }
                event["queryStringParameters"] = Value::Object(single);
                event["multiValueQueryStringParameters"] = Value::Object(multi);
            }
        }
        if let Some(tap) = &self.settings.event_tap {
            let _ = tap.send(event.clone());
        }
        // Built from JSON as API Gateway sends it; this shape always deserializes.
        serde_json::from_value(event).unwrap_or_default()
    }

    async fn run(&self, route_key: &str, event: ApiGatewayWebsocketProxyRequest) -> Option<i64> {
        let function = self.routes.get(route_key)?;
        let deps = self.functions.deps(function)?;
        self.functions
            .invocation(invoke(function, deps, event))
            .await
            .map(|r| r.status_code)
    }
}

#[derive(Clone)]
struct SocketInfo {
    connected_at: i64,
    source_ip: String,
    user_agent: String,
}

/// What `$connect` sees of the upgrade request.
struct ConnectRequest {
    headers: HeaderMap,
    query: Vec<(String, String)>,
    port: u16,
}

/// `sec-websocket-key` → `Sec-WebSocket-Key`, as browsers send them and API Gateway passes
/// them on.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "websocket" => "WebSocket".to_string(),
            _ => {
                let mut chars = part.chars();
                match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

pub async fn invoke(
    function: &str,
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> Option<ApiGatewayProxyResponse> {
    Some(match function {
        "connect" => connect::handler(deps, event).await,
        "identify" => identify::handler(deps, event).await,
        "handshake" => handshake::handler(deps, event).await,
        "disconnect" => disconnect::handler(deps, event).await,
        "default" => default::handler(deps, event).await,
        _ => return None,
    })
}

pub fn known_function(function: &str) -> bool {
    matches!(
        function,
        "connect" | "identify" | "handshake" | "disconnect" | "default"
    )
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Ids shaped like API Gateway's: 16 URL-safe base64 characters.
fn new_connection_id() -> String {
    let bytes: [u8; 11] = rand::random();
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

pub async fn upgrade(
    State(state): State<Arc<WsState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = new_connection_id();
    let info = SocketInfo {
        connected_at: now_millis(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get("user-agent")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    };
    let port = state
        .domain
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(443);
    let request = ConnectRequest {
        headers,
        query: query
            .as_deref()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default(),
        port,
    };
    let event = state.event_with("$connect", "CONNECT", &id, &info, None, Some(&request));
    match state.run("$connect", event).await {
        Some(200..=299) | None => {}
        Some(status) => {
            let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
            return (status, "connection refused by $connect").into_response();
        }
    }
    upgrade
        .max_frame_size(MAX_WS_FRAME_BYTES)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection(state, socket, id, info))
}

async fn connection(state: Arc<WsState>, socket: WebSocket, id: String, info: SocketInfo) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut pending) = mpsc::unbounded_channel::<Message>();
    let registered = Arc::new(Socket {
        outbox,
        drop_now: tokio::sync::Notify::new(),
        connected_at: info.connected_at,
        last_active: AtomicI64::new(info.connected_at),
        source_ip: info.source_ip.clone(),
        user_agent: info.user_agent.clone(),
    });
    state
        .sockets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), registered.clone());

    let mut writer = tokio::spawn(async move {
        while let Some(message) = pending.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
    });

    // API Gateway invokes one Lambda per frame, with no ordering between the frames of one
    // socket: each frame is dispatched on its own task.
    let started = tokio::time::Instant::now();
    let hard_deadline = started + state.settings.max_connection;
    let mut idle_deadline = started + state.settings.idle_timeout;
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        let message = tokio::select! {
            next = stream.next() => match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    if too_big(e) {
                        let _ = registered.outbox.send(close(CLOSE_TOO_BIG, "Message too big"));
                    }
                    break;
                }
                None => break,
            },
            _ = registered.drop_now.notified() => break,
            _ = tokio::time::sleep_until(idle_deadline.min(hard_deadline)) => {
                let _ = registered.outbox.send(close(CLOSE_GOING_AWAY, "Going away"));
                break;
            }
        };
        // Any inbound frame is activity.
        idle_deadline = tokio::time::Instant::now() + state.settings.idle_timeout;
        registered
            .last_active
            .store(now_millis(), Ordering::Relaxed);
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let state = state.clone();
        let (id, info, outbox) = (id.clone(), info.clone(), registered.outbox.clone());
        tokio::spawn(async move {
            let jitter = state.settings.frame_jitter_ms;
            if jitter > 0 {
                let wait = rand::random_range(0..=jitter);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let route = state.select_route(&text);
            let event = state.event(&route, "MESSAGE", &id, &info, Some(&text));
            if state.run(&route, event).await.is_none() {
                // No route and no $default: API Gateway's own answer.
                let _ = outbox.send(Message::Text(
                    json!({ "message": "Forbidden", "connectionId": id })
                        .to_string()
                        .into(),
                ));
            }
        });
    }

    state
        .sockets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    // Frames already queued (a close frame, say) go out before the socket is dropped.
    drop(registered);
    if tokio::time::timeout(std::time::Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    if state.settings.deliver_disconnect {
        let event = state.event("$disconnect", "DISCONNECT", &id, &info, None);
        state.run("$disconnect", event).await;
    }
}

/// A read error for a frame or message over the limits.
fn too_big(error: axum::Error) -> bool {
    let inner = error.into_inner();
    matches!(
        inner.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [
            ("x-amzn-errortype", "GoneException"),
            ("content-type", "application/json"),
        ],
        json!({ "message": null }).to_string(),
    )
        .into_response()
}

fn iso(millis: i64) -> String {
    DateTime::from_millis(millis)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

pub async fn post_to_connection(
    State(state): State<Arc<WsState>>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let Some(id) = params.last().map(|(_, v)| v.clone()) else {
        return gone();
    };
    if body.len() > MAX_FRAME_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("x-amzn-errortype", "PayloadTooLargeException")],
            json!({ "message": "Payload too large" }).to_string(),
        )
            .into_response();
    }
    let Some(socket) = state.socket(&id) else {
        return gone();
    };
    let message = match String::from_utf8(body.to_vec()) {
        Ok(text) => Message::Text(text.into()),
        Err(e) => Message::Binary(e.into_bytes().into()),
    };
    if socket.outbox.send(message).is_err() {
        return gone();
    }
    StatusCode::OK.into_response()
}

pub async fn get_connection(
    State(state): State<Arc<WsState>>,
    Path(params): Path<Vec<(String, String)>>,
) -> Response {
    let Some(socket) = params.last().and_then(|(_, id)| state.socket(id)) else {
        return gone();
    };
    axum::Json(json!({
        "connectedAt": iso(socket.connected_at),
        "identity": { "sourceIp": socket.source_ip, "userAgent": socket.user_agent },
        "lastActiveAt": iso(socket.last_active.load(Ordering::Relaxed)),
    }))
    .into_response()
}

pub async fn delete_connection(
    State(state): State<Arc<WsState>>,
    Path(params): Path<Vec<(String, String)>>,
) -> Response {
    let Some(socket) = params.last().and_then(|(_, id)| state.socket(id)) else {
        return gone();
    };
    let _ = socket.outbox.send(Message::Close(None));
    socket.drop_now.notify_one();
    StatusCode::NO_CONTENT.into_response()
}
