//! The signaling socket, in a task of its own: connects, identifies as the room's SFU, relays
//! frames both ways, pings every minute, and when the socket closes reconnects with backoff and
//! identifies again. Media does not wait for it: the room loop only exchanges channel messages
//! with this task.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// API Gateway closes sockets idle 10 minutes; a ping a minute keeps well inside that.
pub const PING_INTERVAL: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the signaling task tells the room loop.
#[derive(Debug)]
pub enum Inbound {
    /// A frame for the room (anything but the socket's own `identified`/`pong`).
    Frame(Value),
    /// The gateway accepted the identify (`again`: on a later socket).
    Identified { again: bool },
    /// The gateway refused the identify: the room is gone (or the token is wrong).
    Refused {
        after_identified: bool,
        frame: Value,
    },
}

pub struct Identity {
    pub url: String,
    pub room_id: String,
    pub token: String,
}

impl Identity {
    fn frame(&self) -> String {
        json!({ "action": "identify", "data": {
            "id": self.room_id, "type": "sfu", "token": self.token,
        }})
        .to_string()
    }
}

enum Closed {
    /// The room loop has gone (shutting down).
    Shutdown,
    /// The socket closed; whether it had identified.
    Socket(bool),
    Refused,
}

/// Runs until `outbound` closes (the room loop ends) or the identify is refused.
pub async fn run(
    me: Identity,
    inbound: mpsc::UnboundedSender<Inbound>,
    mut outbound: mpsc::UnboundedReceiver<String>,
) {
    let mut backoff = BACKOFF_START;
    let mut ever_identified = false;
    // A frame taken from `outbound` whose send failed: the first to go on the next socket.
    let mut unsent: Option<String> = None;
    loop {
        match connection(
            &me,
            &inbound,
            &mut outbound,
            &mut unsent,
            &mut ever_identified,
        )
        .await
        {
            Closed::Shutdown | Closed::Refused => return,
            Closed::Socket(identified) => {
                if identified {
                    backoff = BACKOFF_START;
                }
                tracing::warn!(?backoff, "signaling socket closed; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if inbound.is_closed() {
            return;
        }
    }
}

async fn connection(
    me: &Identity,
    inbound: &mpsc::UnboundedSender<Inbound>,
    outbound: &mut mpsc::UnboundedReceiver<String>,
    unsent: &mut Option<String>,
    ever_identified: &mut bool,
) -> Closed {
    let socket = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(&me.url),
    )
    .await
    {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => {
            tracing::warn!(url = %me.url, error = %e, "signaling connect failed");
            return Closed::Socket(false);
        }
        Err(_) => {
            tracing::warn!(url = %me.url, "signaling connect timed out");
            return Closed::Socket(false);
        }
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
                        Some("identified") => {
                            identified = true;
                            let again = *ever_identified;
                            *ever_identified = true;
                            tracing::info!(again, "identified");
                            if inbound.send(Inbound::Identified { again }).is_err() {
                                return Closed::Shutdown;
                            }
                        }
                        Some("pong") => tracing::debug!("pong"),
                        Some("error") if frame.get("action").and_then(Value::as_str) == Some("identify") => {
                            tracing::error!(%frame, "identify refused");
                            let _ = inbound.send(Inbound::Refused {
                                after_identified: *ever_identified,
                                frame,
                            });
                            let _ = tx.send(Message::Close(None)).await;
                            return Closed::Refused;
                        }
                        _ => {
                            if inbound.send(Inbound::Frame(frame)).is_err() {
                                return Closed::Shutdown;
                            }
                        }
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
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), tx.send(Message::Close(None))).await;
                    return Closed::Shutdown;
                }
            },
            _ = ping.tick() => {
                if tx.send(Message::Text(json!({ "action": "ping" }).to_string().into())).await.is_err() {
                    return Closed::Socket(identified);
                }
            }
        }
    }
}
