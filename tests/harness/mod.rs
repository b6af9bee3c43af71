//! Test harness: one DynamoDB Local per test binary, and a local stack per test with its own
//! tables, ports and clock, so tests run concurrently without seeing each other.

pub mod contract;

use std::time::Duration;

use serde_json::Value;
use switchboard::Clock;
use switchboard_local::dynamodb;
use switchboard_local::{Stack, StackOptions};

pub use switchboard_local;

pub const OPERATOR_KEYS: &str = "operator-key-1,operator-key-2";
pub const HOST_KEYS: &str = "host-key-old,host-key-new";
pub const HOST_KEY: &str = "host-key-new";
pub const OPERATOR_KEY: &str = "operator-key-1";
pub const TURN_SECRET: &str = "turn-secret-for-tests";

/// The DynamoDB endpoint for this test binary: `SWITCHBOARD_TEST_DYNAMODB`, or a DynamoDB
/// Local started once and shared by its tests.
pub fn dynamodb_endpoint() -> String {
    dynamodb::for_process().expect("DynamoDB Local starts")
}

pub fn now() -> i64 {
    Clock::system().now()
}

/// Options for a test's own stack: fresh tables, free ports, a manual clock at the real time,
/// two operator keys and two host keys.
pub fn options() -> StackOptions {
    options_for(dynamodb_endpoint())
}

/// `options()` against another DynamoDB (a test's own, say).
pub fn options_for(dynamodb_endpoint: String) -> StackOptions {
    let mut options = StackOptions::new(dynamodb_endpoint);
    options.table_prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
    options.clock = Clock::manual(now());
    for (name, value) in [
        ("SWITCHBOARD_OPERATOR_KEYS", OPERATOR_KEYS),
        ("SWITCHBOARD_HOST_KEYS", HOST_KEYS),
        ("SWITCHBOARD_TURN_SECRET", TURN_SECRET),
        ("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478?transport=udp"),
        ("SWITCHBOARD_STUN_URLS", "stun:127.0.0.1:3478"),
    ] {
        options.vars.insert(name.into(), value.into());
    }
    options
}

