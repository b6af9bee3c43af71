//! What every benchmark shares: DynamoDB Local, the counting proxy, stacks with their own
//! tables and a frozen clock, fast loading, WebSocket peers and statistics.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard::Clock;
use switchboard_local::dynamodb::{self, DynamoDbLocal};
use switchboard_local::{Stack, StackOptions};
use tokio_tungstenite::tungstenite::Message;

use crate::proxy::{Counts, Proxy};

pub type Item = HashMap<String, AttributeValue>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub const HOST_KEY: &str = "bench-host-key";
pub const OPERATOR_KEY: &str = "bench-operator-key";

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn now() -> i64 {
    Clock::system().now()
}

pub struct Env {
    _dynamodb: DynamoDbLocal,
    /// DynamoDB Local itself: loading and restoring go here, uncounted.
    pub direct: Client,
    pub proxy: Proxy,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Result<Self, Error> {
        let jar = dynamodb::ensure_installed(&dynamodb::cache_dir())?;
        let local = DynamoDbLocal::start(&jar, dynamodb::free_port()?)?;
        local.wait_ready().await?;
        let sdk = switchboard_local::local_sdk_config().await;
        let direct = Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&local.endpoint)
                .build(),
        );
        let proxy = Proxy::start(&local.endpoint).await?;
        Ok(Self {
            _dynamodb: local,
            direct,
            proxy,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()?,
        })
    }

    /// A stack whose DynamoDB traffic goes through the counting proxy, with fresh tables and
    /// a clock frozen now (nothing loaded expires while a benchmark runs).
    pub async fn stack(&self, extra: &[(&str, &str)]) -> Result<Bench, Error> {
        let mut options = StackOptions::new(self.proxy.url.clone());
        options.table_prefix = format!("b{}-", uuid::Uuid::new_v4().simple());
        let clock = Clock::manual(now());
        options.clock = clock.clone();
        options.pages = None;
        for (name, value) in [
            ("SWITCHBOARD_OPERATOR_KEYS", OPERATOR_KEY),
            ("SWITCHBOARD_HOST_KEYS", HOST_KEY),
            ("SWITCHBOARD_TURN_SECRET", "bench-turn-secret"),
            ("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478?transport=udp"),
        ]
        .iter()
        .chain(extra)
        {
            options.vars.insert(name.to_string(), value.to_string());
        }
        let stack = Stack::start(options).await?;
        Ok(Bench {
            stack,
            clock,
            http: self.http.clone(),
            proxy: self.proxy.clone(),
        })
    }

    /// Writes items with BatchWriteItem, 25 at a time, `concurrency` batches in flight,
    /// retrying what DynamoDB left unprocessed.
    pub async fn load(&self, table: &str, items: Vec<Item>) -> Result<(), Error> {
        let batches: Vec<Vec<Item>> = items.chunks(25).map(<[Item]>::to_vec).collect();
        let results: Vec<Result<(), Error>> = futures_util::stream::iter(batches)
            .map(|batch| async move {
                let mut requests: Vec<WriteRequest> = batch
                    .into_iter()
                    .map(|item| -> Result<WriteRequest, Error> {
                        Ok(WriteRequest::builder()
                            .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                            .build())
                    })
                    .collect::<Result<_, Error>>()?;
                for _ in 0..20 {
                    if requests.is_empty() {
                        return Ok(());
                    }
                    let out = self
                        .direct
                        .batch_write_item()
                        .request_items(table, requests)
                        .send()
                        .await?;
                    requests = out
                        .unprocessed_items()
                        .and_then(|m| m.get(table))
                        .cloned()
                        .unwrap_or_default();
                }
                Err("BatchWriteItem kept leaving items unprocessed".into())
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

pub struct Bench {
    pub stack: Stack,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub proxy: Proxy,
}

impl Bench {
    pub fn tables(&self) -> &switchboard::config::Tables {
        self.stack.deps.store.tables()
    }

    pub fn counts(&self) -> Counts {
        self.proxy.snapshot()
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value), Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.stack.http_url))
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(key) = bearer {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// A WebSocket client of the local stack (or of the echo server).
pub struct Peer {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

pub const FRAME_WAIT: Duration = Duration::from_secs(15);

impl Peer {
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let (socket, _) =
            tokio::time::timeout(FRAME_WAIT, tokio_tungstenite::connect_async(url)).await??;
        Ok(Self { socket })
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), Error> {
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    pub async fn send(&mut self, action: &str, data: Value) -> Result<(), Error> {
        self.send_text(serde_json::json!({ "action": action, "data": data }).to_string())
            .await
    }

    /// The next text frame, or `None` after `wait` without one.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<String>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err("socket closed".into()),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(Message::Text(text)))) => return Ok(Some(text.to_string())),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn recv_json(&mut self, waiting_for: &str) -> Result<Value, Error> {
        match self.recv_within(FRAME_WAIT).await? {
            Some(text) => Ok(serde_json::from_str(&text)?),
            None => Err(format!("no frame within {FRAME_WAIT:?} waiting for {waiting_for}").into()),
        }
    }

    pub async fn identify(&mut self, data: Value) -> Result<Value, Error> {
        self.send("identify", data).await?;
        let answer = self.recv_json("identify's answer").await?;
        if answer["type"] != "identified" {
            return Err(format!("identify refused: {answer}").into());
        }
        Ok(answer)
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        let _ = self.socket.flush().await;
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
