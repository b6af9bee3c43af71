//! The two host routes: `POST /api/host/heartbeat` and `POST /api/host/status`.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest answer read: the API's answers are a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Status {
    Idle,
    Busy,
}

impl Status {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "idle" => Some(Self::Idle),
            "busy" => Some(Self::Busy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Busy => "busy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API said no (a 4xx other than 408/429): asking again will not help.
    #[error("{route} refused: {status} {message}")]
    Refused {
        route: &'static str,
        status: u16,
        message: String,
    },
    /// Not now: unreachable, a 5xx or 503, throttled, or an answer that is not the API's.
    #[error("{route} failed: {reason}")]
    Unavailable { route: &'static str, reason: String },
}

/// What a heartbeat answers besides success.
pub struct Registration {
    pub ttl_seconds: u64,
    pub signaling_url: Option<String>,
    pub ice_servers: Value,
}

impl Registration {
    /// Two thirds of what the entry is sure to live: its expiry is stored in whole seconds, so
    /// it can lapse up to a second short of the TTL. A heartbeat that is late by half an
    /// interval, or retried once, still lands in time.
    pub fn interval(&self) -> Duration {
        let sure = self.ttl_seconds.saturating_sub(1).saturating_mul(1000);
        Duration::from_millis(sure.saturating_mul(2) / 3).max(Duration::from_millis(500))
    }
}

pub struct Api {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    /// The host key, from the environment; never logged.
    key: Option<String>,
    pub host_id: String,
    pub room_id: String,
    pub region: String,
}

impl Api {
    pub fn new(
        base: &str,
        key: Option<String>,
        host_id: String,
        room_id: String,
        region: String,
    ) -> std::io::Result<Self> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            host_id,
            room_id,
            region,
        })
    }

    pub async fn heartbeat(&self, status: Status) -> Result<Registration, ApiError> {
        let body = json!({
            "hostId": self.host_id, "roomId": self.room_id,
            "region": self.region, "status": status.as_str(),
        });
        let answer = self.post("heartbeat", "/api/host/heartbeat", &body).await?;
        let unavailable = |reason: &str| ApiError::Unavailable {
            route: "heartbeat",
            reason: reason.into(),
        };
        let ttl_seconds = answer
            .get("ttl")
            .and_then(Value::as_u64)
            .filter(|ttl| *ttl > 0)
            .ok_or_else(|| unavailable("the answer has no ttl"))?;
        Ok(Registration {
            ttl_seconds,
            signaling_url: answer
                .get("signalingUrl")
                .and_then(Value::as_str)
                .map(str::to_string),
            ice_servers: answer.get("iceServers").cloned().unwrap_or(json!([])),
        })
    }

    pub async fn status(&self, status: Status) -> Result<(), ApiError> {
        let body = json!({ "hostId": self.host_id, "status": status.as_str() });
        self.post("status", "/api/host/status", &body).await?;
        Ok(())
    }

    async fn post(&self, route: &'static str, path: &str, body: &Value) -> Result<Value, ApiError> {
        let unavailable = |reason: String| ApiError::Unavailable { route, reason };
        let mut request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| unavailable(format!("bad request: {e}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                unavailable(cause.unwrap_or_else(|| e.to_string()))
            })?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unavailable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, ApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unavailable("timed out".into()))??;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let message = || {
            answer.get("message").and_then(Value::as_str).map_or_else(
                || String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                str::to_string,
            )
        };
        match status {
            200..=299 if answer.is_object() => Ok(answer),
            200..=299 => Err(unavailable(format!(
                "{status} with a body that is not JSON"
            ))),
            408 | 429 => Err(unavailable(format!("{status} {}", message()))),
            400..=499 => Err(ApiError::Refused {
                route,
                status,
                message: message(),
            }),
            _ => Err(unavailable(format!("{status} {}", message()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_half_an_interval_late_lands_before_the_entry_can_lapse() {
        for ttl_seconds in 2..=120 {
            let registration = Registration {
                ttl_seconds,
                signaling_url: None,
                ice_servers: Value::Null,
            };
            let interval = registration.interval();
            // Stored as `floor(now) + ttl`: a heartbeat just before a second's end lives
            // only a little over `ttl - 1` seconds.
            let sure = Duration::from_secs(ttl_seconds - 1);
            assert!(
                interval + interval / 2 <= sure,
                "TTL {ttl_seconds} s: a heartbeat every {interval:?}, the entry sure for {sure:?}"
            );
            assert!(interval >= Duration::from_millis(500), "{interval:?}");
        }
    }
}
