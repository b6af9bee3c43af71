//! The room core, sans-IO. It owns every peer connection of the room (a str0m [`Rtc`] each):
//! one *producer* per participant (the participant offers; it carries the participant's audio,
//! video and the `chat`/`features` data channels) and one *consumer* per (receiver, sender)
//! pair (the SFU offers; it carries the sender's tracks to the receiver).
//!
//! Inputs: signaling frames ([`Room::handle_frame`]), datagrams ([`Room::handle_datagram`]),
//! time ([`Room::handle_timeout`]). Outputs: datagrams to send ([`Room::poll_transmit`]) and
//! signaling frames to send ([`Room::poll_frame`]).
//!
//! A datagram finds its peer by lookup, never by asking every `Rtc`: a STUN binding request
//! names the SFU-side ufrag in its USERNAME (`sfu_ufrag:remote_ufrag`), which maps to one peer,
//! and the request's source address is then remembered for that peer; every other datagram
//! (DTLS, SRTP, SRTCP, STUN answers) is routed by its source address.
//!
//! Media: every `Rtc` is in str0m's RTP mode. Each RTP packet a producer receives (decrypted,
//! never depacketized or decoded) is written as it comes to the matching track of every consumer
//! carrying that producer, with that leg's SSRC, payload type and sequence numbers (contiguous
//! from the packet the leg started at; the RTP timestamp is kept); str0m encrypts it for that
//! receiver. A consumer's video starts at the first packet of a keyframe. Keyframes: a consumer
//! that connects, or a consumer's PLI/FIR, asks the producer for a keyframe (at most one request
//! per track per 500 ms). NACKs stay on their leg: str0m asks the publisher for what the SFU
//! lost (a repaired packet is forwarded when it arrives), and answers a receiver's NACK from its
//! own send buffer.
//!
//! Isolation: every call into one peer's `Rtc` runs inside `catch_unwind`; a peer whose `Rtc`
//! errs or panics is dropped (a producer with its whole participant), and nothing else is. A
//! consumer that fails (never connects, loses ICE, errs) is offered again on a new connection at
//! the next housekeeping, up to three times in a row, so a receiver does not silently lose a
//! participant who is still in the room.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{
    Extension, ExtensionMap, ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc, Vp8Descriptor,
};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

use crate::stun;

/// How many times in a row a consumer is offered before the SFU gives up on that pair.
const CONSUMER_OFFERS: u32 = 3;

/// The negotiated data channels of a producer connection: label and SCTP stream id.
pub const CHANNELS: [(&str, u16); 2] = [("chat", 100), ("features", 110)];

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct RoomOptions {
    /// The socket's own address: the host candidate, and where datagrams arrive.
    pub local: SocketAddr,
    /// A public address that maps to `local` (`SFU_PUBLIC_IP`): offered as a server-reflexive
    /// candidate next to the host one.
    pub public: Option<SocketAddr>,
    /// A peer whose ICE has been disconnected this long is dropped.
    pub ice_timeout: Duration,
    /// A peer connection that has not connected this long after it was made is dropped (a
    /// consumer offer never answered, a producer that never reaches the SFU).
    pub connect_timeout: Duration,
    /// Candidates kept for a producer whose offer has not arrived yet, per client, and clients.
    pub early_candidates: usize,
    pub early_clients: usize,
}

impl RoomOptions {
    pub fn new(local: SocketAddr) -> Self {
        Self {
            local,
            public: None,
            ice_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(30),
            early_candidates: 32,
            early_clients: 256,
        }
    }
}

type PeerId = u64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Producer(String),
    Consumer { receiver: String, remote: String },
}

impl PeerKey {
    /// The participants this connection belongs to.
    fn involves(&self, client: &str) -> bool {
        match self {
            PeerKey::Producer(c) => c == client,
            PeerKey::Consumer { receiver, remote } => receiver == client || remote == client,
        }
    }
}

/// A track a producer receives from its participant.
#[derive(Clone, Debug)]
struct Track {
    mid: Mid,
    kind: MediaKind,
    /// With simulcast, the one layer forwarded (the first seen).
    rid: Option<Rid>,
    last_keyframe_request: Option<Instant>,
    /// The payload type last received and its codec.
    params: Option<PayloadParams>,
    /// The RTP timestamp of the last packet received: a packet with another one starts a frame.
    last_timestamp: Option<u32>,
}

/// A producer track carried by a consumer: (producer mid, consumer mid).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Forward {
    from: Mid,
    to: Mid,
    kind: MediaKind,
    /// Once started: the producer's SSRC and the offset from its extended sequence numbers to
    /// this leg's (`out = in + offset`). Video starts at a keyframe: until one passes, nothing is
    /// forwarded (a decoder cannot use delta frames). A new producer SSRC starts again.
    origin: Option<(Ssrc, i64)>,
    /// The first sequence number of this leg since the last start, and the highest sent.
    first_out: u64,
    last_out: u64,
    /// The last payload type mapping used: (producer's, this leg's).
    pt_map: Option<(Pt, Pt)>,
}

impl Forward {
    fn new(from: Mid, to: Mid, kind: MediaKind) -> Self {
        Self {
            from,
            to,
            kind,
            origin: None,
            first_out: 0,
            last_out: 0,
            pt_map: None,
        }
    }
}

/// One RTP packet a producer received, as every consumer leg needs it.
struct Packet {
    mid: Mid,
    params: PayloadParams,
    ssrc: Ssrc,
    seq_no: SeqNo,
    timestamp: u32,
    marker: bool,
    ext_vals: ExtensionValues,
    payload: Arc<[u8]>,
    arrived: Instant,
    /// The first packet of a video keyframe.
    keyframe_start: bool,
}

struct Peer {
    key: PeerKey,
    rtc: Rtc,
    created: Instant,
    /// When the Rtc next wants `Input::Timeout`: its entry in [`Room::timers`] (None: none, it
    /// is being polled).
    timeout: Option<Instant>,
    /// In [`Room::dirty`], waiting to be polled.
    queued: bool,
    /// In [`Room::written`]: forwarded packets wait in its send stream.
    written: bool,
    connected: bool,
    ice_lost_since: Option<Instant>,
    // Producer side.
    tracks: Vec<Track>,
    channels: HashMap<ChannelId, &'static str>,
    // Consumer side.
    pending: Option<SdpPendingOffer>,
    negotiating: Vec<Forward>,
    forwards: Vec<Forward>,
}

