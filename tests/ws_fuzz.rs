//! A seeded fuzzer for the signaling socket. Sockets in one room send generated frames — wrong
//! types, huge and deeply nested JSON, invalid UTF-8, binary frames, unknown actions, and
//! valid frames in impossible orders (handshake before identify, identify twice, disconnect
//! then handshake) — one at a time, each followed by a `ping`. Every frame must get its answer
//! (an `identified`, a `pong`, a relay to its receiver) or an error frame that is never 5xx
//! (DynamoDB is up), or, for frames beyond API Gateway's limits, a close; `disconnect` alone
//! has no answer. Every frame received is checked against docs/asyncapi.yaml. A client in
//! another room hears nothing and still works afterwards, and the gateway keeps serving.
//!
//! `FUZZ_SEED` (default 20260501) and `FUZZ_FRAMES` (default 300) make a run reproducible and
//! longer: `FUZZ_FRAMES=5000 cargo test -p switchboard-tests --test ws_fuzz`.

use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use switchboard_tests::contract::FrameContract;
use switchboard_tests::*;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SLOTS: usize = 4;
/// The other room and its client, which the fuzzed sockets must never reach.
const QUIET_ROOM: &str = "room-quiet";
const QUIET_CLIENT: &str = "bystander";
/// Silence longer than this after a frame is a failure.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// API Gateway's frame limit; frames above it may be closed with 1009.
const FRAME_LIMIT: usize = 32 * 1024;
/// A socket quiet this long pings, as a real client does (the example server pings every
/// 60 s): API Gateway closes a socket idle for 10 minutes (1001), and a long run has quiet
/// sockets (the fuzz room's host only listens, the other room's peers only check at the end).
const KEEP_ALIVE: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum Event {
    Frame(Value),
    /// Not JSON, or not text: never sent by Switchboard.
    Garbage(String),
    Closed(Option<u16>),
}

/// A socket whose frames arrive, tagged with its slot, on one channel for all.
struct Conn {
    sink: SplitSink<Socket, Message>,
    generation: u64,
    /// When this socket last sent a frame: the gateway closes a socket quiet for too long.
    last_sent: tokio::time::Instant,
}

async fn open(
    url: &str,
    slot: usize,
    generation: u64,
    events: &mpsc::UnboundedSender<(usize, u64, Event)>,
) -> Conn {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects");
    let (sink, mut stream) = socket.split();
    let events = events.clone();
    tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            let event = match message {
                Ok(Message::Text(text)) => match serde_json::from_str::<Value>(&text) {
                    Ok(frame) => Event::Frame(frame),
                    Err(_) => Event::Garbage(text.to_string()),
                },
                Ok(Message::Close(close)) => Event::Closed(close.map(|c| u16::from(c.code))),
                Ok(Message::Binary(bytes)) => {
                    Event::Garbage(format!("a binary frame of {} bytes", bytes.len()))
                }
                Ok(_) => continue,
                Err(_) => Event::Closed(None),
            };
            let closed = matches!(event, Event::Closed(_));
            if events.send((slot, generation, event)).is_err() || closed {
                return;
            }
        }
        let _ = events.send((slot, generation, Event::Closed(None)));
    });
    Conn {
        sink,
        generation,
        last_sent: tokio::time::Instant::now(),
    }
}

/// What a fuzzed frame must produce.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// An answer on the sender's socket: one of these types (an error frame always counts).
    Answer(&'static [&'static str], &'static str),
    /// A relay to some socket with `sender` = the sender's id, or an error frame.
    Relay,
    /// Nothing for the sender (an explicit leave).
    Nothing,
    /// Beyond API Gateway's limits: an error frame or a close.
    AnswerOrClose,
    /// Not UTF-8 text: an error frame or a close (1007).
    Invalid,
}

