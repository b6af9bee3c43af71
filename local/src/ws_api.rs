//! The WebSocket API as API Gateway serves it: `$connect` decides whether a socket opens,
//! each text frame is routed by `$request.body.action` (else `$default`) to its function
//! with a full WebSocket proxy event, a closed socket gets `$disconnect`, and the
//! `@connections/{id}` management API (POST, GET, DELETE) reaches the sockets, answering
//! 410 `GoneException` for a closed one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::Deps;
use switchboard::signaling::MAX_FRAME_BYTES;
use tokio::sync::mpsc;

use crate::template::WsRoute;

pub const STAGE: &str = "local";

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
    pub deps: Deps,
    routes: HashMap<String, String>,
    sockets: Mutex<HashMap<String, Arc<Socket>>>,
    domain: String,
    /// API Gateway delivers `$disconnect` on a best-effort basis; tests turn it off to show
    /// that stale records are still cleaned up.
    deliver_disconnect: bool,
}

impl WsState {
    pub fn new(deps: Deps, routes: &[WsRoute], domain: String, deliver_disconnect: bool) -> Self {
        Self {
            deps,
            routes: routes
                .iter()
                .map(|r| (r.route_key.clone(), r.function.clone()))
                .collect(),
            sockets: Mutex::default(),
            domain,
            deliver_disconnect,
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
                "apiId": "local",
            },
            "isBase64Encoded": false,
        });
        if let Some(body) = body {
            event["body"] = json!(body);
            event["requestContext"]["messageId"] = json!(uuid::Uuid::new_v4().simple().to_string());
        }
        if event_type == "CONNECT" {
            event["headers"] = json!({ "Host": self.domain, "User-Agent": socket.user_agent });
        }
        // Built from JSON as API Gateway sends it; this shape always deserializes.
        serde_json::from_value(event).unwrap_or_default()
    }

    async fn run(&self, route_key: &str, event: ApiGatewayWebsocketProxyRequest) -> Option<i64> {
        let function = self.routes.get(route_key)?;
        invoke(function, &self.deps, event)
            .await
            .map(|r| r.status_code)
    }
}

struct SocketInfo {
    connected_at: i64,
    source_ip: String,
    user_agent: String,
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
    let event = state.event("$connect", "CONNECT", &id, &info, None);
    match state.run("$connect", event).await {
        Some(200..=299) | None => {}
        Some(status) => {
            let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
            return (status, "connection refused by $connect").into_response();
        }
    }
    upgrade
        .max_message_size(MAX_FRAME_BYTES * 8)
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

    // One connection's frames are handled in order, so a client's identify completes before
    // its next frame is routed.
    loop {
        let message = tokio::select! {
            next = stream.next() => match next {
                Some(Ok(message)) => message,
                _ => break,
            },
            _ = registered.drop_now.notified() => break,
        };
        registered
            .last_active
            .store(now_millis(), Ordering::Relaxed);
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let action = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(String::from));
        let route = match action {
            Some(action) if !action.starts_with('$') && state.routes.contains_key(&action) => {
                action
            }
            _ => "$default".to_string(),
        };
        let event = state.event(&route, "MESSAGE", &id, &info, Some(&text));
        if state.run(&route, event).await.is_none() {
            // No route and no $default: API Gateway's own answer.
            let _ = registered.outbox.send(Message::Text(
                json!({ "message": "Forbidden", "connectionId": id })
                    .to_string()
                    .into(),
            ));
        }
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
    if state.deliver_disconnect {
        let event = state.event("$disconnect", "DISCONNECT", &id, &info, None);
        state.run("$disconnect", event).await;
    }
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