/// What polling one peer asks of the room.
enum Effect {
    TracksAdded(String),
    Rtp(PeerId, Box<Packet>),
    Keyframe {
        client: String,
        mid: Mid,
        kind: KeyframeRequestKind,
    },
    ConsumerConnected(PeerId),
    Channel {
        from: String,
        label: &'static str,
        binary: bool,
        data: Vec<u8>,
    },
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomStats {
    pub producers: usize,
    pub consumers: usize,
}

pub struct Room {
    options: RoomOptions,
    local_candidates: Vec<Candidate>,
    /// By id (ids are the room's own counter: a fast hash is safe).
    peers: FxHashMap<PeerId, Peer>,
    next_id: PeerId,
    by_key: HashMap<PeerKey, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Consumers carrying each participant's media.
    consumers_of: HashMap<String, HashSet<PeerId>>,
    early: HashMap<String, Vec<Candidate>>,
    /// Consumers that failed (never connected, ICE gone, refused), by (receiver, remote): how
    /// many times in a row, and whether an offer again is due at the next housekeeping.
    failed_consumers: HashMap<(String, String), (u32, bool)>,
    /// Each peer's next timeout, earliest first: one entry per peer, moved when it changes (a
    /// forwarded packet polls every receiver, and most polls leave the timeout where it was).
    timers: BTreeSet<(Instant, PeerId)>,
    next_housekeeping: Option<Instant>,
    dirty: VecDeque<PeerId>,
    /// Consumers with forwarded packets written and not yet polled, and how many packets: a
    /// batch of datagrams is written to each consumer before it is polled once (str0m handles
    /// a timeout for each poll after a write, a cost per poll rather than per packet).
    written: Vec<PeerId>,
    writes_pending: usize,
    transmits: VecDeque<Transmit>,
    frames: VecDeque<Value>,
}

fn fenced<T>(what: &str, key: &PeerKey, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(_) => {
            panicked(what, key);
            None
        }
    }
}

fn panicked(what: &str, key: &PeerKey) {
    tracing::error!(?key, what, "str0m panicked; dropping this peer connection");
}

/// `rtc.poll_output()`, except that a timeout str0m asks for at once (packets written to a
/// send stream leave on its next timeout) is given here, so they go out in this turn rather
/// than at the next timer; at most twice per `due` count, so a peer that keeps asking cannot
/// hold the loop.
pub(crate) fn poll_output(rtc: &mut Rtc, now: Instant, due: &mut u32) -> Result<Output, RtcError> {
    loop {
        match rtc.poll_output()? {
            Output::Timeout(t) if t <= now && *due < 2 => {
                *due += 1;
                rtc.handle_input(Input::Timeout(now))?;
            }
            output => return Ok(output),
        }
    }
}

impl Peer {
    /// [`fenced`] for a call into this peer: logs with its key when the call panics, without a
    /// copy of the key for every call (polls and writes run for every forwarded packet).
    fn fenced<T>(&mut self, what: &str, f: impl FnOnce(&mut Peer) -> T) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(value) => Some(value),
            Err(_) => {
                panicked(what, &self.key);
                None
            }
        }
    }
}

/// `{candidate, sdpMid, sdpMLineIndex}` (or a bare string) → a str0m candidate. `Ok(None)`: the
/// end-of-candidates marker (an empty candidate).
fn parse_candidate(value: &Value) -> Result<Option<Candidate>, String> {
    let text = match value {
        Value::String(s) => s.as_str(),
        Value::Object(o) => match o.get("candidate") {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Null) | None => return Ok(None),
            Some(other) => return Err(format!("candidate is not a string: {other}")),
        },
        Value::Null => return Ok(None),
        other => return Err(format!("not a candidate: {other}")),
    };
    let text = text.trim();
    let text = text.strip_prefix("a=").unwrap_or(text);
    if text.is_empty() {
        return Ok(None);
    }
    Candidate::from_sdp_string(text)
        .map(Some)
        .map_err(|e| format!("{e}"))
}

/// The `{type, sdp}` of a description, if `type` is `want`.
fn description_sdp<'a>(description: &'a Value, want: &str) -> Result<&'a str, String> {
    let kind = description.get("type").and_then(Value::as_str);
    if kind != Some(want) {
        return Err(format!("expected an {want}, got type {kind:?}"));
    }
    description
        .get("sdp")
        .and_then(Value::as_str)
        .ok_or_else(|| "no sdp".to_string())
}

/// The ICE ufrag an SDP declares (ours, or the SFU's to a test participant).
pub(crate) fn sdp_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|u| u.trim().to_string())
}

impl Room {
    pub fn new(options: RoomOptions) -> Self {
        let mut local_candidates = Vec::new();
        match Candidate::host(options.local, "udp") {
            Ok(c) => local_candidates.push(c),
            Err(e) => {
                tracing::error!(local = %options.local, error = %e, "no host candidate")
            }
        }
        if let Some(public) = options.public.filter(|p| *p != options.local) {
            match Candidate::server_reflexive(public, options.local, "udp") {
                Ok(c) => local_candidates.push(c),
                Err(e) => tracing::error!(%public, error = %e, "no public candidate"),
            }
        }
        Self {
            options,
            local_candidates,
            peers: FxHashMap::default(),
            next_id: 1,
            by_key: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            consumers_of: HashMap::new(),
            early: HashMap::new(),
            failed_consumers: HashMap::new(),
            timers: BTreeSet::new(),
            next_housekeeping: None,
            dirty: VecDeque::new(),
            written: Vec::new(),
            writes_pending: 0,
            transmits: VecDeque::new(),
            frames: VecDeque::new(),
        }
    }

    /// The server-reflexive address learned from a STUN server: offered on every peer
    /// connection made from now on.
    pub fn add_server_reflexive(&mut self, mapped: SocketAddr) {
        if mapped == self.options.local || Some(mapped) == self.options.public {
            return;
        }
        match Candidate::server_reflexive(mapped, self.options.local, "udp") {
            Ok(c) => self.local_candidates.push(c),
            Err(e) => tracing::warn!(%mapped, error = %e, "no server-reflexive candidate"),
        }
    }

