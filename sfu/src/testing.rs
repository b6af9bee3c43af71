//! A test participant on str0m: it joins a room over the signaling socket as a browser running
//! the Arbiter client would (identify as a client, offer a producer connection with audio,
//! video and the negotiated `chat`/`features` channels, answer the SFU's consumer offers), sends
//! synthetic Opus (every 20 ms) and VP8 (every 40 ms, a keyframe when asked and every 50
//! frames) once connected, and counts what it receives. Each peer connection has its own UDP
//! socket on 127.0.0.1, as a browser's do.
//!
//! The sockets are read every [`RECEIVE_EVERY`], not waited on. On loopback, the sender's system
//! call does the receiver's share of the work: a receiver asleep on its socket is woken from
//! the SFU's `sendmmsg`, and the SFU's CPU time would count that wake-up, which on a network
//! happens on the receiver's own machine. Each datagram keeps the kernel's receive time.
//!
//! The SFU's tests use it, and so can a benchmark: [`Participant::join`], then read
//! [`Participant::stats`].

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::room::CHANNELS;

/// What a participant publishes.
#[derive(Clone, Debug)]
pub struct Publish {
    pub audio: bool,
    pub video: bool,
    /// Offer only H.264 for video (as a browser without VP8 would), not VP8.
    pub h264_only: bool,
    /// Answer the SFU's consumer offers (false: a client that never answers).
    pub answer_consumers: bool,
    /// Bytes of each synthetic video frame (25 frames a second): 600 is about 120 kbit/s,
    /// 5,000 about 1 Mbit/s (the benchmark's load).
    pub video_frame_bytes: usize,
    /// The participant thread's niceness (0 to 19). A load generator sharing the machine with
    /// the SFU it measures runs above 0, so the SFU is not kept waiting for a core behind it.
    pub nice: i32,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            h264_only: false,
            answer_consumers: true,
            video_frame_bytes: 600,
            nice: 0,
        }
    }
}

/// Media received from one remote participant.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub audio_frames: u64,
    pub video_frames: u64,
    pub video_keyframes: u64,
    pub bytes: u64,
    /// The video codecs seen.
    pub video_codecs: Vec<String>,
    pub first_video_at: Option<Instant>,
    pub first_keyframe_at: Option<Instant>,
    /// RTP packets that arrived on the consumer connection (audio and video, counted on the
    /// socket: what the SFU forwarded).
    pub rtp_packets: u64,
    /// One-way time of each audio packet, in microseconds: from the sender's write (audio
    /// payloads carry their send time; sender and receiver share a clock only within one
    /// process) to the kernel's receive time at this receiver's socket. The kernel's stamp
    /// leaves out how long a busy receiver takes to read and decrypt the packet.
    pub audio_latency_us: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// By remote participant id (the consumer connection's `remotePeerId`).
    pub received: HashMap<String, Received>,
    pub audio_frames_sent: u64,
    pub video_frames_sent: u64,
    /// PLI/FIR the SFU sent this participant's producer connection.
    pub keyframe_requests: u64,
    /// Consumer offers received, by remote participant.
    pub consumer_offers: HashMap<String, u32>,
    /// Data channel messages received: (channel label, message).
    pub messages: Vec<(String, String)>,
    pub producer_connected: bool,
    /// Channels open on the producer connection.
    pub channels_open: Vec<String>,
    /// Every signaling frame received, in order.
    pub frames: Vec<Value>,
}

/// How often every connection's socket is read (see the module's comment).
const RECEIVE_EVERY: Duration = Duration::from_millis(2);

/// RTP packets remembered per consumer connection until their media event: (SSRC, sequence
/// number, kernel receive time).
const ARRIVALS_KEPT: usize = 512;

