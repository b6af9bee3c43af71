//! The WebSocket API over real sockets: the local stack's gateway, the production handlers,
//! the `@connections` endpoint and DynamoDB Local.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::*;

const QUIET: Duration = Duration::from_millis(400);

/// createRoom, then the SFU the task would run: connects and identifies with its token.
async fn launch_sfu(t: &TestStack) -> (String, Peer) {
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "createRoom: {body}");
    let room = body["roomId"].as_str().unwrap().to_string();
    let token = t.task_env(&room, "SFU_TOKEN");
    let mut sfu = Peer::connect(&t.task_env(&room, "SIGNAL_SERVER_URL"), "sfu").await;
    // The Arbiter SFU identifies with its room id as `id`, plus our token.
    let ack = sfu
        .identify(json!({ "id": room, "type": "sfu", "token": token }))
        .await;
    assert_eq!(
        ack,
        json!({ "type": "identified", "id": room, "roomId": room })
    );
    (room, sfu)
}

async fn join(t: &TestStack, room: &str, id: &str) -> Peer {
    let mut peer = Peer::connect(&t.stack.ws_url, id).await;
    let ack = peer
        .identify(json!({ "id": id, "roomId": room, "type": "client" }))
        .await;
    assert_eq!(
        ack,
        json!({ "type": "identified", "id": id, "roomId": room }),
        "{id} joins {room}"
    );
    peer
}

fn offer(sdp: &str) -> Value {
    json!({ "type": "offer", "sdp": sdp })
}