    pub fn stats(&self) -> RoomStats {
        let producers = self
            .peers
            .values()
            .filter(|p| matches!(p.key, PeerKey::Producer(_)))
            .count();
        RoomStats {
            producers,
            consumers: self.peers.len() - producers,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next frame to send on the signaling socket (`{"action":"handshake",...}`).
    pub fn poll_frame(&mut self) -> Option<Value> {
        self.frames.pop_front()
    }

    /// When the room next needs [`Room::handle_timeout`].
    pub fn next_timeout(&mut self) -> Option<Instant> {
        let timer = self.timers.first().map(|(at, _)| *at);
        match (timer, self.next_housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send(&mut self, data: Value) {
        self.frames
            .push_back(json!({ "action": "handshake", "data": data }));
    }

    // ---------------------------------------------------------------- signaling

    /// One frame from the gateway.
    pub fn handle_frame(&mut self, now: Instant, frame: &Value) {
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or("");
        let sender = frame.get("sender").and_then(Value::as_str);
        match (kind, sender) {
            ("producer", Some(client)) => {
                if let Some(description) = frame.get("description") {
                    self.producer_description(now, client, description);
                } else if let Some(candidate) = frame.get("candidate") {
                    self.producer_candidate(client, candidate);
                } else {
                    tracing::warn!(%client, "producer frame without description or candidate");
                }
            }
            ("consumer", Some(client)) => {
                let Some(remote) = frame.get("remotePeerId").and_then(Value::as_str) else {
                    tracing::warn!(%client, "consumer frame without remotePeerId");
                    return;
                };
                let key = PeerKey::Consumer {
                    receiver: client.to_string(),
                    remote: remote.to_string(),
                };
                if let Some(description) = frame.get("description") {
                    self.consumer_answer(now, key, description);
                } else if let Some(candidate) = frame.get("candidate") {
                    self.consumer_candidate(key, candidate);
                } else {
                    tracing::warn!(%client, "consumer frame without description or candidate");
                }
            }
            ("clientDisconnect", _) => match frame.get("clientId").and_then(Value::as_str) {
                Some(client) => {
                    tracing::info!(%client, "client left");
                    self.remove_client(client);
                }
                None => tracing::warn!(%frame, "clientDisconnect without clientId"),
            },
            ("sfuDisconnect", _) => tracing::info!(%frame, "sfuDisconnect"),
            ("error", _) => tracing::warn!(%frame, "error frame from the gateway"),
            ("pong", _) | ("identified", _) => {}
            _ => tracing::warn!(%frame, "unexpected frame; ignored"),
        }
        self.drain(now);
    }

    /// A producer's connection (`consumer` false) or a consumer's.
    fn new_rtc(&self, now: Instant, consumer: bool) -> Rtc {
        // RTP mode: packets are forwarded as they come, never reassembled into frames. The codecs
        // are the ones the SFU can start a receiver at a keyframe of.
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true);
        if consumer {
            // A consumer's media is sent by the SFU, which estimates no bandwidth: transport-wide
            // congestion control feedback would cost both ends per packet for nothing. (A
            // producer's keeps it: the browser sending there adapts its bitrate by it.)
            let mut extensions = ExtensionMap::empty();
            for (id, extension) in ExtensionMap::standard().iter() {
                if !matches!(extension, Extension::TransportSequenceNumber) {
                    extensions.set(id, extension.clone());
                }
            }
            config = config.set_extension_map(extensions);
        }
        let mut rtc = config.build(now);
        for candidate in &self.local_candidates {
            rtc.add_local_candidate(candidate.clone());
        }
        rtc
    }

    fn insert_peer(
        &mut self,
        now: Instant,
        key: PeerKey,
        rtc: Rtc,
        ufrag: Option<String>,
    ) -> PeerId {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(ufrag) = ufrag {
            self.by_ufrag.insert(ufrag, id);
        }
        if let PeerKey::Consumer { remote, .. } = &key {
            self.consumers_of
                .entry(remote.clone())
                .or_default()
                .insert(id);
        }
        self.by_key.insert(key.clone(), id);
        self.peers.insert(
            id,
            Peer {
                key,
                rtc,
                created: now,
                timeout: None,
                queued: false,
                written: false,
                connected: false,
                ice_lost_since: None,
                tracks: Vec::new(),
                channels: HashMap::new(),
                pending: None,
                negotiating: Vec::new(),
                forwards: Vec::new(),
            },
        );
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + Duration::from_secs(1));
        }
        self.mark(id);
        id
    }

    fn producer_description(&mut self, now: Instant, client: &str, description: &Value) {
        let offer = match description_sdp(description, "offer")
            .and_then(|sdp| SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string()))
        {
            Ok(offer) => offer,
            Err(e) => {
                tracing::warn!(%client, error = %e, "producer offer refused");
                return;
            }
        };
        let key = PeerKey::Producer(client.to_string());
        if let Some(&id) = self.by_key.get(&key) {
            // A renegotiation (a track added or removed).
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let answer = fenced("accept_offer", &key, || {
                peer.rtc.sdp_api().accept_offer(offer)
            });
            match answer {
                Some(Ok(answer)) => {
                    self.send(json!({ "type": "producer", "receiver": client,
                        "description": { "type": "answer", "sdp": answer.to_sdp_string() } }));
                    self.mark(id);
                }
                Some(Err(e)) => {
                    tracing::warn!(%client, error = %e, "producer renegotiation refused")
                }
                None => self.remove_client(client),
            }
            return;
        }
        let mut rtc = self.new_rtc(now, false);
        let answer = fenced("accept_offer", &key, || {
            let answer = rtc.sdp_api().accept_offer(offer)?;
            let mut channels = HashMap::new();
            for (label, stream) in CHANNELS {
                let id = rtc.direct_api().create_data_channel(ChannelConfig {
                    label: label.to_string(),
                    negotiated: Some(stream),
                    ..Default::default()
                });
                channels.insert(id, label);
            }
            Ok::<_, str0m::RtcError>((answer, channels))
        });
        let (answer, channels) = match answer {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => {
                tracing::warn!(%client, error = %e, "producer offer refused");
                return;
            }
            None => return,
        };
        let sdp = answer.to_sdp_string();
        let id = self.insert_peer(now, key, rtc, sdp_ufrag(&sdp));
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.channels = channels;
        }
        tracing::info!(%client, "producer connection answered");
        self.send(json!({ "type": "producer", "receiver": client,
            "description": { "type": "answer", "sdp": sdp } }));
        for candidate in self.early.remove(client).unwrap_or_default() {
            self.add_remote_candidate(id, candidate);
        }
        // Catch-up: everyone already sending.
        let senders: Vec<String> = self
            .peers
            .values()
            .filter_map(|p| match &p.key {
                PeerKey::Producer(c) if c != client && !p.tracks.is_empty() => Some(c.clone()),
                _ => None,
            })
            .collect();
        for sender in senders {
            self.ensure_consumer(now, client, &sender);
        }
    }

    fn add_remote_candidate(&mut self, id: PeerId, candidate: Candidate) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let addr = candidate.addr();
        if peer
            .fenced("add_remote_candidate", |peer| {
                peer.rtc.add_remote_candidate(candidate)
            })
            .is_none()
        {
            self.drop_peer(id);
            return;
        }
        // A hint until a STUN request from the address says whose it is.
        self.by_addr.entry(addr).or_insert(id);
        self.mark(id);
    }

    fn producer_candidate(&mut self, client: &str, value: &Value) {
        let candidate = match parse_candidate(value) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%client, error = %e, "producer candidate refused");
                return;
            }
        };
        match self.by_key.get(&PeerKey::Producer(client.to_string())) {
            Some(&id) => self.add_remote_candidate(id, candidate),
            None => {
                // Before its offer: kept (bounded) for when the offer arrives.
                if !self.early.contains_key(client)
                    && self.early.len() >= self.options.early_clients
                {
                    tracing::warn!(%client, "too many clients with early candidates; dropped");
                    return;
                }
                let kept = self.early.entry(client.to_string()).or_default();
                if kept.len() < self.options.early_candidates {
                    kept.push(candidate);
                } else {
                    tracing::warn!(%client, "too many early candidates; dropped");
                }
            }
        }
    }

    fn consumer_candidate(&mut self, key: PeerKey, value: &Value) {
        let candidate = match parse_candidate(value) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(?key, error = %e, "consumer candidate refused");
                return;
            }
        };
        match self.by_key.get(&key) {
            Some(&id) => self.add_remote_candidate(id, candidate),
            None => tracing::warn!(
                ?key,
                "candidate for an unknown consumer connection; dropped"
            ),
        }
    }

    fn consumer_answer(&mut self, now: Instant, key: PeerKey, description: &Value) {
        let Some(&id) = self.by_key.get(&key) else {
            tracing::warn!(?key, "answer for an unknown consumer connection; dropped");
            return;
        };
        let answer = match description_sdp(description, "answer")
            .and_then(|sdp| SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string()))
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(?key, error = %e, "consumer answer refused");
                return;
            }
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(pending) = peer.pending.take() else {
            tracing::warn!(?key, "consumer answer without an offer pending; dropped");
            return;
        };
        match fenced("accept_answer", &key, || {
            peer.rtc.sdp_api().accept_answer(pending, answer)
        }) {
            Some(Ok(())) => {
                let negotiated: Vec<Forward> = peer.negotiating.drain(..).collect();
                peer.forwards.extend(negotiated);
                self.mark(id);
                // Tracks the sender added meanwhile.
                if let PeerKey::Consumer { receiver, remote } = key {
                    self.ensure_consumer(now, &receiver, &remote);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(?key, error = %e, "consumer answer does not fit the offer; dropping the connection");
                self.drop_peer(id);
            }
            None => self.drop_peer(id),
        }
    }

    /// Offers `receiver` a consumer connection for `remote`'s tracks (or the tracks it lacks).
    fn ensure_consumer(&mut self, now: Instant, receiver: &str, remote: &str) {
        if receiver == remote {
            return;
        }
        let Some(producer) = self
            .by_key
            .get(&PeerKey::Producer(remote.to_string()))
            .and_then(|id| self.peers.get(id))
        else {
            return;
        };
        let tracks: Vec<(Mid, MediaKind)> =
            producer.tracks.iter().map(|t| (t.mid, t.kind)).collect();
        if tracks.is_empty()
            || !self
                .by_key
                .contains_key(&PeerKey::Producer(receiver.to_string()))
        {
            return;
        }
        let key = PeerKey::Consumer {
            receiver: receiver.to_string(),
            remote: remote.to_string(),
        };
        let existing = self.by_key.get(&key).copied();
        let (mut rtc, id) = match existing {
            Some(id) => {
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                if peer.pending.is_some() {
                    return; // asked again when the answer comes
                }
                let carried: Vec<Mid> = peer.forwards.iter().map(|f| f.from).collect();
                if tracks.iter().all(|(mid, _)| carried.contains(mid)) {
                    return;
                }
                // Renegotiate on the existing connection.
                let mut change = peer.rtc.sdp_api();
                let mut added = Vec::new();
                for (mid, kind) in &tracks {
                    if !carried.contains(mid) {
                        let to = change.add_media(
                            *kind,
                            Direction::SendOnly,
                            Some(remote.to_string()),
                            None,
                            None,
                        );
                        added.push(Forward::new(*mid, to, *kind));
                    }
                }
                let applied = fenced("apply", &key, || change.apply());
                match applied {
                    Some(Some((offer, pending))) => {
                        peer.pending = Some(pending);
                        peer.negotiating = added;
                        let sdp = offer.to_sdp_string();
                        self.send(json!({ "type": "consumer", "receiver": receiver, "remotePeerId": remote,
                            "description": { "type": "offer", "sdp": sdp } }));
                        self.mark(id);
                    }
                    Some(None) => {}
                    None => self.drop_peer(id),
                }
                return;
            }
            None => (self.new_rtc(now, true), None::<PeerId>),
        };
        let _ = id;
        let offered = fenced("offer", &key, || {
            let mut change = rtc.sdp_api();
            let mut added = Vec::new();
            for (mid, kind) in &tracks {
                let to = change.add_media(
                    *kind,
                    Direction::SendOnly,
                    Some(remote.to_string()),
                    None,
                    None,
                );
                added.push(Forward::new(*mid, to, *kind));
            }
            change
                .apply()
                .map(|(offer, pending)| (offer, pending, added))
        });
        let Some(Some((offer, pending, added))) = offered else {
            tracing::warn!(?key, "no consumer offer");
            return;
        };
        let sdp = offer.to_sdp_string();
        let id = self.insert_peer(now, key, rtc, sdp_ufrag(&sdp));
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.pending = Some(pending);
            peer.negotiating = added;
        }
        tracing::info!(%receiver, %remote, "consumer offered");
        self.send(
            json!({ "type": "consumer", "receiver": receiver, "remotePeerId": remote,
            "description": { "type": "offer", "sdp": sdp } }),
        );
    }

    // ---------------------------------------------------------------- leaving

    /// The participant's producer and every consumer carrying it or for it.
    pub fn remove_client(&mut self, client: &str) {
        self.early.remove(client);
        self.failed_consumers
            .retain(|(receiver, remote), _| receiver != client && remote != client);
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.key.involves(client))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove_peer(id);
        }
        self.consumers_of.remove(client);
    }

    /// A peer connection that failed: a producer takes its participant with it; a consumer is
    /// offered again at the next housekeeping (up to [`CONSUMER_OFFERS`] times in a row), so
    /// its receiver does not lose that participant for the rest of the call.
    fn drop_peer(&mut self, id: PeerId) {
        match self.peers.get(&id).map(|p| p.key.clone()) {
            Some(PeerKey::Producer(client)) => self.remove_client(&client),
            Some(PeerKey::Consumer { receiver, remote }) => {
                self.remove_peer(id);
                let failed = self
                    .failed_consumers
                    .entry((receiver.clone(), remote.clone()))
                    .or_insert((0, false));
                failed.0 += 1;
                failed.1 = failed.0 < CONSUMER_OFFERS;
                if !failed.1 {
                    tracing::warn!(%receiver, %remote, "consumer failed {CONSUMER_OFFERS} times; not offered again");
                }
            }
            None => {}
        }
    }

    fn remove_peer(&mut self, id: PeerId) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if let Some(at) = peer.timeout {
            self.timers.remove(&(at, id));
        }
        let _ = peer.fenced("disconnect", |peer| peer.rtc.disconnect());
        let key = peer.key;
        self.by_key.remove(&key);
        self.by_ufrag.retain(|_, v| *v != id);
        self.by_addr.retain(|_, v| *v != id);
        if let PeerKey::Consumer { remote, .. } = &key
            && let Some(set) = self.consumers_of.get_mut(remote)
        {
            set.remove(&id);
        }
        tracing::info!(?key, "peer connection closed");
    }

    /// SIGTERM: every peer connection closed.
    pub fn close_all(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove_peer(id);
        }
    }

    // ---------------------------------------------------------------- network and time

    /// A datagram from the socket, and everything it leads to.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        self.receive(now, source, contents);
        self.flush(now);
    }

    /// A datagram from the socket, one of a batch: the RTP it forwards waits in the receivers'
    /// send streams until [`Room::flush`] (or any other input) polls them.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        let id = match stun::request_ufrag(contents) {
            Some(ufrag) => {
                let Some(&id) = self.by_ufrag.get(ufrag) else {
                    tracing::debug!(%source, ufrag, "STUN for an unknown ufrag; dropped");
                    return;
                };
                self.by_addr.insert(source, id);
                id
            }
            None => match self.by_addr.get(&source) {
                Some(&id) => id,
                None => {
                    tracing::debug!(%source, "datagram from an unknown address; dropped");
                    return;
                }
            },
        };
        let Ok(contents) = contents.try_into() else {
            tracing::debug!(%source, "datagram str0m does not read; dropped");
            return;
        };
        let destination = self.options.local;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        match peer.fenced("handle_input", |peer| peer.rtc.handle_input(input)) {
            Some(Ok(())) => self.mark(id),
            Some(Err(e)) => {
                tracing::warn!(key = ?peer.key, error = %e, "input refused");
                self.mark(id);
            }
            None => self.drop_peer(id),
        }
        self.drain_inputs(now);
    }

    /// Forwarded packets written since the last flush (see [`Room::receive`]).
    pub fn writes_pending(&self) -> usize {
        self.writes_pending
    }

    /// Polls the receivers of what [`Room::receive`] forwarded, so it can be sent.
    pub fn flush(&mut self, now: Instant) {
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.first().copied() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.timeout = None;
            match peer.fenced("timeout", |peer| peer.rtc.handle_input(Input::Timeout(now))) {
                Some(Ok(())) => self.mark(id),
                Some(Err(e)) => {
                    tracing::warn!(key = ?peer.key, error = %e, "timeout failed; dropping");
                    self.drop_peer(id);
                }
                None => self.drop_peer(id),
            }
        }
        if self.next_housekeeping.is_some_and(|t| t <= now) {
            self.housekeeping(now);
            self.next_housekeeping = (!self.peers.is_empty()).then(|| now + Duration::from_secs(1));
        }
        self.drain(now);
    }

    /// Drops connections whose ICE is gone too long, or that never connected.
    fn housekeeping(&mut self, now: Instant) {
        let stale: Vec<(PeerId, &'static str)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                if p.ice_lost_since
                    .is_some_and(|t| now.duration_since(t) >= self.options.ice_timeout)
                {
                    Some((*id, "ICE gone"))
                } else if !p.connected
                    && now.duration_since(p.created) >= self.options.connect_timeout
                {
                    Some((*id, "never connected"))
                } else if !p.rtc.is_alive() {
                    Some((*id, "closed"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in stale {
            if let Some(p) = self.peers.get(&id) {
                tracing::info!(key = ?p.key, why, "dropping peer connection");
            }
            self.drop_peer(id);
        }
        let due: Vec<(String, String)> = self
            .failed_consumers
            .iter_mut()
            .filter(|(_, (_, due))| *due)
            .map(|(pair, (_, due))| {
                *due = false;
                pair.clone()
            })
            .collect();
        for (receiver, remote) in due {
            tracing::info!(%receiver, %remote, "offering a failed consumer again");
            self.ensure_consumer(now, &receiver, &remote);
        }
    }

    fn mark(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id)
            && !peer.queued
        {
            peer.queued = true;
            self.dirty.push_back(id);
        }
    }

    /// Polls every peer that had input until it only waits, and applies what it asked for,
    /// then the receivers of what was forwarded (until both settle).
    fn drain(&mut self, now: Instant) {
        self.drain_inputs(now);
        while !self.written.is_empty() {
            self.writes_pending = 0;
            for id in std::mem::take(&mut self.written) {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.written = false;
                }
                self.mark(id);
            }
            self.drain_inputs(now);
        }
        self.writes_pending = 0;
    }

    /// Polls every peer that had input until it only waits, and applies what it asked for.
    /// Consumers that were only written to wait in [`Room::written`].
    fn drain_inputs(&mut self, now: Instant) {
        let mut rounds = 0;
        while let Some(id) = self.dirty.pop_front() {
            rounds += 1;
            if rounds > 100_000 {
                tracing::error!("room loop did not settle; deferring");
                self.dirty.push_front(id);
                break;
            }
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.queued = false;
            }
            let effects = self.poll_peer(now, id);
            for effect in effects {
                self.apply(now, effect);
            }
        }
    }

    fn poll_peer(&mut self, now: Instant, id: PeerId) -> Vec<Effect> {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Vec::new();
        };
        let transmits = &mut self.transmits;
        let mut effects = Vec::new();
        let polled = peer.fenced("poll_output", |peer| {
            let mut due = 0;
            for _ in 0..10_000 {
                match poll_output(&mut peer.rtc, now, &mut due) {
                    Ok(Output::Timeout(t)) => return Ok(Some(t)),
                    Ok(Output::Transmit(t)) => transmits.push_back(Transmit {
                        destination: t.destination,
                        contents: t.contents.into(),
                    }),
                    Ok(Output::Event(event)) => peer_event(id, peer, now, event, &mut effects),
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        });
        match polled {
            Some(Ok(Some(t))) => {
                let peer_alive = peer.rtc.is_alive();
                if peer.timeout != Some(t) {
                    if let Some(old) = peer.timeout.replace(t) {
                        self.timers.remove(&(old, id));
                    }
                    self.timers.insert((t, id));
                }
                if !peer_alive {
                    tracing::info!(key = ?peer.key, "peer connection closed by its remote");
                    self.drop_peer(id);
                }
            }
            Some(Ok(None)) => self.mark(id),
            Some(Err(e)) => {
                tracing::warn!(key = ?peer.key, error = %e, "peer connection failed; dropping");
                self.drop_peer(id);
            }
            None => self.drop_peer(id),
        }
        effects
    }

    fn apply(&mut self, now: Instant, effect: Effect) {
        match effect {
            Effect::TracksAdded(client) => {
                let receivers: Vec<String> = self
                    .peers
                    .values()
                    .filter_map(|p| match &p.key {
                        PeerKey::Producer(c) if *c != client => Some(c.clone()),
                        _ => None,
                    })
                    .collect();
                for receiver in receivers {
                    self.ensure_consumer(now, &receiver, &client);
                }
            }
            Effect::Rtp(producer, packet) => self.forward(now, producer, &packet),
            Effect::Keyframe { client, mid, kind } => {
                self.request_keyframe(now, &client, mid, kind)
            }
            Effect::ConsumerConnected(id) => {
                let Some(peer) = self.peers.get(&id) else {
                    return;
                };
                let PeerKey::Consumer { receiver, remote } = &peer.key else {
                    return;
                };
                self.failed_consumers
                    .remove(&(receiver.clone(), remote.clone()));
                let remote = remote.clone();
                let videos: Vec<Mid> = peer
                    .forwards
                    .iter()
                    .filter(|f| f.kind == MediaKind::Video)
                    .map(|f| f.from)
                    .collect();
                for mid in videos {
                    self.request_keyframe(now, &remote, mid, KeyframeRequestKind::Pli);
                }
            }
            Effect::Channel {
                from,
                label,
                binary,
                data,
            } => {
                let targets: Vec<PeerId> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| matches!(&p.key, PeerKey::Producer(c) if *c != from))
                    .map(|(id, _)| *id)
                    .collect();
                for id in targets {
                    let Some(peer) = self.peers.get_mut(&id) else {
                        continue;
                    };
                    let Some(cid) = peer
                        .channels
                        .iter()
                        .find(|(_, l)| **l == label)
                        .map(|(c, _)| *c)
                    else {
                        continue;
                    };
                    let written = peer.fenced("channel write", |peer| {
                        peer.rtc.channel(cid).map(|mut ch| ch.write(binary, &data))
                    });
                    match written {
                        Some(Some(Ok(_))) => self.mark(id),
                        Some(Some(Err(e))) => {
                            tracing::debug!(key = ?peer.key, error = %e, "channel write failed")
                        }
                        Some(None) => {
                            tracing::debug!(key = ?peer.key, label, "channel not open; message not relayed")
                        }
                        None => self.drop_peer(id),
                    }
                }
            }
        }
    }

    fn forward(&mut self, now: Instant, producer: PeerId, packet: &Packet) {
        let Some(PeerKey::Producer(client)) = self.peers.get(&producer).map(|p| &p.key) else {
            return;
        };
        let client = client.clone();
        let Some(ids) = self.consumers_of.get(&client) else {
            return;
        };
        let ids: Vec<PeerId> = ids.iter().copied().collect();
        let seq = *packet.seq_no as i64;
        let mut waiting = false;
        for id in ids {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            let Some(forward) = peer.forwards.iter_mut().find(|f| f.from == packet.mid) else {
                continue;
            };
            let offset = match forward.origin {
                Some((ssrc, offset)) if ssrc == packet.ssrc => offset,
                _ => {
                    if forward.kind == MediaKind::Video && !packet.keyframe_start {
                        waiting = true;
                        continue;
                    }
                    // Contiguous with what this leg sent before (from 1 on a new leg).
                    forward.first_out = forward.last_out + 1;
                    let offset = forward.first_out as i64 - seq;
                    forward.origin = Some((packet.ssrc, offset));
                    offset
                }
            };
            let out = seq + offset;
            if out < forward.first_out as i64 {
                continue; // from before this leg started (a late retransmission)
            }
            let out = out as u64;
            forward.last_out = forward.last_out.max(out);
            let pt_in = packet.params.pt();
            let pt = match forward.pt_map {
                Some((from, to)) if from == pt_in => Some(to),
                _ => {
                    let pt = peer
                        .rtc
                        .codec_config()
                        .match_params(packet.params)
                        .map(|p| p.pt());
                    forward.pt_map = pt.map(|to| (pt_in, to));
                    pt
                }
            };
            let Some(pt) = pt else {
                tracing::debug!(key = ?peer.key, %pt_in, "no matching payload type; not forwarded");
                continue;
            };
            let forward = *forward;
            let mut ext_vals = packet.ext_vals.clone();
            // This leg's own: str0m sets them as the receiver needs.
            ext_vals.mid = None;
            ext_vals.rid = None;
            ext_vals.rid_repair = None;
            ext_vals.transport_cc = None;
            let write = RtpWrite::new(
                pt,
                out.into(),
                packet.timestamp,
                packet.arrived,
                packet.payload.clone(),
            )
            .marker(packet.marker)
            .ext_vals(ext_vals)
            .nackable(forward.kind == MediaKind::Video);
            let written = peer.fenced("write_rtp", |peer| {
                let mut api = peer.rtc.direct_api();
                let stream = api.stream_tx_by_mid(forward.to, None)?;
                stream.write_rtp(write);
                Some(())
            });
            match written {
                Some(Some(())) => {
                    self.writes_pending += 1;
                    if !peer.written {
                        peer.written = true;
                        self.written.push(id);
                    }
                }
                Some(None) => {
                    tracing::debug!(key = ?peer.key, "no send stream for a forwarded track")
                }
                None => self.drop_peer(id),
            }
        }
        if waiting {
            // A consumer waits for a keyframe (the first request may have been lost).
            self.request_keyframe(now, &client, packet.mid, KeyframeRequestKind::Pli);
        }
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        client: &str,
        mid: Mid,
        kind: KeyframeRequestKind,
    ) {
        let Some(&id) = self.by_key.get(&PeerKey::Producer(client.to_string())) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(track) = peer.tracks.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(500))
        {
            return;
        }
        track.last_keyframe_request = Some(now);
        let rid = track.rid;
        let requested = peer.fenced("request_keyframe", |peer| {
            peer.rtc
                .direct_api()
                .stream_rx_by_mid(mid, rid)
                .map(|stream| stream.request_keyframe(kind))
        });
        match requested {
            Some(Some(())) => {
                tracing::debug!(%client, ?mid, "keyframe requested");
                self.mark(id);
            }
            Some(None) => tracing::debug!(%client, ?mid, "no receive stream to ask for a keyframe"),
            None => self.drop_peer(id),
        }
    }
}

