//! The room loop: one UDP socket, the signaling task's channels, the room's next timeout,
//! SIGTERM/SIGINT. Everything WebRTC happens in [`crate::room::Room`]; this only moves bytes
//! and time in and out of it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::batch;
use crate::config::Config;
use crate::room::{Room, RoomOptions, Transmit};
use crate::signaling::{self, Identity, Inbound};
use crate::stun;

/// How the process ends.
#[derive(Debug, PartialEq)]
pub enum Exit {
    /// SIGTERM or SIGINT: every peer connection closed.
    Signalled,
    /// The gateway refused the identify. `after_identified`: it had accepted it before (the room
    /// ended while the socket was away).
    Refused { after_identified: bool },
    /// A start-up failure (the socket could not be bound), with the line to print.
    Failed(String),
}

/// Datagrams read in one turn of the loop when more are waiting: what they make the room send
/// goes out together.
const RECEIVE_BATCH: usize = 32;

/// Forwarded packets that make the loop send before reading on: a forwarded packet waits for
/// at most about this many others (a turn of 32 packets into a room of 16 makes 480).
const SEND_AT: usize = 64;

/// STUN binding requests for the server-reflexive address: sent at these offsets from start.
const STUN_RETRIES: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_millis(1500),
    Duration::from_millis(3500),
];

pub async fn run(config: Config, address: IpAddr) -> Exit {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return Exit::Failed("cannot install signal handlers".into());
    };
    let bind = SocketAddr::new(address, config.udp_port);
    let socket = match UdpSocket::bind(bind).await {
        Ok(socket) => socket,
        Err(e) => return Exit::Failed(format!("cannot bind {bind}/udp: {e}")),
    };
    let local = socket.local_addr().unwrap_or(bind);
    // The host candidate is always the task's own address; a public one is offered beside it.
    let mut options = RoomOptions::new(local);
    options.public = config.public_ip.map(|ip| SocketAddr::new(ip, local.port()));
    tracing::info!(%local, public = ?options.public, room = %config.room_id, "SFU listening");
    let mut room = Room::new(options);

    // The server-reflexive address (unless SFU_PUBLIC_IP says it): asked of each STUN server.
    let mut stun_servers = Vec::new();
    if config.public_ip.is_none() {
        for server in &config.stun_servers {
            match tokio::net::lookup_host(server.as_str()).await {
                Ok(mut addrs) => {
                    if let Some(addr) = addrs.find(|a| a.is_ipv4() == local.is_ipv4()) {
                        stun_servers.push(addr);
                    }
                }
                Err(e) => tracing::warn!(%server, error = %e, "STUN server does not resolve"),
            }
        }
    }
    let transaction: [u8; 12] = rand::random();
    let started = tokio::time::Instant::now();
    let mut stun_sent = 0;
    let mut srflx_known = stun_servers.is_empty();

    let (inbound_tx, mut inbound) = mpsc::unbounded_channel();
    let (outbound, outbound_rx) = mpsc::unbounded_channel();
    let identity = Identity {
        url: config.signal_url.clone(),
        room_id: config.room_id.clone(),
        token: config.token.clone(),
    };
    let signaling = tokio::spawn(signaling::run(identity, inbound_tx, outbound_rx));

    let mut buf = vec![0u8; 2048];
    let mut outgoing = Vec::new();
    let exit = loop {
        let now = Instant::now();
        let wake = room
            .next_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let stun_due = (!srflx_known && stun_sent < STUN_RETRIES.len())
            .then(|| started + STUN_RETRIES[stun_sent]);
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => {
                    let mut next = Some((n, source));
                    let mut read = 0;
                    while let Some((n, source)) = next.take() {
                        let packet = &buf[..n];
                        if !srflx_known && stun_servers.contains(&source)
                            && let Some(mapped) = stun::binding_response(packet, &transaction)
                        {
                            srflx_known = true;
                            tracing::info!(%mapped, "server-reflexive address");
                            room.add_server_reflexive(mapped);
                        } else {
                            // The turn's packets are written to their receivers, each polled
                            // once for all of them (Room::receive), unless that grows long.
                            room.receive(Instant::now(), source, packet);
                            if room.writes_pending() >= SEND_AT {
                                room.flush(Instant::now());
                                send_transmits(&mut room, &socket, &mut outgoing).await;
                            }
                        }
                        read += 1;
                        if read < RECEIVE_BATCH {
                            next = socket.try_recv_from(&mut buf).ok();
                        }
                    }
                    room.flush(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "UDP receive failed"),
            },
            frame = inbound.recv() => match frame {
                Some(Inbound::Frame(frame)) => room.handle_frame(Instant::now(), &frame),
                Some(Inbound::Identified { again }) => {
                    if again {
                        tracing::info!("identified again on a new socket; the room goes on");
                    }
                }
                Some(Inbound::Refused { after_identified, frame }) => {
                    tracing::error!(%frame, "the gateway refused the identify: the room has ended");
                    break Exit::Refused { after_identified };
                }
                None => break Exit::Failed("the signaling task ended".into()),
            },
            _ = tokio::time::sleep(wake) => room.handle_timeout(Instant::now()),
            _ = async {
                match stun_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {
                stun_sent += 1;
                let request = stun::binding_request(transaction);
                for server in &stun_servers {
                    if let Err(e) = socket.send_to(&request, server).await {
                        tracing::warn!(%server, error = %e, "STUN binding request failed");
                    }
                }
            },
            _ = terminate.recv() => break Exit::Signalled,
            _ = interrupt.recv() => break Exit::Signalled,
        }
        send_transmits(&mut room, &socket, &mut outgoing).await;
        while let Some(frame) = room.poll_frame() {
            if outbound.send(frame.to_string()).is_err() {
                break;
            }
        }
    };
    room.close_all();
    while let Some(transmit) = room.poll_transmit() {
        let _ = socket
            .send_to(&transmit.contents, transmit.destination)
            .await;
    }
    // Closing the channel ends the signaling task, which closes its socket.
    drop(outbound);
    let _ = tokio::time::timeout(Duration::from_secs(1), signaling).await;
    exit
}

/// Sends every datagram the room has to send (`outgoing`: a buffer kept between calls).
async fn send_transmits(room: &mut Room, socket: &UdpSocket, outgoing: &mut Vec<Transmit>) {
    outgoing.extend(std::iter::from_fn(|| room.poll_transmit()));
    batch::send_all(socket, outgoing).await;
    outgoing.clear();
}