struct Fuzzed {
    message: Message,
    expect: Expect,
    describe: String,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e6),
        4 => json!(random_string(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (random_string(rng), random_json(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn random_string(rng: &mut StdRng) -> String {
    let len = *pick(rng, &[0usize, 1, 5, 20, 128, 129, 300]);
    (0..len)
        .map(|_| match rng.random_range(0..6) {
            0 => char::from(rng.random_range(0u8..32)),
            1 => *pick(rng, &['é', '中', '\u{202e}', '\u{0}', '"', '\\', ' ', '😀']),
            _ => char::from(rng.random_range(b'a'..=b'z')),
        })
        .collect()
}

/// A value for an id-like field: valid ids, colliding ones, wrong types, bad strings.
fn id_value(rng: &mut StdRng, room: &str) -> Value {
    match rng.random_range(0..13) {
        0..=6 => json!(format!("fz-{}", rng.random_range(0..6))),
        7 => json!("host"),
        8 => json!(room),
        9 => json!(""),
        10 => json!("x".repeat(129)),
        11 => random_json(rng, 2),
        _ => json!(random_string(rng)),
    }
}

fn generate(rng: &mut StdRng, room: &str, host_id_secret: &str) -> Fuzzed {
    let text = |value: Value| Message::Text(value.to_string().into());
    let roll = rng.random_range(0..100);
    let (message, expect) = match roll {
        // identify, mostly well-formed, into the fuzz room or nowhere.
        0..=9 => (
            text(json!({ "action": "identify", "data": {
                "id": format!("fz-{}", rng.random_range(0..6)), "type": "client", "roomId": room,
            } })),
            Expect::Answer(&["identified"], "identify"),
        ),
        10..=24 => {
            let mut data = serde_json::Map::new();
            if rng.random_bool(0.9) {
                data.insert("id".into(), id_value(rng, room));
            }
            if rng.random_bool(0.9) {
                let kind = match rng.random_range(0..12) {
                    0..=6 => json!("client"),
                    7 => json!("sfu"),
                    8 => json!("host"),
                    9 => json!("server"),
                    10 => json!("admin"),
                    _ => random_json(rng, 2),
                };
                data.insert("type".into(), kind);
            }
            if rng.random_bool(0.85) {
                let room_value = match rng.random_range(0..6) {
                    0..=3 => json!(room),
                    4 => json!("no-such-room"),
                    _ => random_json(rng, 2),
                };
                data.insert("roomId".into(), room_value);
            }
            if rng.random_bool(0.2) {
                data.insert("token".into(), random_json(rng, 2));
            }
            if rng.random_bool(0.2) {
                let host_id = if rng.random_bool(0.1) {
                    json!(host_id_secret)
                } else {
                    random_json(rng, 2)
                };
                data.insert("hostId".into(), host_id);
            }
            let data = if rng.random_bool(0.1) {
                random_json(rng, 1)
            } else {
                Value::Object(data)
            };
            (
                text(json!({ "action": "identify", "data": data })),
                Expect::Answer(&["identified"], "identify"),
            )
        }
        // handshake, to the serving peer, a fuzz peer, itself, nobody, or garbage.
        25..=54 => {
            let mut data = serde_json::Map::new();
            let kind = match rng.random_range(0..8) {
                0..=2 => json!("producer"),
                3..=5 => json!("consumer"),
                6 => json!("offer"),
                _ => random_json(rng, 2),
            };
            data.insert("type".into(), kind);
            if rng.random_bool(0.6) {
                // Now and then the client of the other room: never reachable from here.
                let receiver = if rng.random_bool(0.1) {
                    json!(QUIET_CLIENT)
                } else {
                    id_value(rng, room)
                };
                data.insert("receiver".into(), receiver);
            }
            if rng.random_bool(0.3) {
                data.insert("sender".into(), json!("spoofed"));
            }
            if rng.random_bool(0.3) {
                // A room in the frame is never trusted for routing.
                data.insert(
                    "roomId".into(),
                    json!(*pick(rng, &["elsewhere", QUIET_ROOM])),
                );
            }
            let payload = match rng.random_range(0..6) {
                0 => json!({ "type": "offer", "sdp": "v=0\r\n".repeat(rng.random_range(1..2000)) }),
                1 => serde_json::from_str(&nested(rng.random_range(1..126))).unwrap_or(Value::Null),
                _ => random_json(rng, 0),
            };
            data.insert("description".into(), payload);
            let data = if rng.random_bool(0.08) {
                random_json(rng, 1)
            } else {
                Value::Object(data)
            };
            (
                text(json!({ "action": "handshake", "data": data })),
                Expect::Relay,
            )
        }
        // an explicit leave, sometimes with garbage data.
        55..=61 => {
            let frame = if rng.random_bool(0.5) {
                json!({ "action": "disconnect" })
            } else {
                json!({ "action": "disconnect", "data": random_json(rng, 1) })
            };
            (text(frame), Expect::Nothing)
        }
        62..=66 => (
            text(json!({ "action": "ping", "data": random_json(rng, 2) })),
            Expect::Answer(&["pong"], "default"),
        ),
        // $default: unknown actions, actions of the wrong type, no action, not an object.
        67..=78 => {
            let frame = match rng.random_range(0..7) {
                0 => json!({ "action": random_string(rng) }),
                1 => json!({ "action": "$connect" }),
                2 => json!({ "action": random_json(rng, 2) }),
                3 => json!({ "data": { "id": "x" } }),
                4 => random_json(rng, 0),
                5 => json!({ "action": "IDENTIFY" }),
                _ => json!([{ "action": "identify" }]),
            };
            let answer: &[&str] = if frame.get("action").and_then(Value::as_str) == Some("ping") {
                &["pong"]
            } else {
                &[]
            };
            (text(frame), Expect::Answer(answer, "default"))
        }
        // Not JSON; deeply nested JSON past serde's depth limit.
        79..=84 => {
            let raw = match rng.random_range(0..4) {
                0 => random_string(rng),
                1 => format!(
                    r#"{{"action":"handshake","data":{{"type":"producer","d":{}}}}}"#,
                    nested(*pick(rng, &[127usize, 128, 129, 500, 5000]))
                ),
                2 => format!(r#"{{"action":"identify","data":{}}}"#, nested(10_000)),
                _ => r#"{"action":"identify","data":{"id":"a","#.to_string(),
            };
            let expect = if raw.contains(r#""action":"handshake""#) {
                Expect::Relay
            } else {
                Expect::Answer(&["identified"], "")
            };
            (Message::Text(raw.into()), expect)
        }
        // Binary frames: JSON in them, or bytes that are not UTF-8.
        85..=89 => {
            let bytes: Vec<u8> = if rng.random_bool(0.5) {
                json!({ "action": "ping" }).to_string().into_bytes()
            } else {
                (0..rng.random_range(1..64)).map(|_| rng.random()).collect()
            };
            let expect = if bytes.starts_with(b"{\"action\":\"ping\"") {
                Expect::Answer(&["pong"], "default")
            } else {
                Expect::Answer(&[], "default")
            };
            (Message::Binary(bytes.into()), expect)
        }
        // A text frame that is not UTF-8.
        90..=92 => {
            let mut bytes = br#"{"action":"ping","x":""#.to_vec();
            bytes.extend([0xff, 0xfe, 0xc3]);
            bytes.extend(br#""}"#);
            (
                Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true)),
                Expect::Invalid,
            )
        }
        // Big frames: just under API Gateway's 32 KB, and beyond it.
        _ => {
            let size = *pick(rng, &[FRAME_LIMIT - 200, FRAME_LIMIT + 1024, 140 * 1024]);
            let frame = json!({ "action": "handshake", "data": { "type": "producer", "pad": "p".repeat(size) } });
            let expect = if size < FRAME_LIMIT {
                Expect::Relay
            } else {
                Expect::AnswerOrClose
            };
            (text(frame), expect)
        }
    };
    let describe = match &message {
        Message::Text(t) if t.len() > 160 => {
            format!(
                "text {}… ({} bytes)",
                &t.as_str()[..t.floor_char_boundary(120)],
                t.len()
            )
        }
        Message::Text(t) => format!("text {t}"),
        Message::Binary(b) => format!("binary {} bytes", b.len()),
        _ => "a text frame that is not UTF-8".to_string(),
    };
    Fuzzed {
        message,
        expect,
        describe,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signaling_socket_answers_every_fuzzed_frame_and_isolates_rooms() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_501);
    let frames: usize = std::env::var("FUZZ_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    eprintln!("ws fuzz: FUZZ_SEED={seed} FUZZ_FRAMES={frames}");
    let t = TestStack::start().await;
    fuzz(&t, seed, frames, KEEP_ALIVE, None).await;
}

/// A long run has quiet sockets; the gateway closes a socket idle past its timeout (1001),
/// as API Gateway does at 10 minutes. Here the timeout is 8 s, sockets quiet for 1 s ping,
/// and the fuzzer pauses 10 s halfway: every socket must still be open afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn fuzzed_sockets_outlive_the_gateways_idle_timeout() {
    let mut options = options();
    options.ws_idle_timeout = Duration::from_secs(8);
    let t = TestStack::start_with(options).await;
    fuzz(
        &t,
        20_260_502,
        60,
        Duration::from_secs(1),
        Some((30, Duration::from_secs(10))),
    )
    .await;
}

/// Sockets that were pinged and owe a `pong`; `Drain` consumes them.
struct KeepAlive {
    every: Duration,
    owed: Vec<bool>,
}

impl KeepAlive {
    /// Pings each socket (but `except`, which is about to send) quiet for `every`, and waits
    /// for their pongs. Late relays and departure notices may arrive meanwhile; anything
    /// else, a close above all, fails the run.
    async fn ping_quiet(
        &mut self,
        conns: &mut [Conn],
        except: Option<usize>,
        events: &mut mpsc::UnboundedReceiver<(usize, u64, Event)>,
        contract: &FrameContract,
        context: &str,
    ) {
        let now = tokio::time::Instant::now();
        for (slot, conn) in conns.iter_mut().enumerate() {
            if Some(slot) == except || now.duration_since(conn.last_sent) < self.every {
                continue;
            }
            let ping = Message::Text(json!({ "action": "ping" }).to_string().into());
            if conn.sink.send(ping).await.is_err() {
                panic!("{context}: the keep-alive ping of slot {slot} failed");
            }
            conn.last_sent = now;
            self.owed[slot] = true;
        }
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        while self.owed.iter().any(|owed| *owed) {
            let Ok(Some((from, from_generation, event))) =
                tokio::time::timeout_at(deadline, events.recv()).await
            else {
                panic!(
                    "{context}: no keep-alive pong within {ANSWER_WAIT:?}: {:?}",
                    self.owed
                );
            };
            if from_generation != conns[from].generation {
                continue;
            }
            let frame = match event {
                Event::Frame(frame) => frame,
                other => panic!("{context}: slot {from} while keeping alive: {other:?}"),
            };
            if let Err(broken) = contract.check(&frame) {
                panic!("{context}: slot {from}: {broken}");
            }
            match frame["type"].as_str().unwrap_or_default() {
                "pong" if self.owed[from] => self.owed[from] = false,
                "producer" | "consumer" | "clientDisconnect" | "sfuDisconnect" => {}
                _ => panic!("{context}: slot {from} received {frame} while keeping alive"),
            }
        }
    }

    /// The other room's peers ping too; a pong is all they may hear.
    async fn ping_peer(&self, peer: &mut Peer, last: &mut tokio::time::Instant) {
        if last.elapsed() < self.every {
            return;
        }
        peer.send_raw(json!({ "action": "ping" }).to_string()).await;
        *last = tokio::time::Instant::now();
        let name = peer.name.clone();
        assert_eq!(
            peer.recv("a keep-alive pong").await,
            json!({ "type": "pong" }),
            "{name} heard something"
        );
    }
}

/// Runs `frames` fuzzed frames (after the scripted ones) seeded by `seed` against `t`'s
/// gateway; sockets quiet for `keep_alive` ping. `rest`: after that step, every socket is
/// quiet (but for its pings) that long.
async fn fuzz(
    t: &TestStack,
    seed: u64,
    frames: usize,
    keep_alive: Duration,
    rest: Option<(usize, Duration)>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let contract = FrameContract::get();
    let url = t.stack.ws_url.clone();

    // The fuzz room, served by a host; and another room whose client must hear nothing.
    let room = "room-fuzz";
    let host_secret = "host-fuzz-secret";
    assert_eq!(t.heartbeat(host_secret, room, "local", "busy").await.0, 200);
    assert_eq!(
        t.heartbeat("host-quiet-secret", QUIET_ROOM, "local", "busy")
            .await
            .0,
        200
    );
    let mut quiet_host = Peer::connect(&url, "quiet host").await;
    let ack = quiet_host
        .identify(json!({ "id": "host", "type": "host", "roomId": QUIET_ROOM, "hostId": "host-quiet-secret" }))
        .await;
    assert_eq!(ack["type"], "identified");
    let mut peers_pinged = tokio::time::Instant::now();
    let mut bystander = Peer::connect(&url, "bystander").await;
    let ack = bystander
        .identify(json!({ "id": QUIET_CLIENT, "type": "client", "roomId": QUIET_ROOM }))
        .await;
    assert_eq!(ack["type"], "identified");
    let mut bystander_pinged = tokio::time::Instant::now();

    let (events_tx, mut events) = mpsc::unbounded_channel::<(usize, u64, Event)>();
    // Slot SLOTS is the fuzz room's host; it only listens.
    let mut host = open(&url, SLOTS, 0, &events_tx).await;
    host.sink
        .send(Message::Text(
            json!({ "action": "identify", "data": { "id": "host", "type": "host", "roomId": room, "hostId": host_secret } })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    match tokio::time::timeout(ANSWER_WAIT, events.recv()).await {
        Ok(Some((SLOTS, _, Event::Frame(ack)))) => {
            assert_eq!(ack["type"], "identified", "the fuzz room's host: {ack}")
        }
        other => panic!("the fuzz room's host was not identified: {other:?}"),
    }
    let mut conns = Vec::new();
    for slot in 0..SLOTS {
        conns.push(open(&url, slot, 0, &events_tx).await);
    }
    // The host is the last slot: it is never fuzzed, only kept alive.
    conns.push(host);
    let mut keep = KeepAlive {
        every: keep_alive,
        owed: vec![false; SLOTS + 1],
    };
    // Who each slot is identified as, for telling its relays apart.
    let mut identified: Vec<Option<String>> = vec![None; SLOTS];
    let mut generation = 0u64;
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();

    // Fixed impossible orders first, then the generated frames.
    let scripted: Vec<(usize, Fuzzed)> = vec![
        (
            0,
            scripted_frame(
                json!({ "action": "handshake", "data": { "type": "producer" } }),
                Expect::Relay,
            ),
        ),
        (
            0,
            scripted_frame(
                json!({ "action": "identify", "data": { "id": "fz-0", "type": "client", "roomId": room } }),
                Expect::Answer(&["identified"], "identify"),
            ),
        ),
        (
            0,
            scripted_frame(
                json!({ "action": "identify", "data": { "id": "fz-0", "type": "client", "roomId": room } }),
                Expect::Answer(&["identified"], "identify"),
            ),
        ),
        (
            0,
            scripted_frame(json!({ "action": "disconnect" }), Expect::Nothing),
        ),
        (
            0,
            scripted_frame(
                json!({ "action": "handshake", "data": { "type": "producer" } }),
                Expect::Relay,
            ),
        ),
        (
            0,
            scripted_frame(
                json!({ "action": "identify", "data": { "id": "fz-0", "type": "client", "roomId": room } }),
                Expect::Answer(&["identified"], "identify"),
            ),
        ),
        (
            1,
            scripted_frame(json!({ "action": "disconnect" }), Expect::Nothing),
        ),
        (
            1,
            scripted_frame(
                json!({ "action": "identify", "data": { "id": "fz-0", "type": "client", "roomId": room } }),
                Expect::Answer(&["identified"], "identify"),
            ),
        ),
    ];
    let mut plan = scripted.into_iter();
    let total = frames + 8;
    for step in 0..total {
        let (slot, fuzzed) = match plan.next() {
            Some(planned) => planned,
            None => (
                rng.random_range(0..SLOTS),
                generate(&mut rng, room, host_secret),
            ),
        };
        let context = format!(
            "step {step} (FUZZ_SEED={seed}), slot {slot} ({:?}) sent {}",
            identified[slot], fuzzed.describe
        );
        let sender_id = identified[slot].clone();
        keep.ping_quiet(&mut conns, Some(slot), &mut events, contract, &context)
            .await;
        keep.ping_peer(&mut quiet_host, &mut peers_pinged).await;
        keep.ping_peer(&mut bystander, &mut bystander_pinged).await;
        if conns[slot].sink.send(fuzzed.message.clone()).await.is_err() {
            panic!("{context}: the send failed");
        }
        conns[slot].last_sent = tokio::time::Instant::now();
        let _ = conns[slot]
            .sink
            .send(Message::Text(
                json!({ "action": "ping" }).to_string().into(),
            ))
            .await;
        let pongs_wanted = 1 + usize::from(fuzzed.expect == Expect::Answer(&["pong"], "default"));
        let mut pongs = 0;
        let mut answered = false;
        let mut closed = false;
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            let done_answer = match fuzzed.expect {
                Expect::Nothing => true,
                Expect::Answer(kinds, _) if kinds == ["pong"] => true,
                _ => answered,
            };
            if closed || (pongs >= pongs_wanted && done_answer) {
                break;
            }
            let Ok(Some((from, from_generation, event))) =
                tokio::time::timeout_at(deadline, events.recv()).await
            else {
                panic!(
                    "{context}: silence (pongs {pongs}/{pongs_wanted}, answered {answered}) within {ANSWER_WAIT:?}"
                );
            };
            if from < SLOTS && from_generation != conns[from].generation {
                continue; // a socket already replaced
            }
            let frame = match event {
                Event::Frame(frame) => frame,
                Event::Garbage(what) => panic!("{context}: slot {from} received {what}"),
                Event::Closed(code) => {
                    assert_eq!(from, slot, "{context}: slot {from} closed ({code:?})");
                    match (&fuzzed.expect, code) {
                        (Expect::AnswerOrClose, Some(1009) | None) => {}
                        (Expect::Invalid, Some(1007) | None) => {}
                        other => panic!("{context}: the socket closed: {other:?}"),
                    }
                    *tally.entry(format!("closed {code:?}")).or_default() += 1;
                    closed = true;
                    continue;
                }
            };
            if let Err(broken) = contract.check(&frame) {
                panic!("{context}: slot {from}: {broken}");
            }
            let kind = frame["type"].as_str().unwrap_or_default().to_string();
            if kind == "error" {
                let status = frame["status"].as_u64().unwrap_or_default();
                assert!(
                    status < 500,
                    "{context}: an error frame of status {status} with DynamoDB up: {frame}"
                );
            }
            if from != slot {
                // Relays and departure notices reach the others; nothing else may.
                assert!(
                    matches!(
                        kind.as_str(),
                        "producer" | "consumer" | "clientDisconnect" | "sfuDisconnect"
                    ),
                    "{context}: slot {from} received {frame}"
                );
                if matches!(kind.as_str(), "producer" | "consumer")
                    && sender_id.is_some()
                    && frame["sender"].as_str() == sender_id.as_deref()
                {
                    answered = true;
                    *tally.entry("relayed".into()).or_default() += 1;
                }
                continue;
            }
            match kind.as_str() {
                "pong" => pongs += 1,
                "error" => {
                    if let Expect::Answer(_, action) = fuzzed.expect
                        && !action.is_empty()
                    {
                        assert_eq!(frame["action"], action, "{context}: {frame}");
                    }
                    assert!(
                        fuzzed.expect != Expect::Nothing,
                        "{context}: an explicit leave answered {frame}"
                    );
                    answered = true;
                    *tally
                        .entry(format!("error {}", frame["status"]))
                        .or_default() += 1;
                }
                "identified" => {
                    assert!(
                        matches!(fuzzed.expect, Expect::Answer(kinds, _) if kinds.contains(&"identified")),
                        "{context}: {frame}"
                    );
                    identified[slot] = frame["id"].as_str().map(String::from);
                    answered = true;
                    *tally.entry("identified".into()).or_default() += 1;
                }
                "producer" | "consumer" => {
                    // Its own relay (receiver = itself), or another's relay to it.
                    if sender_id.is_some() && frame["sender"].as_str() == sender_id.as_deref() {
                        answered = true;
                        *tally.entry("relayed".into()).or_default() += 1;
                    }
                }
                "clientDisconnect" | "sfuDisconnect" => {}
                other => panic!("{context}: unexpected {other}: {frame}"),
            }
        }
        if fuzzed.expect == Expect::Nothing {
            identified[slot] = None;
        }
        if closed {
            // The gateway refused the frame by closing the socket: a new one takes its place.
            generation += 1;
            conns[slot] = open(&url, slot, generation, &events_tx).await;
            identified[slot] = None;
        }
        if let Some((after, quiet)) = rest
            && step == after
        {
            eprintln!("ws fuzz: quiet for {quiet:?} after step {step}");
            let until = tokio::time::Instant::now() + quiet;
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(keep.every / 4).await;
                let context = format!("quiet after step {step} (FUZZ_SEED={seed})");
                keep.ping_quiet(&mut conns, None, &mut events, contract, &context)
                    .await;
                keep.ping_peer(&mut quiet_host, &mut peers_pinged).await;
                keep.ping_peer(&mut bystander, &mut bystander_pinged).await;
            }
        }
    }
    eprintln!(
        "ws fuzz: {total} frames: {tally:?} ({:?})",
        std::time::SystemTime::now()
    );

    // The other room heard nothing, and its client and host still work.
    bystander.expect_silence(Duration::from_millis(300)).await;
    quiet_host.expect_silence(Duration::from_millis(100)).await;
    bystander
        .send(
            "handshake",
            json!({ "type": "producer", "description": { "type": "offer", "sdp": "v=0" } }),
        )
        .await;
    let relayed = quiet_host.recv("the bystander's offer").await;
    assert_eq!(relayed["sender"], "bystander", "{relayed}");
    bystander
        .send_raw(json!({ "action": "ping" }).to_string())
        .await;
    assert_eq!(bystander.recv("pong").await, json!({ "type": "pong" }));

    // The gateway keeps serving: a new client joins the fuzzed room and reaches its host.
    let mut late = Peer::connect(&url, "late").await;
    let ack = late
        .identify(json!({ "id": "late-client", "type": "client", "roomId": room }))
        .await;
    assert_eq!(ack["type"], "identified", "{ack}");
    let (status, body) = t
        .call("GET", "/getRoomId?urlPath=anything", None, None)
        .await;
    assert_eq!(status, 404, "{body}");
    eprintln!("ws fuzz: end ({:?})", std::time::SystemTime::now());
    drop(conns);
}

fn scripted_frame(frame: Value, expect: Expect) -> Fuzzed {
    Fuzzed {
        describe: format!("text {frame}"),
        message: Message::Text(frame.to_string().into()),
        expect,
    }
}
