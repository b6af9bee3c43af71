//! Signaling through the local stack over real WebSockets: what one handshake frame costs in
//! DynamoDB requests as rooms and the connection count grow, how many posts one departure
//! makes, and how long a frame takes client to client compared with a plain echo server.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::common::{Bench, Env, Error, HOST_KEY, Item, Peer, median, millis, n, s};
use crate::matching::p99;

/// A host room: its host (identified with its hostId) and `clients` clients.
struct Room {
    host: Peer,
    clients: Vec<(String, Peer)>,
}

async fn host_room(b: &Bench, name: &str, clients: usize) -> Result<Room, Error> {
    let host_id = format!("{name}-host-secret");
    let room_id = format!("{name}-room");
    let (status, body) = b
        .call(
            "POST",
            "/api/host/heartbeat",
            Some(
                json!({"hostId": host_id, "roomId": room_id, "region": "local", "status": "busy"}),
            ),
            Some(HOST_KEY),
        )
        .await?;
    if status != 200 {
        return Err(format!("heartbeat: {status} {body}").into());
    }
    let mut host = Peer::connect(&b.stack.ws_url).await?;
    host.identify(json!({"id": "host", "type": "host", "roomId": room_id, "hostId": host_id}))
        .await?;
    let mut peers = vec![];
    for i in 0..clients {
        let id = format!("client-{i}");
        let mut peer = Peer::connect(&b.stack.ws_url).await?;
        peer.identify(json!({"id": id, "type": "client", "roomId": room_id}))
            .await?;
        peers.push((id, peer));
    }
    Ok(Room {
        host,
        clients: peers,
    })
}

/// Median DynamoDB requests per handshake frame, client to host (addressed by `receiver`).
async fn calls_per_frame(b: &Bench, room: &mut Room, frames: usize) -> Result<f64, Error> {
    let mut calls = vec![];
    for k in 0..frames {
        let before = b.counts();
        let (_, sender) = &mut room.clients[0];
        sender
            .send(
                "handshake",
                json!({"type": "producer", "receiver": "host", "description": {"type": "offer", "sdp": format!("v=0 {k}")}}),
            )
            .await?;
        let frame = room.host.recv_json("a handshake").await?;
        if frame["sender"] != "client-0" {
            return Err(format!("unexpected frame {frame}").into());
        }
        // The handler's DynamoDB reads come before its post; nothing else is running.
        calls.push(b.counts().since(&before).calls() as f64);
    }
    Ok(median(&calls))
}

pub struct Handshake {
    pub calls_2: f64,
    pub calls_50: f64,
    pub calls_10_connections: f64,
    pub calls_10000_connections: f64,
    pub depart_posts_50: usize,
    pub other_connections: usize,
}