pub struct TestStack {
    pub stack: Stack,
    pub clock: Clock,
    http: reqwest::Client,
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(options()).await
    }

    pub async fn start_with(options: StackOptions) -> Self {
        // `SWITCHBOARD_TEST_LOG=debug` (an env filter) shows the stack's and handlers' logs.
        if let Ok(filter) = std::env::var("SWITCHBOARD_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let clock = options.clock.clone();
        let stack = Stack::start(options).await.expect("local stack starts");
        Self {
            stack,
            clock,
            http: reqwest::Client::new(),
        }
    }

    pub fn store(&self) -> &switchboard::model::Store {
        &self.stack.deps.store
    }

    /// An item as it is in the table, expired or not (the model would hide an expired one).
    pub async fn raw_item(
        &self,
        table: &str,
        key: &str,
        value: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.store()
            .client()
            .get_item()
            .table_name(table)
            .key(
                key,
                aws_sdk_dynamodb::types::AttributeValue::S(value.into()),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    }

    /// One HTTP call; returns the status and the JSON body (Null when the body is empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> (u16, Value) {
        let response = self.request(method, path, body, bearer, &[]).await;
        let status = response.status().as_u16();
        let headers = contract::header_list(response.headers());
        let text = response.text().await.expect("response body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        // Every answer a test sees is one docs/openapi.yaml describes.
        if let Err(broken) =
            contract::HttpContract::get().check(method, path, status, &headers, &json)
        {
            panic!("{broken}");
        }
        (status, json)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.stack.http_url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(key) = bearer {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .send()
            .await
            .expect("request reaches the local stack")
    }

    pub async fn heartbeat(
        &self,
        host_id: &str,
        room_id: &str,
        region: &str,
        status: &str,
    ) -> (u16, Value) {
        let body = serde_json::json!({ "hostId": host_id, "roomId": room_id, "region": region, "status": status });
        self.call(
            "POST",
            "/api/host/heartbeat",
            Some(&body.to_string()),
            Some(HOST_KEY),
        )
        .await
    }

    pub async fn status(&self, host_id: &str, status: &str) -> (u16, Value) {
        let body = serde_json::json!({ "hostId": host_id, "status": status });
        self.call(
            "POST",
            "/api/host/status",
            Some(&body.to_string()),
            Some(HOST_KEY),
        )
        .await
    }

    pub async fn find_match(&self, region: Option<&str>) -> (u16, Value) {
        let body = match region {
            Some(r) => serde_json::json!({ "region": r }),
            None => serde_json::json!({}),
        };
        self.call("POST", "/api/find-match", Some(&body.to_string()), None)
            .await
    }

    /// createRoom, then the SFU's side of it: the token from the task's environment makes the
    /// room warm, as the SFU's identify does.
    pub async fn warm_room(&self) -> String {
        let (status, body) = self
            .call("PUT", "/createRoom", None, Some(OPERATOR_KEY))
            .await;
        assert_eq!(status, 200, "createRoom: {body}");
        let room_id = body["roomId"].as_str().expect("roomId").to_string();
        let token = self.task_env(&room_id, "SFU_TOKEN");
        let attached = self
            .store()
            .attach_sfu(
                &room_id,
                switchboard::model::SfuProof::Token(&token),
                &room_id,
                &format!("conn-{room_id}"),
            )
            .await
            .expect("attach");
        assert!(attached.is_some(), "the SFU's token is accepted");
        room_id
    }

    /// A variable of the container environment the ECS endpoint got for `room_id`'s task.
    pub fn task_env(&self, room_id: &str, name: &str) -> String {
        self.stack
            .tasks()
            .into_iter()
            .find(|t| t.environment.get("ROOM_ID").map(String::as_str) == Some(room_id))
            .and_then(|t| t.environment.get(name).cloned())
            .unwrap_or_else(|| panic!("no task for room {room_id} with {name}"))
    }
}

/// A WebSocket client of the local stack, as a browser, SFU or host would be.
pub struct Peer {
    pub name: String,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

pub const FRAME_WAIT: Duration = Duration::from_secs(10);

impl Peer {
    pub async fn connect(url: &str, name: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connects");
        Self {
            name: name.to_string(),
            socket,
        }
    }

    /// Connects, or returns the HTTP status the gateway refused the upgrade with (`$connect`
    /// answered non-2xx); any other failure panics.
    pub async fn try_connect(url: &str, name: &str) -> Result<Self, u16> {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => Ok(Self {
                name: name.to_string(),
                socket,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("{name}: WebSocket connect failed: {e}"),
        }
    }

    /// Sends one message of any kind (binary, a text frame that is not JSON, ...).
    pub async fn send_message(
        &mut self,
        message: tokio_tungstenite::tungstenite::Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        use futures_util::SinkExt;
        self.socket.send(message).await
    }

    /// The next frame within `wait`, checked as `recv` checks it; `None` if nothing came.
    /// Panics if the socket closed.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.recv_any("a frame")).await {
            Ok(frame) => {
                if let Err(broken) = contract::FrameContract::get().check(&frame) {
                    panic!("{}: {broken}", self.name);
                }
                Some(frame)
            }
            Err(_) => None,
        }
    }

    /// The next message of any kind, as received (close frames included); `None` when the
    /// socket ended or nothing came within `wait`.
    pub async fn next_message(
        &mut self,
        wait: Duration,
    ) -> Option<
        Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
    > {
        use futures_util::StreamExt;
        tokio::time::timeout(wait, self.socket.next())
            .await
            .ok()
            .flatten()
    }

    pub async fn send_raw(&mut self, text: String) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, action: &str, data: Value) {
        self.send_raw(serde_json::json!({ "action": action, "data": data }).to_string())
            .await;
    }

    /// The next JSON frame, which must be an outbound message of docs/asyncapi.yaml; panics
    /// naming the peer and what it waited for.
    pub async fn recv(&mut self, waiting_for: &str) -> Value {
        let frame = self.recv_any(waiting_for).await;
        if let Err(broken) = contract::FrameContract::get().check(&frame) {
            panic!("{}: while waiting for {waiting_for}: {broken}", self.name);
        }
        frame
    }

    /// The next JSON frame, whatever it is: for frames a test posts itself through the
    /// `@connections` API, which are not Switchboard's.
    pub async fn recv_any(&mut self, waiting_for: &str) -> Value {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next()).await;
            match next {
                Err(_) => panic!(
                    "{}: no frame within {FRAME_WAIT:?} while waiting for {waiting_for}",
                    self.name
                ),
                Ok(None) => panic!(
                    "{}: socket closed while waiting for {waiting_for}",
                    self.name
                ),
                Ok(Some(Err(e))) => panic!(
                    "{}: socket error while waiting for {waiting_for}: {e}",
                    self.name
                ),
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                    return serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("{}: a frame that is not JSON ({e}): {text}", self.name)
                    });
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next JSON frame within `within`, or None (no frame, or the socket closed).
    pub async fn next_frame(&mut self, within: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                    return serde_json::from_str(&text).ok();
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        use futures_util::StreamExt;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) =
            tokio::time::timeout(quiet, self.socket.next()).await
        {
            panic!(
                "{} received a frame meant for someone else: {text}",
                self.name
            );
        }
    }

    /// Sends one message as several WebSocket frames (a text frame and continuations).
    pub async fn send_fragmented(&mut self, parts: &[String]) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        for (i, part) in parts.iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(part.clone().into_bytes(), opcode, i + 1 == parts.len());
            self.socket
                .send(tokio_tungstenite::tungstenite::Message::Frame(frame))
                .await
                .expect("send a frame");
        }
    }

    /// Waits up to `within` for the server to close the socket; returns the close code of its
    /// Close frame (None: closed without one). Text frames on the way are skipped. Panics when
    /// the socket is still open after `within`.
    pub async fn closed(&mut self, within: Duration) -> Option<u16> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => panic!("{}: still open after {within:?}", self.name),
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) => return None,
            }
        }
    }

    pub async fn identify(&mut self, data: Value) -> Value {
        self.send("identify", data).await;
        self.recv("identify's answer").await
    }

    pub async fn close(mut self) {
        use futures_util::SinkExt;
        let _ = self.socket.close(None).await;
        let _ = self.socket.flush().await;
    }

    /// Drops the TCP connection without a close frame, as a crashed client would.
    pub fn kill(self) {
        drop(self);
    }
}

/// A fresh directory where task processes write what happens to them, one file per room or
/// server (`<dir>/<id>`, a line per event).
pub fn events_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("events dir");
    dir
}

/// What the task of `id` has written so far.
pub fn events(dir: &std::path::Path, id: &str) -> String {
    std::fs::read_to_string(dir.join(id)).unwrap_or_default()
}

/// Waits, up to `within`, until the task of `id` has written `what` (the process runs on its
/// own).
pub async fn wait_for_event(dir: &std::path::Path, id: &str, what: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !events(dir, id).contains(what) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "task of {id} never wrote {what:?}; it wrote {:?}",
            events(dir, id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