fn peer_event(id: PeerId, peer: &mut Peer, now: Instant, event: Event, effects: &mut Vec<Effect>) {
    match event {
        Event::Connected => {
            peer.connected = true;
            tracing::info!(key = ?peer.key, "connected");
            if matches!(peer.key, PeerKey::Consumer { .. }) {
                effects.push(Effect::ConsumerConnected(id));
            }
        }
        Event::IceConnectionStateChange(state) => {
            tracing::debug!(key = ?peer.key, ?state, "ICE");
            match state {
                IceConnectionState::Disconnected => {
                    peer.ice_lost_since.get_or_insert(now);
                }
                _ => peer.ice_lost_since = None,
            }
        }
        Event::MediaAdded(added) => {
            if let PeerKey::Producer(client) = &peer.key
                && added.direction.is_receiving()
                && !peer.tracks.iter().any(|t| t.mid == added.mid)
            {
                peer.tracks.push(Track {
                    mid: added.mid,
                    kind: added.kind,
                    rid: None,
                    last_keyframe_request: None,
                    params: None,
                    last_timestamp: None,
                });
                effects.push(Effect::TracksAdded(client.clone()));
            }
        }
        Event::RtpPacket(packet) => {
            if matches!(peer.key, PeerKey::Producer(_))
                && let Some(packet) = producer_packet(peer, packet)
            {
                effects.push(Effect::Rtp(id, Box::new(packet)));
            }
        }
        Event::KeyframeRequest(request) => {
            if let PeerKey::Consumer { remote, .. } = &peer.key
                && let Some(forward) = peer.forwards.iter().find(|f| f.to == request.mid)
            {
                effects.push(Effect::Keyframe {
                    client: remote.clone(),
                    mid: forward.from,
                    kind: request.kind,
                });
            }
        }
        Event::ChannelOpen(cid, label) => {
            tracing::debug!(key = ?peer.key, %label, "channel open");
            if let Some(known) = CHANNELS.iter().find(|(l, _)| *l == label) {
                peer.channels.insert(cid, known.0);
            }
        }
        Event::ChannelData(data) => {
            if let PeerKey::Producer(client) = &peer.key
                && let Some(label) = peer.channels.get(&data.id)
            {
                effects.push(Effect::Channel {
                    from: client.clone(),
                    label,
                    binary: data.binary,
                    data: data.data,
                });
            }
        }
        Event::ChannelClose(cid) => {
            tracing::debug!(key = ?peer.key, ?cid, "channel closed");
        }
        Event::Closed => {
            tracing::info!(key = ?peer.key, "closed by the remote");
        }
        _ => {}
    }
}