enum Command {
    Chat(&'static str, String),
    Frame(Value),
    Stop,
}

/// A participant running in a task of its own.
pub struct Participant {
    pub id: String,
    stats: Arc<Mutex<Stats>>,
    commands: mpsc::UnboundedSender<Command>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Participant {
    /// Connects to the signaling socket at `ws_url`, identifies into `room` as `id`, and
    /// offers its producer connection. The participant runs on a thread of its own (its own
    /// runtime), so a busy caller does not starve its media.
    pub async fn join(
        ws_url: &str,
        room: &str,
        id: &str,
        publish: Publish,
    ) -> Result<Self, String> {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (commands, rx) = mpsc::unbounded_channel();
        let nice = publish.nice;
        let client = Client::new(id, room, publish, stats.clone());
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let url = ws_url.to_string();
        std::thread::Builder::new()
            .name(format!("participant-{id}"))
            .spawn(move || {
                if nice > 0 {
                    // SAFETY: plain system call; `who` 0 is this thread (Linux niceness is
                    // per thread). Raising it needs no privilege.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice.min(19)) };
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = connected_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokio_tungstenite::connect_async(&url).await {
                        Ok((socket, _)) => {
                            let _ = connected_tx.send(Ok(()));
                            client.run(socket, rx).await;
                        }
                        Err(e) => {
                            let _ = connected_tx.send(Err(format!("connect {url}: {e}")));
                        }
                    }
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| e.to_string())?;
        connected
            .await
            .map_err(|_| "the participant's thread ended".to_string())??;
        Ok(Self {
            id: id.to_string(),
            stats,
            commands,
            done,
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends `text` on the producer connection's channel `label` (`chat` or `features`).
    pub fn send_message(&self, label: &'static str, text: &str) {
        let _ = self.commands.send(Command::Chat(label, text.to_string()));
    }

    /// Sends a raw frame on the signaling socket.
    pub fn send_frame(&self, frame: Value) {
        let _ = self.commands.send(Command::Frame(frame));
    }

    /// Closes the socket and every peer connection (the gateway tells the room it left).
    pub async fn leave(self) {
        let _ = self.commands.send(Command::Stop);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }

    /// Polls `check` on the stats until it holds or `limit` passes.
    pub async fn wait_for(
        &self,
        limit: Duration,
        check: impl Fn(&Stats) -> bool,
    ) -> Result<Stats, Stats> {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.stats();
            if check(&stats) {
                return Ok(stats);
            }
            if Instant::now() >= deadline {
                return Err(stats);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Pc {
    Producer,
    Consumer(String),
}

struct Conn {
    rtc: Rtc,
    /// Non-blocking, and registered with no poller.
    socket: UdpSocket,
    local: SocketAddr,
    /// The SFU side's ICE ufrag (consumers): an offer with another one is a new connection.
    remote_ufrag: Option<String>,
    pending: Option<SdpPendingOffer>,
    connected: bool,
    timeout: Instant,
    /// Consumers: RTP packets received and not yet seen as media, oldest first.
    arrivals: std::collections::VecDeque<(u32, u16, Instant)>,
}

impl Conn {
    /// When the kernel received the (single-packet) media `data`, if it is remembered.
    fn arrival(&mut self, data: &str0m::media::MediaData) -> Option<Instant> {
        let ssrc = *self
            .rtc
            .direct_api()
            .stream_rx_by_mid(data.mid, None)?
            .ssrc();
        let seq = data.seq_range.start().as_u16();
        let at = self
            .arrivals
            .iter()
            .position(|(s, q, _)| *s == ssrc && *q == seq)?;
        self.arrivals.remove(at).map(|(_, _, arrived)| arrived)
    }
}

struct Client {
    id: String,
    room: String,
    publish: Publish,
    stats: Arc<Mutex<Stats>>,
    conns: HashMap<Pc, Conn>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    channels: HashMap<ChannelId, String>,
    video_count: u64,
    keyframe_wanted: bool,
    started: Instant,
    outbox: Vec<Value>,
    /// A buffer for one datagram.
    buf: Vec<u8>,
}

fn handshake(data: Value) -> Value {
    json!({ "action": "handshake", "data": data })
}

/// The clock audio payloads carry: microseconds from the first use in this process to `at`.
fn stamp(at: Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_micros() as u64
}

/// Turns on the kernel's receive timestamps (`SO_TIMESTAMPNS`) for `socket`.
fn enable_receive_timestamps(socket: &UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor, and an option value that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Receives one datagram into `buf` (`WouldBlock` when none waits): its length, source, and
/// when the kernel received it (its `SO_TIMESTAMPNS` stamp, on the wall clock, moved onto the
/// monotonic one; now, without one).
fn receive_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Instant)> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the header points at `name`, `buf` (through `iov`) and `control`, all of which
    // outlive the call and are as large as the header says.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let now = Instant::now();
    let mut arrived = now;
    // SAFETY: the kernel filled `header`'s control buffer; the CMSG macros walk it within
    // `msg_controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let kernel =
                    std::time::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                let age = std::time::SystemTime::now()
                    .duration_since(kernel)
                    .unwrap_or_default();
                arrived = now.checked_sub(age).unwrap_or(now);
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    let source = match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says `name` holds a sockaddr_in.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((&name as *const libc::sockaddr_storage).cast()) };
            SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says `name` holds a sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&name as *const libc::sockaddr_storage).cast()) };
            SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
        }
        _ => {
            return Err(std::io::Error::other(
                "a datagram from an unknown address family",
            ));
        }
    };
    Ok((n as usize, source, arrived))
}

/// An RTP packet (not RTCP, STUN or DTLS) by its first two bytes (RFC 5761, RFC 7983).
fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && data[0] >> 6 == 2 && !(192..=223).contains(&data[1])
}

/// A synthetic VP8 frame of `bytes` bytes of payload: a keyframe (with the start code and a
/// 320x240 size) or a delta.
fn vp8_frame(key: bool, n: u64, bytes: usize) -> Vec<u8> {
    let mut frame = if key {
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
    } else {
        vec![0x11, 0x02, 0x00]
    };
    frame.extend(std::iter::repeat_n((n % 251) as u8, bytes));
    frame
}

/// A synthetic H.264 access unit (Annex B): SPS, PPS and an IDR slice, or a non-IDR slice.
fn h264_frame(key: bool, n: u64) -> Vec<u8> {
    let mut frame = Vec::new();
    if key {
        frame.extend_from_slice(&[
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8,
        ]);
        frame.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x0f, 0xc8]);
        frame.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
    } else {
        frame.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02]);
    }
    frame.extend(std::iter::repeat_n((n % 251) as u8 | 1, 600));
    frame
}

