//! A counting HTTP proxy in front of DynamoDB Local. The stack under test is pointed at it, so
//! every DynamoDB request the production handlers make passes here and is counted exactly:
//! requests by operation (`X-Amz-Target`), items examined by Query and Scan (`ScannedCount`
//! from DynamoDB's own answer), and conditional writes that DynamoDB refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub by_operation: BTreeMap<String, u64>,
    /// Items DynamoDB examined for Query and Scan (`ScannedCount`).
    pub scanned: u64,
    /// Conditional writes refused (`ConditionalCheckFailedException`, or a transaction
    /// cancelled for a failed condition).
    pub condition_failures: u64,
}

impl Counts {
    pub fn calls(&self) -> u64 {
        self.by_operation.values().sum()
    }

    pub fn operation(&self, name: &str) -> u64 {
        self.by_operation.get(name).copied().unwrap_or_default()
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut by_operation = BTreeMap::new();
        for (op, n) in &self.by_operation {
            let d = n - earlier.operation(op);
            if d > 0 {
                by_operation.insert(op.clone(), d);
            }
        }
        Counts {
            by_operation,
            scanned: self.scanned - earlier.scanned,
            condition_failures: self.condition_failures - earlier.condition_failures,
        }
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    counts: Mutex<Counts>,
}

#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    state: Arc<ProxyState>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .map_err(std::io::Error::other)?,
            counts: Mutex::default(),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state })
    }

    pub fn snapshot(&self) -> Counts {
        self.state
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('.').next())
        .unwrap_or("unknown")
        .to_string();
    let mut upstream_headers = headers.clone();
    for name in ["host", "content-length", "connection"] {
        upstream_headers.remove(name);
    }
    let result = state
        .client
        .request(method, &state.upstream)
        .headers(upstream_headers)
        .body(body)
        .send()
        .await;
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = reply.status();
    let mut reply_headers = reply.headers().clone();
    for name in ["content-length", "transfer-encoding", "connection"] {
        reply_headers.remove(name);
    }
    let bytes = match reply.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let scanned = if status.is_success() && matches!(operation.as_str(), "Query" | "Scan") {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["ScannedCount"].as_u64())
            .unwrap_or_default()
    } else {
        0
    };
    let refused = status == StatusCode::BAD_REQUEST
        && String::from_utf8_lossy(&bytes).contains("ConditionalCheckFailed");
    {
        let mut counts = state.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.by_operation.entry(operation).or_default() += 1;
        counts.scanned += scanned;
        counts.condition_failures += u64::from(refused);
    }
    let mut response = (status, bytes).into_response();
    response.headers_mut().extend(reply_headers);
    response
}