/// What a producer's RTP packet is, for its consumers: its track, codec and whether it starts a
/// keyframe. `None`: not a packet of a track the producer forwards (another simulcast layer, an
/// unknown stream or payload type).
fn producer_packet(peer: &mut Peer, packet: RtpPacket) -> Option<Packet> {
    let ssrc = packet.header.ssrc;
    let (mid, rid) = peer
        .rtc
        .direct_api()
        .stream_rx(&ssrc)
        .map(|s| (s.mid(), s.rid()))?;
    let track = peer.tracks.iter_mut().find(|t| t.mid == mid)?;
    if let Some(rid) = rid {
        match track.rid {
            None => track.rid = Some(rid),
            Some(chosen) if chosen != rid => return None,
            Some(_) => {}
        }
    }
    let pt = packet.header.payload_type;
    if track.params.is_none_or(|p| p.pt() != pt) {
        track.params = peer.rtc.codec_config().find(|p| p.pt() == pt).copied();
    }
    let params = track.params?;
    let timestamp = packet.header.timestamp;
    let frame_start = track.last_timestamp != Some(timestamp);
    track.last_timestamp = Some(timestamp);
    let keyframe_start = track.kind == MediaKind::Video
        && starts_keyframe(params.spec().codec, &packet.payload, frame_start);
    Some(Packet {
        mid,
        params,
        ssrc,
        seq_no: packet.seq_no,
        timestamp,
        marker: packet.header.marker,
        ext_vals: packet.header.ext_vals,
        payload: packet.payload,
        arrived: packet.timestamp,
        keyframe_start,
    })
}