fn is_keyframe(codec: Codec, data: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
        Codec::H264 => {
            data.windows(5)
                .any(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == 5)
                || data
                    .windows(4)
                    .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5)
        }
        _ => false,
    }
}

/// A datagram connection `pc` received: counted (RTP on a consumer, with its kernel receive
/// time kept for the latency figure), then given to its `Rtc`.
fn on_datagram(
    conn: &mut Conn,
    stats: &Mutex<Stats>,
    pc: &Pc,
    source: SocketAddr,
    data: &[u8],
    arrived: Instant,
) {
    if let Pc::Consumer(remote) = pc
        && is_rtp(data)
    {
        // The RTP header is in the clear under SRTP.
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if conn.arrivals.len() >= ARRIVALS_KEPT {
            conn.arrivals.pop_front();
        }
        conn.arrivals.push_back((ssrc, seq, arrived));
        if let Ok(mut stats) = stats.lock() {
            stats
                .received
                .entry(remote.clone())
                .or_default()
                .rtp_packets += 1;
        }
    }
    let Ok(contents) = data.try_into() else {
        return;
    };
    let _ = conn.rtc.handle_input(Input::Receive(
        Instant::now(),
        Receive {
            proto: Protocol::Udp,
            source,
            destination: conn.local,
            contents,
        },
    ));
}

impl Client {
    fn new(id: &str, room: &str, publish: Publish, stats: Arc<Mutex<Stats>>) -> Self {
        Self {
            id: id.to_string(),
            room: room.to_string(),
            publish,
            stats,
            conns: HashMap::new(),
            audio_mid: None,
            video_mid: None,
            channels: HashMap::new(),
            video_count: 0,
            keyframe_wanted: true,
            started: Instant::now(),
            outbox: Vec::new(),
            buf: vec![0; 2048],
        }
    }