#[tokio::test(flavor = "multi_thread")]
async fn sfu_room_flow_end_to_end() {
    let t = TestStack::start().await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let (status, claimed) = t
        .call(
            "PATCH",
            "/claimRoom",
            Some(r#"{"urlPath":"/weekly"}"#),
            None,
        )
        .await;
    assert_eq!(
        (status, claimed["id"].as_str()),
        (200, Some(room.as_str())),
        "the identified SFU made its room claimable"
    );

    let mut alice = join(&t, &room, "alice").await;
    let mut bob = join(&t, &room, "bob").await;

    // Arbiter's producer offer: `sender` spoofed, `roomId` along; no receiver -> the SFU.
    alice
        .send("handshake", json!({ "type": "producer", "sender": "mallory", "description": offer("v=0 alice"), "roomId": room }))
        .await;
    let got = sfu.recv("alice's producer offer").await;
    assert_eq!(
        got,
        json!({ "type": "producer", "sender": "alice", "description": offer("v=0 alice"), "roomId": room })
    );

    // The SFU answers the right client only.
    let answer = json!({ "type": "answer", "sdp": "v=0 sfu" });
    sfu.send(
        "handshake",
        json!({ "type": "producer", "receiver": "alice", "description": answer, "sender": room }),
    )
    .await;
    let got = alice.recv("the SFU's answer").await;
    assert_eq!(got["description"], answer);
    assert_eq!(got["sender"], room.as_str());
    bob.expect_silence(QUIET).await;

    // ICE both ways.
    let candidate =
        json!({ "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0" });
    alice
        .send(
            "handshake",
            json!({ "type": "producer", "candidate": candidate, "roomId": room }),
        )
        .await;
    assert_eq!(sfu.recv("alice's candidate").await["candidate"], candidate);
    sfu.send(
        "handshake",
        json!({ "type": "producer", "receiver": "alice", "candidate": candidate }),
    )
    .await;
    assert_eq!(
        alice.recv("the SFU's candidate").await["candidate"],
        candidate
    );

    // Consumer offer for bob's media, to alice, with remotePeerId.
    sfu.send("handshake", json!({ "type": "consumer", "receiver": "alice", "remotePeerId": "bob", "description": offer("v=0 consume bob") }))
        .await;
    let got = alice.recv("the consumer offer").await;
    assert_eq!(
        (got["type"].as_str(), got["remotePeerId"].as_str()),
        (Some("consumer"), Some("bob"))
    );
    alice
        .send(
            "handshake",
            json!({ "type": "consumer", "remotePeerId": "bob", "description": answer }),
        )
        .await;
    let got = sfu.recv("alice's consumer answer").await;
    assert_eq!(
        (got["sender"].as_str(), got["remotePeerId"].as_str()),
        (Some("alice"), Some("bob"))
    );
    bob.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_room_flow_end_to_end() {
    let t = TestStack::start().await;
    assert_eq!(
        t.heartbeat("secret-host-id", "game-7", "local", "idle")
            .await
            .0,
        200
    );
    let mut host = Peer::connect(&t.stack.ws_url, "host").await;
    let ack = host
        .identify(
            json!({ "id": "host", "type": "host", "roomId": "game-7", "hostId": "secret-host-id" }),
        )
        .await;
    assert_eq!(
        ack,
        json!({ "type": "identified", "id": "host", "roomId": "game-7" })
    );

    let (status, matched) = t.find_match(Some("local")).await;
    assert_eq!(status, 200, "{matched}");
    let mut viewer = Peer::connect(matched["signalingUrl"].as_str().unwrap(), "viewer").await;
    viewer
        .identify(json!({ "id": "viewer-1", "type": "client", "roomId": matched["roomId"] }))
        .await;
    viewer
        .send(
            "handshake",
            json!({ "type": "producer", "description": offer("v=0 viewer") }),
        )
        .await;
    let got = host.recv("the viewer's offer").await;
    assert_eq!(
        (got["sender"].as_str(), got["description"]["sdp"].as_str()),
        (Some("viewer-1"), Some("v=0 viewer"))
    );
    host.send("handshake", json!({ "type": "producer", "receiver": "viewer-1", "description": {"type": "answer", "sdp": "v=0 host"} }))
        .await;
    let got = viewer.recv("the host's answer").await;
    assert_eq!(
        (got["sender"].as_str(), got["description"]["type"].as_str()),
        (Some("host"), Some("answer"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identify_needs_the_right_proof() {
    let t = TestStack::start().await;
    let (room, _sfu) = launch_sfu(&t).await;
    t.heartbeat("the-real-host", "host-room", "local", "idle")
        .await;
    let error = |status: u16, message: &str| json!({ "type": "error", "action": "identify", "status": status, "message": message });

    let cases = [
        (
            json!({ "id": "x", "roomId": room }),
            error(400, "Missing valid type property"),
        ),
        (
            json!({ "id": "x", "roomId": room, "type": "admin" }),
            error(400, "Missing valid type property"),
        ),
        (
            json!({ "id": room, "type": "sfu" }),
            error(401, "Unauthorized"),
        ),
        (
            json!({ "id": room, "type": "sfu", "token": "guess" }),
            error(401, "Unauthorized"),
        ),
        (
            json!({ "id": "h", "type": "host", "roomId": "host-room" }),
            error(401, "Unauthorized"),
        ),
        (
            json!({ "id": "h", "type": "host", "roomId": "host-room", "hostId": "not-it" }),
            error(401, "Unauthorized"),
        ),
        (
            json!({ "id": "h", "type": "host", "roomId": room, "hostId": "the-real-host" }),
            error(401, "Unauthorized"),
        ),
        (
            json!({ "id": "x", "type": "client", "roomId": "no-such-room" }),
            error(404, "Room not found"),
        ),
        (
            json!({ "type": "client", "roomId": room }),
            error(400, "missing id"),
        ),
        (
            json!({ "id": "x", "type": "client" }),
            error(400, "missing roomId"),
        ),
    ];
    for (data, expected) in cases {
        let mut peer = Peer::connect(&t.stack.ws_url, "impostor").await;
        assert_eq!(
            peer.identify(data.clone()).await,
            expected,
            "identify {data}"
        );
        // Refused means not identified: it cannot send handshakes.
        peer.send(
            "handshake",
            json!({ "type": "producer", "description": offer("x") }),
        )
        .await;
        assert_eq!(
            peer.recv("the refusal").await["message"],
            "WebSocket Connection Not Found"
        );
    }

    // A client's id is its own in a room; the SFU's is taken over only with the token.
    let _alice = join(&t, &room, "alice").await;
    let mut twin = Peer::connect(&t.stack.ws_url, "twin").await;
    assert_eq!(
        twin.identify(json!({ "id": "alice", "type": "client", "roomId": room }))
            .await,
        error(409, "id is already in use in this room")
    );
    let mut posing = Peer::connect(&t.stack.ws_url, "posing").await;
    assert_eq!(
        posing
            .identify(json!({ "id": room, "type": "client", "roomId": room }))
            .await,
        error(409, "id is reserved for the room's serving peer")
    );
    let mut again = join(&t, &room, "carol").await;
    assert_eq!(
        again
            .identify(json!({ "id": "dave", "type": "client", "roomId": room }))
            .await,
        error(409, "Connection is already identified")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_in_room_a_never_reaches_room_b() {
    let t = TestStack::start().await;
    let (room_a, mut sfu_a) = launch_sfu(&t).await;
    let (room_b, mut sfu_b) = launch_sfu(&t).await;
    let mut alice = join(&t, &room_a, "alice").await;
    let mut bob = join(&t, &room_b, "bob").await;

    // Addressed to a peer of B, or to B's SFU by id: not found in A.
    for receiver in ["bob", room_b.as_str()] {
        alice
            .send(
                "handshake",
                json!({ "type": "producer", "receiver": receiver, "description": offer("x") }),
            )
            .await;
        let refusal = alice.recv("the refusal").await;
        assert_eq!(
            refusal,
            json!({ "type": "error", "action": "handshake", "status": 404, "message": "Receiver not found" })
        );
    }
    // A roomId in the frame is not trusted for routing: it goes to A's SFU.
    alice
        .send(
            "handshake",
            json!({ "type": "producer", "roomId": room_b, "description": offer("sneaky") }),
        )
        .await;
    assert_eq!(sfu_a.recv("alice's offer").await["sender"], "alice");
    sfu_b.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_an_error_frame() {
    let t = TestStack::start().await;
    let (room, _sfu) = launch_sfu(&t).await;
    let mut peer = Peer::connect(&t.stack.ws_url, "peer").await;

    peer.send(
        "handshake",
        json!({ "type": "producer", "description": offer("x") }),
    )
    .await;
    assert_eq!(
        peer.recv("unidentified").await,
        json!({ "type": "error", "action": "handshake", "status": 400, "message": "WebSocket Connection Not Found" })
    );
    peer.send_raw("{not json".into()).await;
    let frame = peer.recv("malformed JSON").await;
    assert_eq!(
        (
            frame["type"].as_str(),
            frame["status"].as_u64(),
            frame["message"].as_str()
        ),
        (Some("error"), Some(400), Some("Malformed JSON"))
    );
    peer.send_raw(json!({ "action": "teleport" }).to_string())
        .await;
    assert_eq!(
        peer.recv("unknown action").await["message"],
        "Unknown action: teleport"
    );
    peer.send_raw(json!({ "data": {} }).to_string()).await;
    assert_eq!(peer.recv("no action").await["message"], "Missing action");
    peer.send_raw(json!({ "action": "ping" }).to_string()).await;
    assert_eq!(peer.recv("pong").await, json!({ "type": "pong" }));

    peer.identify(json!({ "id": "p", "type": "client", "roomId": room }))
        .await;
    peer.send("handshake", json!({ "description": offer("x") }))
        .await;
    assert_eq!(
        peer.recv("missing type").await["message"],
        "Missing valid type property"
    );
    peer.send(
        "handshake",
        json!({ "type": "producer", "receiver": "nobody", "description": offer("x") }),
    )
    .await;
    assert_eq!(peer.recv("unknown receiver").await["status"], 404);
    // A receiver is an identifier like any other id.
    for (receiver, message) in [
        (String::new(), "missing receiver"),
        ("r".repeat(2048), "receiver must be at most 128 characters"),
    ] {
        peer.send(
            "handshake",
            json!({ "type": "producer", "receiver": receiver, "description": offer("x") }),
        )
        .await;
        assert_eq!(
            peer.recv("a malformed receiver").await,
            json!({ "type": "error", "action": "handshake", "status": 400, "message": message })
        );
    }
    peer.send("handshake", json!("not an object")).await;
    assert_eq!(
        peer.recv("data not an object").await["message"],
        "data must be an object"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_right_after_identify_is_routed() {
    let t = TestStack::start().await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let mut peers = Vec::new();
    for i in 0..10 {
        let mut peer = Peer::connect(&t.stack.ws_url, "eager").await;
        let id = format!("eager-{i}");
        // No waiting for the acknowledgement: identify and offer back to back.
        peer.send(
            "identify",
            json!({ "id": id, "type": "client", "roomId": room }),
        )
        .await;
        peer.send(
            "handshake",
            json!({ "type": "producer", "description": offer("now") }),
        )
        .await;
        let ack = peer.recv("ack").await;
        assert_eq!(ack["type"], "identified", "{ack}");
        assert_eq!(sfu.recv("the eager offer").await["sender"], id.as_str());
        peers.push(peer);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_notifies_exactly_the_room() {
    let t = TestStack::start().await;
    let (room, mut sfu) = launch_sfu(&t).await;
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"team"}"#), None)
            .await
            .1["roomId"],
        room.as_str()
    );
    let (other_room, mut other_sfu) = launch_sfu(&t).await;
    let alice = join(&t, &room, "alice").await;
    let mut bob = join(&t, &room, "bob").await;
    let mut carol = join(&t, &room, "carol").await;
    let mut outsider = join(&t, &other_room, "outsider").await;

    alice.close().await;
    let expected = json!({ "type": "clientDisconnect", "clientId": "alice" });
    assert_eq!(sfu.recv("alice leaving").await, expected);
    assert_eq!(bob.recv("alice leaving").await, expected);
    assert_eq!(carol.recv("alice leaving").await, expected);

    // An explicit leave keeps the socket but ends the membership.
    bob.send("disconnect", json!({})).await;
    assert_eq!(
        sfu.recv("bob leaving").await,
        json!({ "type": "clientDisconnect", "clientId": "bob" })
    );
    assert_eq!(carol.recv("bob leaving").await["clientId"], "bob");
    bob.send(
        "handshake",
        json!({ "type": "producer", "description": offer("x") }),
    )
    .await;
    assert_eq!(
        bob.recv("after leaving").await["message"],
        "WebSocket Connection Not Found"
    );
    // The socket is still open: it may join again, and speak again.
    assert_eq!(
        bob.identify(json!({ "id": "bob", "type": "client", "roomId": room }))
            .await["type"],
        "identified"
    );
    bob.send(
        "handshake",
        json!({ "type": "producer", "description": offer("back") }),
    )
    .await;
    assert_eq!(sfu.recv("bob again").await["sender"], "bob");
    bob.send("disconnect", json!({})).await;
    assert_eq!(sfu.recv("bob leaving again").await["clientId"], "bob");
    assert_eq!(carol.recv("bob leaving again").await["clientId"], "bob");

    // The SFU's socket closes: nobody is told while it may come back (the reconnect grace).
    sfu.close().await;
    carol.expect_silence(QUIET).await;
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=team", None, None).await.0,
        200,
        "the room outlives its SFU's socket"
    );
    // The grace lapses: the sweeper tells its clients, and the room is gone.
    t.clock.advance(31);
    assert_eq!(t.stack.sweep().await.ended, std::slice::from_ref(&room));
    assert_eq!(
        carol.recv("the SFU leaving").await,
        json!({ "type": "sfuDisconnect", "sfuId": room })
    );
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=team", None, None).await.0,
        404,
        "the room stops existing"
    );
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"team"}"#), None)
            .await
            .1["roomId"],
        other_room.as_str(),
        "a new claim gets the other warm room, never the departed one"
    );
    outsider.expect_silence(QUIET).await;
    other_sfu.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_socket_is_cleaned_up_on_the_next_post() {
    let mut options = options();
    // As when API Gateway's best-effort $disconnect never arrives.
    options.deliver_disconnect = false;
    let t = TestStack::start_with(options).await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let alice = join(&t, &room, "alice").await;
    alice.kill();
    // Wait until the gateway has seen the socket go (the SFU's socket stays).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t.stack.open_sockets() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway noticed the dead socket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        t.store().member(&room, "alice").await.unwrap().is_some(),
        "no $disconnect: the records are stale"
    );

    sfu.send(
        "handshake",
        json!({ "type": "producer", "receiver": "alice", "description": offer("late") }),
    )
    .await;
    assert_eq!(sfu.recv("the gone receiver").await["status"], 404);
    assert!(
        t.store().member(&room, "alice").await.unwrap().is_none(),
        "the 410 removed the target's records"
    );
    // The sender is unharmed.
    sfu.send_raw(json!({ "action": "ping" }).to_string()).await;
    assert_eq!(sfu.recv("pong").await["type"], "pong");
    assert!(
        t.store().member(&room, &room).await.unwrap().is_some(),
        "the SFU's own records stay"
    );
}

/// Kills `peer` (no `$disconnect` reaches the stack) and corrupts its connection record so
/// that removing its records after a 410 fails for real: the member key it names has a sort
/// key over DynamoDB's 1 KB limit, which DynamoDB refuses (ValidationException).
async fn kill_with_a_cleanup_that_fails(t: &TestStack, room: &str, peer: Peer) {
    let id = peer.name.clone();
    let connection = t
        .store()
        .member(room, &id)
        .await
        .unwrap()
        .expect("a member")
        .connection_id;
    let open = t.stack.open_sockets();
    peer.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t.stack.open_sockets() >= open {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway noticed the dead socket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.store()
        .client()
        .update_item()
        .table_name(&t.store().tables().connections)
        .key(
            "connectionId",
            aws_sdk_dynamodb::types::AttributeValue::S(connection),
        )
        .update_expression("SET peerId = :oversized")
        .expression_attribute_values(
            ":oversized",
            aws_sdk_dynamodb::types::AttributeValue::S("x".repeat(2048)),
        )
        .send()
        .await
        .expect("UpdateItem");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_cleanup_never_fails_the_sender() {
    let mut options = options();
    options.deliver_disconnect = false;
    let t = TestStack::start_with(options).await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let broken = join(&t, &room, "broken").await;
    kill_with_a_cleanup_that_fails(&t, &room, broken).await;

    sfu.send(
        "handshake",
        json!({ "type": "producer", "receiver": "broken", "description": offer("late") }),
    )
    .await;
    assert_eq!(
        sfu.recv("the gone receiver").await,
        json!({ "type": "error", "action": "handshake", "status": 404, "message": "Receiver not found" })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_departure_reaches_every_member_even_when_a_cleanup_fails() {
    const CLIENTS: usize = 40;
    let mut options = options();
    options.deliver_disconnect = false;
    let t = TestStack::start_with(options).await;
    let (room, mut sfu) = launch_sfu(&t).await;
    // Sorts before every other client: the first member the departure reaches.
    let broken = join(&t, &room, "a-broken").await;
    let t = &t;
    let room = room.as_str();
    let mut clients = futures_util::future::join_all(
        (0..CLIENTS).map(|i| async move { join(t, room, &format!("m{i:02}")).await }),
    )
    .await;
    kill_with_a_cleanup_that_fails(t, room, broken).await;

    let mut leaver = clients.remove(0);
    leaver.send("disconnect", json!({})).await;
    let expected = json!({ "type": "clientDisconnect", "clientId": "m00" });
    assert_eq!(sfu.recv("m00 leaving").await, expected);
    let heard = futures_util::future::join_all(clients.iter_mut().map(|peer| async {
        let name = peer.name.clone();
        (name, peer.recv("m00 leaving").await)
    }))
    .await;
    for (name, frame) in heard {
        assert_eq!(frame, expected, "{name} heard of the departure");
    }
    // The leaver's request did not fail because of someone else's records.
    leaver.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_holds_at_most_its_member_cap_under_concurrency() {
    const CAP: usize = 5;
    let mut options = options();
    options
        .vars
        .insert("SWITCHBOARD_MAX_ROOM_MEMBERS".into(), CAP.to_string());
    let t = TestStack::start_with(options).await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let t = &t;
    let room = room.as_str();

    // Twelve clients identify at once.
    let answers = futures_util::future::join_all((0..12).map(|i| async move {
        let id = format!("c{i:02}");
        let mut peer = Peer::connect(&t.stack.ws_url, &id).await;
        let answer = peer
            .identify(json!({ "id": id, "type": "client", "roomId": room }))
            .await;
        (id, peer, answer)
    }))
    .await;
    let full =
        json!({ "type": "error", "action": "identify", "status": 409, "message": "Room is full" });
    let (mut members, mut refused): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|(_, _, answer)| answer["type"] == "identified");
    assert_eq!(members.len(), CAP, "exactly the cap gets in");
    assert_eq!(refused.len(), 12 - CAP);
    for (id, _, answer) in &refused {
        assert_eq!(*answer, full, "{id}");
    }
    // The serving peer is no client: it is not counted, and still reaches the room.
    members[0]
        .1
        .send(
            "handshake",
            json!({ "type": "producer", "description": offer("in") }),
        )
        .await;
    assert_eq!(
        sfu.recv("a member's offer").await["sender"],
        members[0].0.as_str()
    );

    // A member identifying again is not counted twice.
    let (id, peer, _) = &mut members[1];
    let again = peer
        .identify(json!({ "id": id, "type": "client", "roomId": room }))
        .await;
    assert_eq!(again["type"], "identified", "{again}");
    let (_, outsider, _) = &mut refused[0];
    assert_eq!(
        outsider
            .identify(json!({ "id": "late", "type": "client", "roomId": room }))
            .await,
        full
    );

    // One leaves: one more gets in, and then the room is full again.
    let (_, leaver, _) = members.pop().expect("a member");
    leaver.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = outsider
            .identify(json!({ "id": "late", "type": "client", "roomId": room }))
            .await;
        if answer["type"] == "identified" {
            break;
        }
        assert_eq!(answer, full);
        assert!(
            tokio::time::Instant::now() < deadline,
            "a place frees up when a member leaves"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, other, _) = &mut refused[1];
    assert_eq!(
        other
            .identify(json!({ "id": "later", "type": "client", "roomId": room }))
            .await,
        full
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_count_that_drifted_heals_itself() {
    let mut options = options();
    options
        .vars
        .insert("SWITCHBOARD_MAX_ROOM_MEMBERS".into(), "3".into());
    let t = TestStack::start_with(options).await;
    let (room, _sfu) = launch_sfu(&t).await;
    let _alice = join(&t, &room, "alice").await;
    // As if members had died without $disconnect and expired: the counter says full.
    t.store()
        .client()
        .update_item()
        .table_name(&t.store().tables().rooms)
        .key(
            "roomId",
            aws_sdk_dynamodb::types::AttributeValue::S(room.clone()),
        )
        .update_expression("SET memberCount = :n")
        .expression_attribute_values(":n", aws_sdk_dynamodb::types::AttributeValue::N("3".into()))
        .send()
        .await
        .expect("UpdateItem");
    // The live members are counted again: two more fit, and not a third.
    let _bob = join(&t, &room, "bob").await;
    let _carol = join(&t, &room, "carol").await;
    let mut dave = Peer::connect(&t.stack.ws_url, "dave").await;
    assert_eq!(
        dave.identify(json!({ "id": "dave", "type": "client", "roomId": room }))
            .await,
        json!({ "type": "error", "action": "identify", "status": 409, "message": "Room is full" })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_clients_across_twenty_rooms() {
    const ROOMS: usize = 20;
    const CLIENTS: usize = 10;
    let t = TestStack::start().await;
    let mut rooms = Vec::new();
    for _ in 0..ROOMS {
        rooms.push(launch_sfu(&t).await);
    }
    let t = &t;
    let room_ids: Vec<String> = rooms.iter().map(|(r, _)| r.clone()).collect();

    // Every client joins and offers at once.
    let clients =
        futures_util::future::join_all(room_ids.iter().enumerate().flat_map(|(r, room)| {
            (0..CLIENTS).map(move |c| async move {
                let id = format!("c{r}-{c}");
                let mut peer = join(t, room, &id).await;
                peer.send(
                    "handshake",
                    json!({ "type": "producer", "description": offer(&format!("offer {id}")) }),
                )
                .await;
                (room.clone(), id, peer)
            })
        }))
        .await;

    // Each SFU gets exactly its own clients' offers, and answers each.
    let sfus = futures_util::future::join_all(rooms.into_iter().enumerate().map(|(r, (room, mut sfu))| async move {
        let mut senders = BTreeSet::new();
        for _ in 0..CLIENTS {
            let got = sfu.recv("a client's offer").await;
            let sender = got["sender"].as_str().unwrap().to_string();
            assert_eq!(got["description"]["sdp"], format!("offer {sender}"), "offer intact");
            assert!(sender.starts_with(&format!("c{r}-")), "{sender}'s offer reached room {r}'s SFU");
            senders.insert(sender);
        }
        assert_eq!(senders.len(), CLIENTS, "room {room}: every offer once");
        for sender in &senders {
            sfu.send("handshake", json!({ "type": "producer", "receiver": sender, "description": {"type": "answer", "sdp": format!("answer {sender}")} }))
                .await;
        }
        sfu.expect_silence(QUIET).await;
        sfu
    }))
    .await;

    let answered = futures_util::future::join_all(clients.into_iter().map(
        |(room, id, mut peer)| async move {
            let got = peer.recv("its answer").await;
            assert_eq!(
                got["description"]["sdp"],
                format!("answer {id}"),
                "{id} got its own answer"
            );
            assert_eq!(got["sender"], room.as_str());
            (id, peer)
        },
    ))
    .await;
    let per_room: BTreeMap<String, usize> =
        answered.iter().fold(BTreeMap::new(), |mut m, (id, _)| {
            *m.entry(id.split('-').next().unwrap().to_string())
                .or_default() += 1;
            m
        });
    assert_eq!(answered.len(), ROOMS * CLIENTS, "none lost");
    assert!(per_room.values().all(|n| *n == CLIENTS), "{per_room:?}");
    drop(sfus);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_id_taken_over_by_the_serving_peer_stops_speaking() {
    let t = TestStack::start().await;
    t.heartbeat("host-secret", "arena", "local", "idle").await;
    // A client grabs the id the host will use before the host has joined.
    let mut squatter = join(&t, "arena", "host").await;
    let mut viewer = join(&t, "arena", "viewer").await;
    let mut host = Peer::connect(&t.stack.ws_url, "host").await;
    let ack = host
        .identify(
            json!({ "id": "host", "type": "host", "roomId": "arena", "hostId": "host-secret" }),
        )
        .await;
    assert_eq!(
        ack["type"], "identified",
        "the authenticated host takes its id over"
    );

    squatter
        .send(
            "handshake",
            json!({ "type": "producer", "receiver": "viewer", "description": offer("fake") }),
        )
        .await;
    assert_eq!(
        squatter.recv("the refusal").await["message"],
        "WebSocket Connection Not Found"
    );
    viewer.expect_silence(QUIET).await;
    viewer
        .send(
            "handshake",
            json!({ "type": "producer", "description": offer("real") }),
        )
        .await;
    assert_eq!(host.recv("the viewer's offer").await["sender"], "viewer");
    squatter.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connections_management_api_answers_like_api_gateway() {
    use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
    use aws_sdk_apigatewaymanagement::primitives::Blob;

    let t = TestStack::start().await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let management_url = t.stack.ws_url.replace("ws://", "http://");
    let sdk = switchboard_local::local_sdk_config().await;
    let api = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(&management_url)
            .build(),
    );
    let member = t
        .store()
        .member(&room, &room)
        .await
        .unwrap()
        .expect("the SFU is a member");
    let id = member.connection_id;

    let info = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("GET @connections/{id}");
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());
    assert_eq!(
        info.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );

    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"type":"hello"}"#))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        sfu.recv_any("the posted frame").await,
        json!({ "type": "hello" })
    );

    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("DELETE closes the socket");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t.stack.open_sockets() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the socket closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("{}"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            gone.as_service_error(),
            Some(PostToConnectionError::GoneException(_))
        ),
        "{gone:?}"
    );
    assert!(
        api.get_connection()
            .connection_id(&id)
            .send()
            .await
            .is_err()
    );
    // $disconnect runs for the closed socket: the SFU's room starts its reconnect grace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t
        .store()
        .room(&room)
        .await
        .unwrap()
        .is_some_and(|r| r.serving_connection.is_some())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "$disconnect detached the SFU"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stock_arbiter_sfu_may_omit_its_token_once_when_allowed() {
    // Default: every SFU identify needs the room's token.
    let t = TestStack::start().await;
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let room = body["roomId"].as_str().unwrap().to_string();
    let mut sfu = Peer::connect(&t.stack.ws_url, "sfu").await;
    let answer = sfu.identify(json!({ "id": room, "type": "sfu" })).await;
    assert_eq!(
        (answer["type"].as_str(), answer["status"].as_u64()),
        (Some("error"), Some(401))
    );

    // SWITCHBOARD_SFU_TOKEN_OPTIONAL=true: the first identify of a starting room may omit it.
    let mut options = options();
    options
        .vars
        .insert("SWITCHBOARD_SFU_TOKEN_OPTIONAL".into(), "true".into());
    let t = TestStack::start_with(options).await;
    let (_, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    let room = body["roomId"].as_str().unwrap().to_string();
    let token = t.task_env(&room, "SFU_TOKEN");
    let mut sfu = Peer::connect(&t.stack.ws_url, "stock sfu").await;
    assert_eq!(
        sfu.identify(json!({ "id": room, "type": "sfu" })).await,
        json!({ "type": "identified", "id": room, "roomId": room })
    );
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"stock"}"#), None)
            .await
            .1["roomId"],
        room.as_str(),
        "the room is ready"
    );
    // Every later identify of that room needs the token: an impostor, and the SFU itself
    // coming back after losing its socket.
    let mut impostor = Peer::connect(&t.stack.ws_url, "impostor").await;
    assert_eq!(
        impostor
            .identify(json!({ "id": room, "type": "sfu" }))
            .await["status"],
        401
    );
    sfu.kill();
    let mut back = Peer::connect(&t.stack.ws_url, "sfu again").await;
    assert_eq!(
        back.identify(json!({ "id": room, "type": "sfu" })).await["status"],
        401
    );
    assert_eq!(
        back.identify(json!({ "id": room, "type": "sfu", "token": token }))
            .await["type"],
        "identified"
    );
}

/// API Gateway invokes one Lambda per frame with no ordering: a client that sends identify
/// and at once its offer (the Arbiter client does) must still reach the SFU every time.
/// 200 trials: 20 batches of 10 clients at once, each frame's dispatch delayed 0..30 ms.
#[tokio::test(flavor = "multi_thread")]
async fn identify_then_offer_at_once_is_routed_under_concurrent_dispatch() {
    const BATCHES: usize = 20;
    const CLIENTS: usize = 10;
    let mut options = options();
    options.ws_frame_jitter_ms = 30;
    let t = TestStack::start_with(options).await;
    let mut rooms = Vec::new();
    for _ in 0..BATCHES {
        rooms.push(launch_sfu(&t).await);
    }
    let t = &t;
    // Batch after batch; within a batch, every client at once.
    let mut outcomes = Vec::new();
    for (b, (room, mut sfu)) in rooms.into_iter().enumerate() {
        let outcome = async {
            let clients = futures_util::future::join_all((0..CLIENTS).map(|c| {
                let room = room.clone();
                async move {
                    let id = format!("eager-{b}-{c}");
                    let mut peer = Peer::connect(&t.stack.ws_url, &id).await;
                    peer.send(
                        "identify",
                        json!({ "id": id, "type": "client", "roomId": room }),
                    )
                    .await;
                    peer.send(
                        "handshake",
                        json!({ "type": "producer", "description": offer(&id) }),
                    )
                    .await;
                    // Its frames: the acknowledgement, and any refusal.
                    let mut refusals = Vec::new();
                    while let Some(frame) = peer.next_frame(FRAME_WAIT).await {
                        match frame["type"].as_str() {
                            Some("identified") => break,
                            _ => refusals.push(frame),
                        }
                    }
                    (id, peer, refusals)
                }
            }))
            .await;
            let mut offers = BTreeSet::new();
            while offers.len() < CLIENTS {
                let Some(frame) = sfu.next_frame(FRAME_WAIT).await else {
                    break;
                };
                assert_eq!(
                    frame["description"]["sdp"], frame["sender"],
                    "an offer, intact"
                );
                offers.insert(frame["sender"].as_str().unwrap_or_default().to_string());
            }
            // A refusal may also come after the acknowledgement.
            let refusals: Vec<Value> = futures_util::future::join_all(clients.into_iter().map(
                |(_, mut peer, mut refusals)| async move {
                    refusals.extend(peer.next_frame(QUIET).await);
                    (peer, refusals)
                },
            ))
            .await
            .into_iter()
            .flat_map(|(_, refusals)| refusals)
            .collect();
            (offers.len(), refusals)
        }
        .await;
        outcomes.push(outcome);
    }
    let delivered: usize = outcomes.iter().map(|(d, _)| d).sum();
    let refusals: Vec<&Value> = outcomes.iter().flat_map(|(_, r)| r).collect();
    assert_eq!(
        (delivered, refusals.len()),
        (BATCHES * CLIENTS, 0),
        "offers delivered to their SFU, and refusals, out of {} trials: {refusals:?}",
        BATCHES * CLIENTS
    );
}

/// API Gateway's limits: 32 KB per frame, 128 KB per message; beyond either the socket is
/// closed with 1009 and `$disconnect` runs.
#[tokio::test(flavor = "multi_thread")]
async fn frames_beyond_api_gateways_limits_close_the_socket_with_1009() {
    let t = TestStack::start().await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let chunk = |n: usize| "a".repeat(n * 1024);

    // 100 KB in four frames of 25 KB: within both limits, and delivered.
    let mut within = join(&t, &room, "within").await;
    let body = json!({ "action": "handshake", "data": { "type": "producer", "description": offer(&chunk(100)) } }).to_string();
    let parts: Vec<String> = body
        .as_bytes()
        .chunks(25 * 1024)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    within.send_fragmented(&parts).await;
    let got = sfu.recv("the 100 KB offer").await;
    assert_eq!(got["sender"], "within");
    assert_eq!(
        got["description"]["sdp"].as_str().map(str::len),
        Some(100 * 1024)
    );

    // One frame of 33 KB.
    let mut big_frame = join(&t, &room, "big-frame").await;
    big_frame
        .send(
            "handshake",
            json!({ "type": "producer", "description": offer(&chunk(33)) }),
        )
        .await;
    assert_eq!(big_frame.closed(Duration::from_secs(5)).await, Some(1009));
    assert_eq!(
        sfu.recv("$disconnect of the closed socket").await,
        json!({ "type": "clientDisconnect", "clientId": "big-frame" })
    );

    // 130 KB in frames of 26 KB: each frame is fine, the message is not.
    let mut big_message = join(&t, &room, "big-message").await;
    let body = json!({ "action": "handshake", "data": { "type": "producer", "description": offer(&chunk(130)) } }).to_string();
    let parts: Vec<String> = body
        .as_bytes()
        .chunks(26 * 1024)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    big_message.send_fragmented(&parts).await;
    assert_eq!(big_message.closed(Duration::from_secs(5)).await, Some(1009));
    assert_eq!(
        sfu.recv("$disconnect of the closed socket").await,
        json!({ "type": "clientDisconnect", "clientId": "big-message" })
    );
    sfu.expect_silence(QUIET).await;
}

/// API Gateway closes idle sockets (10 min) and every socket at its maximum age (2 h) with
/// 1001 "Going away"; `$disconnect` runs. Any inbound frame is activity.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_old_sockets_are_closed_with_1001() {
    let mut options = options();
    options.ws_idle_timeout = Duration::from_millis(1500);
    options.ws_max_connection = Duration::from_millis(4000);
    let t = TestStack::start_with(options).await;
    let (room, mut sfu) = launch_sfu(&t).await;
    let started = tokio::time::Instant::now();
    let mut idle = join(&t, &room, "idle").await;
    let mut busy = join(&t, &room, "busy").await;

    // The idle one goes after ~1.5 s; the busy one pings and stays.
    let pinger = tokio::spawn(async move {
        let mut pongs = 0;
        loop {
            busy.send_raw(json!({ "action": "ping" }).to_string()).await;
            if busy.recv("pong").await["type"] == "pong" {
                pongs += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if started.elapsed() > Duration::from_millis(3000) {
                return (busy, pongs);
            }
        }
    });
    assert_eq!(idle.closed(Duration::from_secs(3)).await, Some(1001));
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "not before the idle timeout"
    );
    // The SFU, idle too, is gone as well; $disconnect removed both records.
    assert_eq!(sfu.closed(Duration::from_secs(1)).await, Some(1001));
    gone_from_room(&t, &room, "idle").await;
    gone_from_room(&t, &room, &room).await;
    let (mut busy, pongs) = pinger.await.expect("pinger");
    assert!(
        pongs >= 3,
        "the busy socket stayed open past the idle timeout ({pongs} pongs)"
    );
    assert!(t.store().member(&room, "busy").await.unwrap().is_some());
    // ...until its maximum connection time.
    assert_eq!(busy.closed(Duration::from_secs(3)).await, Some(1001));
    assert!(started.elapsed() >= Duration::from_millis(3900));
    gone_from_room(&t, &room, "busy").await;
}

/// Waits for `$disconnect` to have removed `peer`'s membership of `room`.
async fn gone_from_room(t: &TestStack, room: &str, peer: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t.store().member(room, peer).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "$disconnect removed {peer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `$connect` carries the handshake's query string and headers as API Gateway sends them.
#[tokio::test(flavor = "multi_thread")]
async fn connect_events_carry_the_query_string_and_headers() {
    let (tap, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut options = options();
    options.ws_event_tap = Some(tap);
    let t = TestStack::start_with(options).await;
    let url = format!("{}/?room=r1&tag=a&tag=b", t.stack.ws_url);
    let request = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-client-version", "7".parse().unwrap());
        request
    };
    let (_socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    let event = tokio::time::timeout(FRAME_WAIT, events.recv())
        .await
        .expect("an event")
        .expect("the $connect event");
    assert_eq!(event["requestContext"]["routeKey"], "$connect");
    assert_eq!(event["queryStringParameters"]["room"], "r1");
    assert_eq!(event["queryStringParameters"]["tag"], "b", "the last value");
    assert_eq!(
        event["multiValueQueryStringParameters"]["tag"],
        json!(["a", "b"])
    );
    let headers = event["headers"].as_object().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-client-version"), Some(json!("7")));
    assert!(header("sec-websocket-key").is_some(), "{headers:?}");
    assert!(header("host").is_some());
    assert_eq!(header("x-forwarded-for"), Some(json!("127.0.0.1")));
    let multi = event["multiValueHeaders"]
        .as_object()
        .expect("multiValueHeaders");
    assert!(
        multi
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-client-version") && *v == json!(["7"]))
    );
}

/// Routes are selected by the template's RouteSelectionExpression, not a fixed `action`.
#[tokio::test(flavor = "multi_thread")]
async fn routes_are_selected_by_the_templates_expression() {
    let original =
        std::fs::read_to_string(switchboard_local::workspace_root().join("template.yaml"))
            .expect("template.yaml");
    assert!(original.contains(r#"RouteSelectionExpression: "$request.body.action""#));
    let dir = std::env::temp_dir().join(format!("sb-template-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, expression: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            original.replace(
                r#"RouteSelectionExpression: "$request.body.action""#,
                &format!("RouteSelectionExpression: \"{expression}\""),
            ),
        )
        .unwrap();
        path
    };

    let mut options = options();
    options.template = write("nested.yaml", "$request.body.route.name");
    let t = TestStack::start_with(options).await;
    let (room, _sfu) = launch_sfu_by(
        &t,
        |frame| json!({ "route": { "name": "identify" }, "data": frame }),
    )
    .await;
    let mut peer = Peer::connect(&t.stack.ws_url, "nested").await;
    peer.send_raw(json!({ "route": { "name": "identify" }, "data": { "id": "n", "type": "client", "roomId": room } }).to_string())
        .await;
    assert_eq!(peer.recv("identified").await["type"], "identified");
    // `action` no longer selects a route: the frame goes to $default.
    peer.send(
        "identify",
        json!({ "id": "m", "type": "client", "roomId": room }),
    )
    .await;
    assert_eq!(
        peer.recv("$default's answer").await["message"],
        "Unknown action: identify"
    );

    let mut options = self::options();
    options.template = write("header.yaml", "$request.header.x-route");
    let refused = switchboard_local::Stack::start(options)
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("RouteSelectionExpression"),
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// createRoom, then its SFU identifies with frames shaped by `frame`.
async fn launch_sfu_by(t: &TestStack, frame: impl Fn(Value) -> Value) -> (String, Peer) {
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "createRoom: {body}");
    let room = body["roomId"].as_str().unwrap().to_string();
    let token = t.task_env(&room, "SFU_TOKEN");
    let mut sfu = Peer::connect(&t.stack.ws_url, "sfu").await;
    sfu.send_raw(frame(json!({ "id": room, "type": "sfu", "token": token })).to_string())
        .await;
    assert_eq!(sfu.recv("identified").await["type"], "identified");
    (room, sfu)
}