/// Whether an RTP payload is the first packet of a keyframe. VP8: the payload descriptor starts
/// a partition-0 keyframe. H.264: the first packet of its frame (RTP timestamp) carries an SPS or
/// an IDR slice (a single NAL unit, in a STAP-A, or the start of an FU-A).
fn starts_keyframe(codec: Codec, payload: &[u8], frame_start: bool) -> bool {
    match codec {
        Codec::Vp8 => Vp8Descriptor::parse(payload).is_ok_and(|d| d.starts_keyframe(payload)),
        Codec::H264 => frame_start && h264_has_keyframe_nal(payload),
        _ => false,
    }
}

fn h264_has_keyframe_nal(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let key = |nal: u8| matches!(nal & 0x1f, IDR | SPS);
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        1..=23 => key(first),
        // STAP-A: 16-bit sizes, each followed by a NAL unit.
        24 => {
            let mut at = 1;
            while at + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if key(payload[at + 2]) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        // FU-A: the FU header's start bit and the fragmented NAL unit's type.
        28 => payload.get(1).is_some_and(|h| h & 0x80 != 0 && key(*h)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room::new(RoomOptions::new("127.0.0.9:50000".parse().unwrap()))
    }

    /// A client's producer offer (audio, video, the negotiated channels), from str0m.
    fn client_offer(now: Instant) -> (Rtc, SdpPendingOffer, String) {
        client_offer_at(now, "127.0.0.1:40000".parse().unwrap())
    }

    fn client_offer_at(now: Instant, addr: SocketAddr) -> (Rtc, SdpPendingOffer, String) {
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        for (label, id) in CHANNELS {
            change.add_channel_with_config(ChannelConfig {
                label: label.into(),
                negotiated: Some(id),
                ..Default::default()
            });
        }
        let (offer, pending) = change.apply().unwrap();
        (rtc, pending, offer.to_sdp_string())
    }

    fn frames(room: &mut Room) -> Vec<Value> {
        std::iter::from_fn(|| room.poll_frame()).collect()
    }

    #[test]
    fn malformed_frames_are_ignored_without_a_reply() {
        let mut room = room();
        let now = Instant::now();
        for frame in [
            json!(null),
            json!([1]),
            json!({ "type": "producer" }),
            json!({ "type": "producer", "sender": "a", "description": { "type": "offer", "sdp": "v=0\r\nx" } }),
            json!({ "type": "producer", "sender": "a", "description": { "type": "answer", "sdp": "v=0" } }),
            json!({ "type": "producer", "sender": "a", "candidate": 3 }),
            json!({ "type": "consumer", "sender": "a", "description": {} }),
            json!({ "type": "consumer", "sender": "a", "remotePeerId": "b", "description": { "type": "answer", "sdp": "v=0" } }),
            json!({ "type": "consumer", "sender": "a", "remotePeerId": "b", "candidate": { "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host" } }),
            json!({ "type": "clientDisconnect" }),
            json!({ "type": "error", "status": 404 }),
        ] {
            room.handle_frame(now, &frame);
        }
        assert!(frames(&mut room).is_empty());
        assert_eq!(room.stats(), RoomStats::default());
        // Garbage datagrams from nowhere.
        room.handle_datagram(now, "127.0.0.1:1".parse().unwrap(), &[0u8; 40]);
        room.handle_datagram(now, "127.0.0.1:1".parse().unwrap(), &[]);
        assert!(room.poll_transmit().is_none());
    }

    #[test]
    fn an_offer_is_answered_to_its_sender_with_early_candidates_kept() {
        let mut room = room();
        let now = Instant::now();
        // A trickled candidate before the offer: kept.
        let early = json!({ "type": "producer", "sender": "alice",
            "candidate": { "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host", "sdpMid": "0", "sdpMLineIndex": 0 } });
        room.handle_frame(now, &early);
        assert_eq!(room.early.get("alice").map(Vec::len), Some(1));

        let (mut client, pending, sdp) = client_offer(now);
        room.handle_frame(
            now,
            &json!({ "type": "producer", "sender": "alice",
            "description": { "type": "offer", "sdp": sdp } }),
        );
        let sent = frames(&mut room);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let data = &sent[0]["data"];
        assert_eq!(sent[0]["action"], "handshake");
        assert_eq!(data["type"], "producer");
        assert_eq!(data["receiver"], "alice");
        assert_eq!(data["description"]["type"], "answer");
        let answer =
            SdpAnswer::from_sdp_string(data["description"]["sdp"].as_str().unwrap()).unwrap();
        client.sdp_api().accept_answer(pending, answer).unwrap();
        // The early candidate went to the new connection: its address routes to it.
        assert!(room.early.is_empty());
        let producer = room.by_key[&PeerKey::Producer("alice".into())];
        assert_eq!(
            room.by_addr.get(&"127.0.0.1:40001".parse().unwrap()),
            Some(&producer)
        );
        assert_eq!(
            room.stats(),
            RoomStats {
                producers: 1,
                consumers: 0
            }
        );
    }

    /// Moves datagrams between the room and in-memory clients (each at its own address) for
    /// `steps` of 10 ms; returns the frames the room sent.
    fn network(
        room: &mut Room,
        clients: &mut [(SocketAddr, Rtc)],
        now: &mut Instant,
        steps: usize,
    ) -> Vec<Value> {
        let mut sent = Vec::new();
        for _ in 0..steps {
            *now += Duration::from_millis(10);
            room.handle_timeout(*now);
            for (addr, rtc) in clients.iter_mut() {
                rtc.handle_input(Input::Timeout(*now)).unwrap();
                while let Ok(output) = rtc.poll_output() {
                    match output {
                        Output::Transmit(t) => room.handle_datagram(*now, *addr, &t.contents),
                        Output::Timeout(_) => break,
                        Output::Event(_) => {}
                    }
                }
            }
            while let Some(t) = room.poll_transmit() {
                if let Some((_, rtc)) = clients.iter_mut().find(|(a, _)| *a == t.destination) {
                    let input = Input::Receive(
                        *now,
                        Receive {
                            proto: Protocol::Udp,
                            source: room.options.local,
                            destination: t.destination,
                            contents: t.contents.as_slice().try_into().unwrap(),
                        },
                    );
                    rtc.handle_input(input).unwrap();
                }
            }
            sent.extend(frames(room));
        }
        sent
    }

    /// Alice and bob offer their producers and accept the room's answers (neither answers a
    /// consumer offer).
    fn two_senders(room: &mut Room, now: Instant) -> Vec<(SocketAddr, Rtc)> {
        let mut clients = Vec::new();
        for (i, client) in ["alice", "bob"].into_iter().enumerate() {
            let addr: SocketAddr = format!("127.0.0.1:{}", 41000 + i).parse().unwrap();
            let (mut rtc, pending, sdp) = client_offer_at(now, addr);
            room.handle_frame(
                now,
                &json!({ "type": "producer", "sender": client,
                "description": { "type": "offer", "sdp": sdp } }),
            );
            let answer = frames(room).pop().unwrap();
            let answer =
                SdpAnswer::from_sdp_string(answer["data"]["description"]["sdp"].as_str().unwrap())
                    .unwrap();
            rtc.sdp_api().accept_answer(pending, answer).unwrap();
            clients.push((addr, rtc));
        }
        clients
    }

    /// The consumer offers among `sent`: (receiver, remote).
    fn consumer_offers(sent: &[Value]) -> Vec<(String, String)> {
        let mut offers: Vec<(String, String)> = sent
            .iter()
            .filter(|f| f["data"]["type"] == "consumer")
            .map(|f| {
                assert_eq!(f["data"]["description"]["type"], "offer");
                (
                    f["data"]["receiver"].as_str().unwrap().to_string(),
                    f["data"]["remotePeerId"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        offers.sort();
        offers
    }

    #[test]
    fn a_second_sender_gets_consumers_both_ways_and_a_leaver_takes_them_all() {
        let mut room = room();
        let mut now = Instant::now();
        let mut clients = two_senders(&mut room, now);
        let sent = network(&mut room, &mut clients, &mut now, 300);
        assert_eq!(
            consumer_offers(&sent),
            vec![
                ("alice".into(), "bob".into()),
                ("bob".into(), "alice".into())
            ]
        );
        assert_eq!(
            room.stats(),
            RoomStats {
                producers: 2,
                consumers: 2
            }
        );

        // Each consumer's ufrag routes a STUN request to it, and maps the request's source.
        let consumer = room.by_key[&PeerKey::Consumer {
            receiver: "bob".into(),
            remote: "alice".into(),
        }];
        let ufrag = room
            .by_ufrag
            .iter()
            .find(|(_, id)| **id == consumer)
            .map(|(u, _)| u.clone())
            .unwrap();
        let mut request = stun::binding_request([1; 12]);
        let username = format!("{ufrag}:remote");
        let mut attr = 0x0006u16.to_be_bytes().to_vec();
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while !attr.len().is_multiple_of(4) {
            attr.push(0);
        }
        request[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
        request.extend_from_slice(&attr);
        let source: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        room.handle_datagram(now, source, &request);
        assert_eq!(room.by_addr.get(&source), Some(&consumer));

        room.handle_frame(
            now,
            &json!({ "type": "clientDisconnect", "clientId": "alice" }),
        );
        assert_eq!(
            room.stats(),
            RoomStats {
                producers: 1,
                consumers: 0
            }
        );
        assert!(!room.by_addr.contains_key(&source));
        // A newcomer is offered bob only.
        let (_rtc, _pending, sdp) = client_offer(now);
        let _ = frames(&mut room);
        room.handle_frame(
            now,
            &json!({ "type": "producer", "sender": "carol",
            "description": { "type": "offer", "sdp": sdp } }),
        );
        let offered: Vec<Value> = frames(&mut room)
            .into_iter()
            .filter(|f| f["data"]["type"] == "consumer" && f["data"]["receiver"] == "carol")
            .map(|f| f["data"]["remotePeerId"].clone())
            .collect();
        assert_eq!(offered, vec![json!("bob")]);
    }

    #[test]
    fn only_producers_negotiate_transport_wide_congestion_control() {
        const TWCC: &str = "transport-wide-cc-extensions";
        let now = Instant::now();
        let mut alone = room();
        let (_rtc, _pending, sdp) = client_offer(now);
        assert!(sdp.contains(TWCC), "the client offers it");
        alone.handle_frame(
            now,
            &json!({ "type": "producer", "sender": "alice",
            "description": { "type": "offer", "sdp": sdp } }),
        );
        let answer = frames(&mut alone).pop().unwrap();
        let answer = answer["data"]["description"]["sdp"].as_str().unwrap();
        assert!(answer.contains(TWCC), "the sender's bitrate adapts by it");

        let mut room = room();
        let mut now = now;
        let mut clients = two_senders(&mut room, now);
        let sent = network(&mut room, &mut clients, &mut now, 50);
        let offers: Vec<&str> = sent
            .iter()
            .filter(|f| f["data"]["type"] == "consumer")
            .filter_map(|f| f["data"]["description"]["sdp"].as_str())
            .collect();
        assert!(!offers.is_empty());
        for offer in offers {
            assert!(offer.contains("urn:ietf:params:rtp-hdrext"), "{offer}");
            assert!(
                !offer.contains(TWCC),
                "the SFU estimates no bandwidth: {offer}"
            );
        }
    }

    #[test]
    fn a_consumer_that_never_connects_is_offered_again_a_bounded_number_of_times() {
        let mut options = RoomOptions::new("127.0.0.9:50000".parse().unwrap());
        options.connect_timeout = Duration::from_secs(2);
        let mut room = Room::new(options);
        let mut now = Instant::now();
        let mut clients = two_senders(&mut room, now);
        // Neither answers its consumer offer: each is dropped after the connect timeout and
        // offered again on a new connection, CONSUMER_OFFERS times in all, then no more.
        let sent = network(&mut room, &mut clients, &mut now, 1500);
        let offers = consumer_offers(&sent);
        let each = CONSUMER_OFFERS as usize;
        assert_eq!(
            offers
                .iter()
                .filter(|o| o.0 == "alice" && o.1 == "bob")
                .count(),
            each,
            "{offers:?}"
        );
        assert_eq!(
            offers
                .iter()
                .filter(|o| o.0 == "bob" && o.1 == "alice")
                .count(),
            each,
            "{offers:?}"
        );
        let ufrags: HashSet<String> = sent
            .iter()
            .filter(|f| f["data"]["type"] == "consumer")
            .map(|f| sdp_ufrag(f["data"]["description"]["sdp"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(ufrags.len(), 2 * each, "each offer is a new connection");
        assert_eq!(room.stats().consumers, 0);
        assert_eq!(room.stats().producers, 2, "the senders are not affected");
        assert!(consumer_offers(&network(&mut room, &mut clients, &mut now, 500)).is_empty());

        // A participant who leaves is not offered again to anyone, even mid-streak.
        let mut room = Room::new(RoomOptions {
            connect_timeout: Duration::from_secs(2),
            ..RoomOptions::new("127.0.0.9:50000".parse().unwrap())
        });
        let mut clients = two_senders(&mut room, now);
        network(&mut room, &mut clients, &mut now, 450);
        room.handle_frame(
            now,
            &json!({ "type": "clientDisconnect", "clientId": "bob" }),
        );
        clients.truncate(1);
        let later = consumer_offers(&network(&mut room, &mut clients, &mut now, 500));
        assert!(later.is_empty(), "{later:?}");
    }
}