    fn stats(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
        }
    }

    /// With `h264_only`, the producer connection offers H.264 alone (it still receives VP8).
    fn rtc(&self, now: Instant, producer: bool) -> Rtc {
        let mut config = Rtc::builder();
        if self.publish.h264_only && producer {
            config = config
                .clear_codecs()
                .enable_opus(true, false)
                .enable_h264(true);
        }
        config.build(now)
    }

    async fn connection(&mut self, pc: Pc, now: Instant) -> Result<(), String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        enable_receive_timestamps(&socket).map_err(|e| e.to_string())?;
        let mut rtc = self.rtc(now, pc == Pc::Producer);
        let host = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(host);
        self.conns.insert(
            pc,
            Conn {
                rtc,
                socket,
                local,
                remote_ufrag: None,
                pending: None,
                connected: false,
                timeout: now,
                arrivals: Default::default(),
            },
        );
        Ok(())
    }

    async fn offer_producer(&mut self) -> Result<(), String> {
        let now = Instant::now();
        self.connection(Pc::Producer, now).await?;
        let id = self.id.clone();
        let publish = self.publish.clone();
        let conn = self.conns.get_mut(&Pc::Producer).ok_or("no producer")?;
        let mut change = conn.rtc.sdp_api();
        if publish.audio {
            self.audio_mid = Some(change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(id.clone()),
                None,
                None,
            ));
        }
        if publish.video {
            self.video_mid = Some(change.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(id.clone()),
                None,
                None,
            ));
        }
        for (label, stream) in CHANNELS {
            let cid = change.add_channel_with_config(ChannelConfig {
                label: label.to_string(),
                negotiated: Some(stream),
                ..Default::default()
            });
            self.channels.insert(cid, label.to_string());
        }
        let (offer, pending) = change.apply().ok_or("nothing to offer")?;
        conn.pending = Some(pending);
        self.outbox.push(handshake(json!({ "type": "producer",
            "description": { "type": "offer", "sdp": offer.to_sdp_string() } })));
        Ok(())
    }

    async fn on_frame(&mut self, frame: Value) -> Result<(), String> {
        self.stats(|s| s.frames.push(frame.clone()));
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "identified" => self.offer_producer().await?,
            "producer" => {
                let Some(conn) = self.conns.get_mut(&Pc::Producer) else {
                    return Ok(());
                };
                if let Some(description) = frame.get("description") {
                    let sdp = description
                        .get("sdp")
                        .and_then(Value::as_str)
                        .ok_or("no sdp")?;
                    let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
                    let pending = conn.pending.take().ok_or("no pending offer")?;
                    conn.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| e.to_string())?;
                } else if let Some(candidate) = frame
                    .pointer("/candidate/candidate")
                    .and_then(Value::as_str)
                    && let Ok(c) = Candidate::from_sdp_string(candidate)
                {
                    conn.rtc.add_remote_candidate(c);
                }
            }
            "consumer" => {
                let remote = frame
                    .get("remotePeerId")
                    .and_then(Value::as_str)
                    .ok_or("no remotePeerId")?
                    .to_string();
                let pc = Pc::Consumer(remote.clone());
                if let Some(description) = frame.get("description") {
                    if !self.publish.answer_consumers {
                        self.stats(|s| *s.consumer_offers.entry(remote.clone()).or_default() += 1);
                        return Ok(());
                    }
                    let sdp = description
                        .get("sdp")
                        .and_then(Value::as_str)
                        .ok_or("no sdp")?;
                    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
                    // The SFU offers a failed consumer again on a new connection (new ICE
                    // credentials): that replaces the old one, as the SDK does; the same ufrag is
                    // a renegotiation of the connection there is.
                    let ufrag = crate::room::sdp_ufrag(sdp);
                    if self
                        .conns
                        .get(&pc)
                        .is_some_and(|c| c.remote_ufrag.is_some() && c.remote_ufrag != ufrag)
                    {
                        self.conns.remove(&pc);
                    }
                    if !self.conns.contains_key(&pc) {
                        self.connection(pc.clone(), Instant::now()).await?;
                    }
                    if let Some(conn) = self.conns.get_mut(&pc) {
                        conn.remote_ufrag = ufrag;
                    }
                    self.stats(|s| *s.consumer_offers.entry(remote.clone()).or_default() += 1);
                    let conn = self.conns.get_mut(&pc).ok_or("no consumer")?;
                    let answer = conn
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|e| e.to_string())?;
                    self.outbox.push(handshake(
                        json!({ "type": "consumer", "remotePeerId": remote,
                        "description": { "type": "answer", "sdp": answer.to_sdp_string() } }),
                    ));
                } else if let Some(candidate) = frame
                    .pointer("/candidate/candidate")
                    .and_then(Value::as_str)
                    && let Some(conn) = self.conns.get_mut(&pc)
                    && let Ok(c) = Candidate::from_sdp_string(candidate)
                {
                    conn.rtc.add_remote_candidate(c);
                }
            }
            "clientDisconnect" => {
                if let Some(gone) = frame.get("clientId").and_then(Value::as_str) {
                    self.conns.remove(&Pc::Consumer(gone.to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads every datagram waiting on every connection's socket.
    fn receive(&mut self) {
        for (pc, conn) in self.conns.iter_mut() {
            loop {
                match receive_stamped(&conn.socket, &mut self.buf) {
                    Ok((n, source, arrived)) => {
                        on_datagram(conn, &self.stats, pc, source, &self.buf[..n], arrived)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// Writes this tick's media on the producer connection.
    fn send_media(&mut self, tick: u64) {
        let Some(conn) = self.conns.get_mut(&Pc::Producer) else {
            return;
        };
        if !conn.connected {
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.started);
        let mut audio = 0;
        let mut video_sent = 0;
        let opus = self.audio_mid.and_then(|mid| {
            let writer = conn.rtc.writer(mid)?;
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)?
                .pt();
            Some((mid, pt))
        });
        if let Some((mid, pt)) = opus
            && let Some(writer) = conn.rtc.writer(mid)
        {
            let rtp = MediaTime::from_seconds(elapsed.as_secs_f64())
                .rebase(str0m::media::Frequency::FORTY_EIGHT_KHZ);
            let mut payload = vec![0xfc, 0xff, 0xfe, (tick % 256) as u8];
            payload.extend_from_slice(&stamp(Instant::now()).to_be_bytes());
            if writer.write(pt, now, rtp, payload).is_ok() {
                audio += 1;
            }
        }
        let codec = if self.publish.h264_only {
            Codec::H264
        } else {
            Codec::Vp8
        };
        let video = if tick.is_multiple_of(2) {
            self.video_mid.and_then(|mid| {
                let writer = conn.rtc.writer(mid)?;
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == codec)?
                    .pt();
                Some((mid, pt))
            })
        } else {
            None
        };
        if let Some((mid, pt)) = video
            && let Some(writer) = conn.rtc.writer(mid)
        {
            let key = self.keyframe_wanted || self.video_count.is_multiple_of(50);
            let n = self.video_count;
            let frame = if codec == Codec::H264 {
                h264_frame(key, n)
            } else {
                vp8_frame(key, n, self.publish.video_frame_bytes)
            };
            let rtp = MediaTime::from_seconds(elapsed.as_secs_f64())
                .rebase(str0m::media::Frequency::NINETY_KHZ);
            if writer.write(pt, now, rtp, frame).is_ok() {
                self.video_count += 1;
                self.keyframe_wanted = false;
                video_sent += 1;
            }
        }
        self.stats(|s| {
            s.audio_frames_sent += audio;
            s.video_frames_sent += video_sent;
        });
    }

    /// Polls every connection until it waits; returns the earliest timeout.
    fn poll(&mut self) -> Instant {
        let mut next = Instant::now() + Duration::from_millis(100);
        let mut events = Vec::new();
        for (pc, conn) in self.conns.iter_mut() {
            // As the SFU polls: a timeout already due (str0m asks for one at once to packetize
            // what was written) is given at once, so media leaves when it is written, not at
            // the runtime's next timer tick (a millisecond later).
            let mut due = 0;
            loop {
                match crate::room::poll_output(&mut conn.rtc, Instant::now(), &mut due) {
                    Ok(Output::Timeout(t)) => {
                        conn.timeout = t;
                        next = next.min(t);
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let _ = conn.socket.send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(event)) => {
                        if matches!(event, Event::Connected) {
                            conn.connected = true;
                        }
                        let (kind, arrived) = match &event {
                            Event::MediaData(d) => {
                                let kind = conn.rtc.media(d.mid).map(|m| m.kind());
                                let arrived = (kind == Some(MediaKind::Audio))
                                    .then(|| conn.arrival(d))
                                    .flatten();
                                (kind, arrived)
                            }
                            _ => (None, None),
                        };
                        events.push((pc.clone(), event, kind, arrived));
                    }
                    Err(_) => break,
                }
            }
        }
        for (pc, event, kind, arrived) in events {
            self.on_event(&pc, event, kind, arrived);
        }
        next
    }

    /// `arrived`: for an audio packet, when the kernel received it.
    fn on_event(
        &mut self,
        pc: &Pc,
        event: Event,
        kind: Option<MediaKind>,
        arrived: Option<Instant>,
    ) {
        match (pc, event) {
            (Pc::Producer, Event::Connected) => self.stats(|s| s.producer_connected = true),
            (Pc::Producer, Event::KeyframeRequest(_)) => {
                self.keyframe_wanted = true;
                self.stats(|s| s.keyframe_requests += 1);
            }
            (Pc::Producer, Event::ChannelOpen(cid, label)) => {
                self.channels.insert(cid, label.clone());
                self.stats(|s| s.channels_open.push(label));
            }
            (Pc::Producer, Event::ChannelData(data)) => {
                let label = self.channels.get(&data.id).cloned().unwrap_or_default();
                let text = String::from_utf8_lossy(&data.data).to_string();
                self.stats(|s| s.messages.push((label, text)));
            }
            (Pc::Consumer(remote), Event::MediaData(data)) => {
                let now = Instant::now();
                let codec = data.params.spec().codec;
                let key = is_keyframe(codec, &data.data);
                self.stats(|s| {
                    let r = s.received.entry(remote.clone()).or_default();
                    r.bytes += data.data.len() as u64;
                    match kind {
                        Some(MediaKind::Audio) => {
                            r.audio_frames += 1;
                            if let Some(sent) = data.data.get(4..12) {
                                let mut sent_at = [0u8; 8];
                                sent_at.copy_from_slice(sent);
                                let took = stamp(arrived.unwrap_or(now))
                                    .saturating_sub(u64::from_be_bytes(sent_at));
                                r.audio_latency_us
                                    .push(took.min(u64::from(u32::MAX)) as u32);
                            }
                        }
                        Some(MediaKind::Video) => {
                            r.video_frames += 1;
                            r.first_video_at.get_or_insert(now);
                            let name = format!("{codec:?}");
                            if !r.video_codecs.contains(&name) {
                                r.video_codecs.push(name);
                            }
                            if key {
                                r.video_keyframes += 1;
                                r.first_keyframe_at.get_or_insert(now);
                            }
                        }
                        None => {}
                    }
                });
            }
            _ => {}
        }
    }

    fn send_chat(&mut self, label: &str, text: &str) {
        let Some(conn) = self.conns.get_mut(&Pc::Producer) else {
            return;
        };
        let Some(cid) = self
            .channels
            .iter()
            .find(|(_, l)| *l == label)
            .map(|(c, _)| *c)
        else {
            return;
        };
        if let Some(mut channel) = conn.rtc.channel(cid) {
            let _ = channel.write(false, text.as_bytes());
        }
    }

    async fn run<S>(mut self, socket: S, mut commands: mpsc::UnboundedReceiver<Command>)
    where
        S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + SinkExt<Message>
            + Unpin,
    {
        let (mut tx, mut rx) = socket.split();
        let identify = json!({ "action": "identify", "data": {
            "id": self.id, "type": "client", "roomId": self.room } });
        if tx
            .send(Message::Text(identify.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        let mut receive = tokio::time::interval(RECEIVE_EVERY);
        receive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut media = tokio::time::interval(Duration::from_millis(20));
        let mut tick = 0u64;
        loop {
            let next = self.poll();
            for frame in std::mem::take(&mut self.outbox) {
                if tx
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let wait = next.saturating_duration_since(Instant::now());
            tokio::select! {
                message = rx.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(frame) = serde_json::from_str::<Value>(&text)
                            && let Err(e) = self.on_frame(frame).await
                        {
                            tracing::warn!(id = %self.id, error = %e, "test participant: frame not handled");
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break,
                },
                _ = receive.tick() => self.receive(),
                command = commands.recv() => match command {
                    Some(Command::Chat(label, text)) => self.send_chat(label, &text),
                    Some(Command::Frame(frame)) => self.outbox.push(frame),
                    Some(Command::Stop) | None => break,
                },
                _ = media.tick() => {
                    tick += 1;
                    self.send_media(tick);
                }
                _ = tokio::time::sleep(wait) => {
                    let now = Instant::now();
                    for conn in self.conns.values_mut() {
                        if conn.timeout <= now {
                            let _ = conn.rtc.handle_input(Input::Timeout(now));
                        }
                    }
                }
            }
        }
        for conn in self.conns.values_mut() {
            conn.rtc.disconnect();
        }
        let _ = tx.close().await;
    }
}
