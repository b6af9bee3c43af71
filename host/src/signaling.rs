//! The signaling socket: connects, identifies as the room's host, relays frames both ways,
//! pings every minute, and when the socket closes (API Gateway closes every socket after two
//! hours) reconnects with backoff and identifies again.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// API Gateway closes sockets idle 10 minutes; a ping a minute keeps well inside that.
const PING_INTERVAL: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The peer id the host identifies with; viewers' frames reach it without naming it.
pub const PEER_ID: &str = "host";

pub struct Identity {
    pub url: String,
    pub room_id: String,
    /// The host's secret: proves the room is its own.
    pub host_id: String,
}

impl Identity {
    fn frame(&self) -> String {
        json!({ "action": "identify", "data": {
            "id": PEER_ID, "type": "host", "roomId": self.room_id, "hostId": self.host_id,
        }})
        .to_string()
    }
}

enum Closed {
    Shutdown,
    /// The socket closed or never opened; whether it had identified.
    Socket(bool),
}

/// Runs until `shutdown` turns true (then it closes the socket) or the process side is gone.
/// Every frame but `pong` goes to `inbound`; frames from `outbound` are sent once identified.
pub async fn run(
    me: Identity,
    inbound: mpsc::Sender<Value>,
    mut outbound: mpsc::Receiver<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    // A frame taken from `outbound` whose send failed: the first to go on the next socket.
    let mut unsent: Option<String> = None;
    loop {
        match connection(&me, &inbound, &mut outbound, &mut unsent, &mut shutdown).await {
            Closed::Shutdown => return,
            Closed::Socket(identified) => {
                if identified {
                    backoff = BACKOFF_START;
                }
                tracing::warn!(?backoff, "signaling socket closed; reconnecting");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopping(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn connection(
    me: &Identity,
    inbound: &mpsc::Sender<Value>,
    outbound: &mut mpsc::Receiver<String>,
    unsent: &mut Option<String>,
    shutdown: &mut watch::Receiver<bool>,
) -> Closed {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(&me.url));
    let socket = tokio::select! {
        connected = connect => match connected {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(e)) => {
                tracing::warn!(url = %me.url, error = %e, "signaling connect failed");
                return Closed::Socket(false);
            }
            Err(_) => {
                tracing::warn!(url = %me.url, "signaling connect timed out");
                return Closed::Socket(false);
            }
        },
        _ = stopping(shutdown) => return Closed::Shutdown,
    };
    let (mut tx, mut rx) = socket.split();
    if tx.send(Message::Text(me.frame().into())).await.is_err() {
        return Closed::Socket(false);
    }
    let mut identified = false;
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = match serde_json::from_str(&text) {
                        Ok(frame) => frame,
                        Err(e) => {
                            tracing::warn!(error = %e, "signaling frame is not JSON; ignored");
                            continue;
                        }
                    };
                    match frame.get("type").and_then(Value::as_str) {
                        Some("pong") => continue,
                        Some("identified") => {
                            identified = true;
                            tracing::info!(room_id = %me.room_id, "identified");
                        }
                        // The room is not (or no longer) this host's: the next heartbeat
                        // registers it again, and the next socket identifies again.
                        Some("error") if frame.get("action").and_then(Value::as_str) == Some("identify") => {
                            tracing::warn!(%frame, "identify refused; retrying");
                            let _ = tx.send(Message::Close(None)).await;
                            let _ = inbound.send(frame).await;
                            return Closed::Socket(false);
                        }
                        _ => {}
                    }
                    if inbound.send(frame).await.is_err() {
                        return Closed::Shutdown;
                    }
                }
                Some(Ok(Message::Close(close))) => {
                    tracing::info!(?close, "signaling socket closed by the gateway");
                    return Closed::Socket(identified);
                }
                None | Some(Err(_)) => return Closed::Socket(identified),
                Some(Ok(_)) => {}
            },
            // Frames wait for the identify: the gateway would refuse them before it.
            next = async {
                match unsent.take() {
                    Some(frame) => Some(frame),
                    None => outbound.recv().await,
                }
            }, if identified => match next {
                Some(frame) => {
                    if tx.send(Message::Text(frame.clone().into())).await.is_err() {
                        *unsent = Some(frame);
                        return Closed::Socket(identified);
                    }
                }
                None => return close(tx).await,
            },
            _ = stopping(shutdown) => return close(tx).await,
            _ = ping.tick() => {
                if tx.send(Message::Text(json!({ "action": "ping" }).to_string().into())).await.is_err() {
                    return Closed::Socket(identified);
                }
            }
        }
    }
}

/// Resolves once the agent stops (or is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
}

async fn close<S>(mut tx: S) -> Closed
where
    S: futures_util::Sink<Message> + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Message::Close(None))).await;
    Closed::Shutdown
}
