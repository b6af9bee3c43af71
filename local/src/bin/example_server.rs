//! `switchboard-example-server`: a real task process for the local stack's `--task-command`,
//! as an SFU room or a game server.
//!
//! Environment: `SIGNAL_SERVER_URL`; `ROOM_ID` (+ `SFU_TOKEN`) identifies it as a room's SFU,
//! else `SERVER_ID` + `SERVER_TOKEN` as a session's game server (without `SERVER_TOKEN` it does
//! not connect at all). With `TASK_IP`, it answers UDP `ping` on `TASK_IP:GAME_PORT` (7777)
//! with `pong <id>`. `EXAMPLE_SERVER_EVENTS` names a file that gets one line per event:
//! `identified`, `session <id> env <json>`, `reconnecting`, `sigterm`, `exit`.
//!
//! Stdout: `frame <json>` for each frame received, `session <id>` and `env <json>` for a
//! session. It answers a client's offer, pings every 60 s, reconnects with backoff when its
//! socket closes, and exits 0 on SIGTERM or SIGINT after closing its socket.

use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn event(what: &str) {
    if let Some(path) = env("EXAMPLE_SERVER_EVENTS")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(file, "{what}");
    }
}

struct Identity {
    id: String,
    kind: &'static str,
    token: Option<String>,
}

impl Identity {
    fn from_env() -> Option<Self> {
        if let Some(id) = env("ROOM_ID") {
            return Some(Self {
                id,
                kind: "sfu",
                token: env("SFU_TOKEN"),
            });
        }
        let (id, token) = (env("SERVER_ID")?, env("SERVER_TOKEN")?);
        Some(Self {
            id,
            kind: "server",
            token: Some(token),
        })
    }

    fn frame(&self) -> String {
        let mut data = json!({ "id": self.id, "type": self.kind });
        if let Some(token) = &self.token {
            data["token"] = json!(token);
        }
        json!({ "action": "identify", "data": data }).to_string()
    }
}

/// Answers every datagram `ping` with `pong <id>`.
async fn serve_udp(ip: String, id: String) {
    let port: u16 = env("GAME_PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or(7777);
    let socket = match tokio::net::UdpSocket::bind((ip.as_str(), port)).await {
        Ok(socket) => socket,
        Err(e) => return eprintln!("example-server: cannot bind {ip}:{port}/udp: {e}"),
    };
    println!("udp {ip}:{port}");
    let mut buf = [0u8; 1500];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if buf[..n].trim_ascii() == b"ping" {
            let _ = socket.send_to(format!("pong {id}").as_bytes(), from).await;
        }
    }
}

/// What a received frame asks to send back, if anything.
fn answer(frame: &Value, me: &str) -> Option<String> {
    if frame["type"] == "session" {
        // A warm server applies its session: a real game would load the map `env` names.
        let id = frame["id"].as_str().unwrap_or_default();
        println!("session {id}");
        println!("env {}", frame["env"]);
        event(&format!("session {id} env {}", frame["env"]));
    }
    if frame.pointer("/description/type") == Some(&json!("offer")) {
        let sender = frame.get("sender")?.as_str()?;
        let description = json!({ "type": "answer", "sdp": format!("answer-from-{me}") });
        let data = json!({ "type": "producer", "receiver": sender, "description": description });
        return Some(json!({ "action": "handshake", "data": data }).to_string());
    }
    None
}

enum End {
    /// The socket closed (or never opened); whether it had identified.
    Closed(bool),
    Signalled(&'static str),
}

/// One connection: identify, then frames until the socket closes or a signal arrives.
async fn session(url: &str, me: &Identity, signals: &mut (Signal, Signal)) -> End {
    let mut socket = tokio::select! {
        connected = tokio_tungstenite::connect_async(url) => match connected {
            Ok((socket, _)) => socket,
            Err(e) => { eprintln!("example-server: connect {url}: {e}"); return End::Closed(false); }
        },
        _ = signals.0.recv() => return End::Signalled("sigterm"),
        _ = signals.1.recv() => return End::Signalled("sigint"),
    };
    if socket.send(Message::Text(me.frame().into())).await.is_err() {
        return End::Closed(false);
    }
    let mut identified = false;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(60),
    );
    let end = loop {
        let reply = tokio::select! {
            _ = signals.0.recv() => break End::Signalled("sigterm"),
            _ = signals.1.recv() => break End::Signalled("sigint"),
            _ = ping.tick() => Some(json!({ "action": "ping" }).to_string()),
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    println!("frame {frame}");
                    if frame["type"] == "identified" {
                        identified = true;
                        event("identified");
                    }
                    answer(&frame, &me.id)
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Closed(identified),
                Some(Ok(_)) => None,
            },
        };
        if let Some(reply) = reply
            && socket.send(Message::Text(reply.into())).await.is_err()
        {
            return End::Closed(identified);
        }
    };
    // Politely: a close frame, and a short wait for the gateway's answer.
    let _ = tokio::time::timeout(Duration::from_millis(500), socket.close(None)).await;
    end
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (Ok(terminate), Ok(interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("example-server: cannot handle signals");
        std::process::exit(1);
    };
    let mut signals = (terminate, interrupt);
    let identity = Identity::from_env();
    let id = env("SERVER_ID")
        .or_else(|| env("ROOM_ID"))
        .unwrap_or_default();
    if let Some(ip) = env("TASK_IP") {
        tokio::spawn(serve_udp(ip, id));
    }
    let which = match (env("SIGNAL_SERVER_URL"), &identity) {
        (Some(url), Some(me)) => {
            let mut backoff = Duration::from_millis(500);
            loop {
                match session(&url, me, &mut signals).await {
                    End::Signalled(which) => break which,
                    End::Closed(identified) => {
                        if identified {
                            backoff = Duration::from_millis(500);
                        }
                        event("reconnecting");
                        println!("reconnecting in {backoff:?}");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = signals.0.recv() => break "sigterm",
                    _ = signals.1.recv() => break "sigint",
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Nothing to identify as: a server that need not know Switchboard.
        _ => tokio::select! {
            _ = signals.0.recv() => "sigterm",
            _ = signals.1.recv() => "sigint",
        },
    };
    event(which);
    event("exit");
    println!("exit after {which}");
}