/// Connections and memberships of other rooms, written as `join_room` writes them.
fn other_connection(i: usize, expires_at: i64) -> (Item, Item) {
    let room = format!("other-room-{}", i / 50);
    let peer = format!("peer-{i}");
    let connection = format!("other-conn-{i}");
    let conn: Item = [
        ("connectionId", s(&connection)),
        ("roomId", s(&room)),
        ("peerId", s(&peer)),
        ("role", s("client")),
        ("expiresAt", n(expires_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let member: Item = [
        ("roomId", s(&room)),
        ("peerId", s(&peer)),
        ("connectionId", s(&connection)),
        ("role", s("client")),
        ("expiresAt", n(expires_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (conn, member)
}

pub async fn handshake(env: &Env, frames: usize, connections: usize) -> Result<Handshake, Error> {
    // Room of 2 (host + 1 client) among 10 connections in all: 8 more in other rooms.
    let b = env.stack(&[]).await?;
    let mut small = host_room(&b, "small", 1).await?;
    let expires = b.clock.now() + switchboard::model::CONNECTION_TTL_SECONDS;
    let (conns, members): (Vec<Item>, Vec<Item>) =
        (0..8).map(|i| other_connection(i, expires)).unzip();
    env.load(&b.tables().connections, conns).await?;
    env.load(&b.tables().members, members).await?;
    let calls_2 = calls_per_frame(&b, &mut small, frames).await?;
    let calls_10_connections = calls_2;

    // The same room among `connections` connections.
    let (conns, members): (Vec<Item>, Vec<Item>) = (8..connections.max(8) - 2)
        .map(|i| other_connection(i, expires))
        .unzip();
    env.load(&b.tables().connections, conns).await?;
    env.load(&b.tables().members, members).await?;
    let calls_10000_connections = calls_per_frame(&b, &mut small, frames).await?;

    // A room of 50: its host and 49 clients.
    let mut big = host_room(&b, "big", 49).await?;
    let calls_50 = calls_per_frame(&b, &mut big, frames).await?;

    // One client leaves a room of 50: every other member hears it, once.
    let (_, leaver) = big.clients.pop().ok_or("empty room")?;
    leaver.close().await;
    let mut listeners = vec![];
    for (_, mut peer) in big.clients.drain(..) {
        listeners.push(tokio::spawn(async move {
            let heard = departure_notices(&mut peer).await;
            peer.close().await;
            heard
        }));
    }
    let mut host = big.host;
    let host_listener = tokio::spawn(async move { departure_notices(&mut host).await });
    let mut depart_posts_50 = host_listener.await?;
    for listener in listeners {
        depart_posts_50 += listener.await?;
    }
    Ok(Handshake {
        calls_2,
        calls_50,
        calls_10_connections,
        calls_10000_connections,
        depart_posts_50,
        other_connections: connections,
    })
}

pub struct Relay {
    pub relay: Vec<f64>,
    pub direct: Vec<f64>,
}

/// A plain WebSocket echo server on 127.0.0.1: the floor a relay through any server has.
async fn echo_server() -> Result<String, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(url)
}

/// Client to client through the stack (a handshake with `receiver`), and the same frame sent
/// to the echo server, one at a time; milliseconds from send to receipt.
pub async fn relay(env: &Env, frames: usize) -> Result<Relay, Error> {
    let b = env.stack(&[]).await?;
    let mut room = host_room(&b, "relay", 2).await?;
    let (_, mut receiver) = room.clients.pop().ok_or("no receiver")?;
    let (_, mut sender) = room.clients.pop().ok_or("no sender")?;
    let frame = |k: usize| {
        json!({"action": "handshake", "data": {"type": "consumer", "receiver": "client-1",
            "candidate": {"candidate": format!("candidate:{k} 1 udp 2122260223 127.0.0.1 5000{} typ host", k % 10), "sdpMid": "0"}}})
            .to_string()
    };
    let mut relay = vec![];
    for k in 0..frames + 5 {
        let started = Instant::now();
        sender.send_text(frame(k)).await?;
        receiver.recv_json("a relayed frame").await?;
        if k >= 5 {
            relay.push(millis(started.elapsed()));
        }
    }
    let echo = echo_server().await?;
    let mut peer = Peer::connect(&echo).await?;
    let mut direct = vec![];
    for k in 0..frames + 5 {
        let started = Instant::now();
        peer.send_text(frame(k)).await?;
        peer.recv_json("an echo").await?;
        if k >= 5 {
            direct.push(millis(started.elapsed()));
        }
    }
    peer.close().await;
    Ok(Relay { relay, direct })
}

pub fn summary(values: &[f64]) -> (f64, f64) {
    (median(values), p99(values))
}

/// The `clientDisconnect` notices `peer` hears. Bounded: the notice arrives within seconds,
/// then one quiet second ends the count.
async fn departure_notices(peer: &mut Peer) -> usize {
    let mut heard = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let wait = if heard > 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        match peer.recv_within(wait).await {
            Ok(Some(text)) if text.contains("clientDisconnect") => heard += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    heard
}
