//! A call through the real SFU process: the local stack runs `switchboard-sfu` as each room's
//! task; str0m participants join over the gateway and exchange media and chat.

mod common;

use std::time::Duration;

use serde_json::json;
use switchboard_sfu::testing::{Participant, Publish, Stats};

const MEDIA: Duration = Duration::from_secs(30);

/// One call at a time: each runs an SFU and several participants on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn got_media_from(stats: &Stats, remote: &str) -> bool {
    stats
        .received
        .get(remote)
        .is_some_and(|r| r.audio_frames >= 10 && r.video_frames >= 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_receive_each_others_media_and_chat() {
    let _serial = SERIAL.lock().await;
    let stack = common::start(common::options()).await;
    let room = common::create_and_claim(&stack, "/two").await;

    let alice = Participant::join(&stack.ws_url, &room.id, "alice", Publish::default())
        .await
        .unwrap();
    let bob = Participant::join(&stack.ws_url, &room.id, "bob", Publish::default())
        .await
        .unwrap();

    let at_alice = alice
        .wait_for(MEDIA, |s| got_media_from(s, "bob"))
        .await
        .unwrap_or_else(|s| panic!("alice never got bob's media: {s:#?}"));
    let at_bob = bob
        .wait_for(MEDIA, |s| got_media_from(s, "alice"))
        .await
        .unwrap_or_else(|s| panic!("bob never got alice's media: {s:#?}"));
    // Nobody is sent their own media.
    assert!(!at_alice.received.contains_key("alice"), "{at_alice:#?}");
    assert!(!at_bob.received.contains_key("bob"), "{at_bob:#?}");
    assert_eq!(
        at_alice.consumer_offers.keys().collect::<Vec<_>>(),
        vec!["bob"]
    );
    // A consumer that connects gets a keyframe: the SFU asked the publisher for one.
    assert!(at_bob.received["alice"].video_keyframes >= 1, "{at_bob:#?}");
    assert!(at_alice.keyframe_requests >= 1, "{at_alice:#?}");
    assert_flowing(&alice, &bob).await;
    assert_flowing(&bob, &alice).await;

    // Chat: relayed to the other participant, never back to its sender.
    alice
        .wait_for(MEDIA, |s| s.channels_open.len() == 2)
        .await
        .unwrap_or_else(|s| panic!("alice's channels never opened: {s:#?}"));
    bob.wait_for(MEDIA, |s| s.channels_open.len() == 2)
        .await
        .unwrap_or_else(|s| panic!("bob's channels never opened: {s:#?}"));
    alice.send_message("chat", "hello from alice");
    bob.send_message("features", "{\"raiseHand\":true}");
    bob.wait_for(MEDIA, |s| {
        s.messages
            .contains(&("chat".into(), "hello from alice".into()))
    })
    .await
    .unwrap_or_else(|s| panic!("bob never got alice's chat: {:?}", s.messages));
    alice
        .wait_for(MEDIA, |s| {
            s.messages
                .contains(&("features".into(), "{\"raiseHand\":true}".into()))
        })
        .await
        .unwrap_or_else(|s| panic!("alice never got bob's features message: {:?}", s.messages));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        alice.stats().messages.len(),
        1,
        "{:?}",
        alice.stats().messages
    );
    assert_eq!(bob.stats().messages.len(), 1, "{:?}", bob.stats().messages);

    alice.leave().await;
    bob.leave().await;
}

/// Over three seconds, what `to` gets of `from` keeps up with what `from` sends.
async fn assert_flowing(from: &Participant, to: &Participant) {
    let sent = (
        from.stats().audio_frames_sent,
        from.stats().video_frames_sent,
    );
    let got = frames_from(&to.stats(), &from.id);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = (
        from.stats().audio_frames_sent - sent.0,
        from.stats().video_frames_sent - sent.1,
    );
    let now = frames_from(&to.stats(), &from.id);
    let got = (now.0 - got.0, now.1 - got.1);
    eprintln!("{} -> {}: sent {sent:?}, received {got:?}", from.id, to.id);
    assert!(
        sent.0 >= 20 && got.0 * 10 >= sent.0 * 8 && got.1 * 10 >= sent.1 * 8,
        "{}'s media to {} stalled: sent (audio, video) {sent:?}, received {got:?}",
        from.id,
        to.id
    );
}

fn frames_from(stats: &Stats, remote: &str) -> (u64, u64) {
    stats
        .received
        .get(remote)
        .map(|r| (r.audio_frames, r.video_frames))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_stops_being_forwarded_and_a_late_joiner_catches_up() {
    let _serial = SERIAL.lock().await;
    let stack = common::start(common::options()).await;
    let room = common::create_and_claim(&stack, "/three").await;
    let join =
        |id: &'static str| Participant::join(&stack.ws_url, &room.id, id, Publish::default());
    let alice = join("alice").await.unwrap();
    let bob = join("bob").await.unwrap();
    let carol = join("carol").await.unwrap();

    // Everyone gets the two others, never themselves.
    for (me, others) in [
        (&alice, ["bob", "carol"]),
        (&bob, ["alice", "carol"]),
        (&carol, ["alice", "bob"]),
    ] {
        let stats = me
            .wait_for(MEDIA, |s| others.iter().all(|o| got_media_from(s, o)))
            .await
            .unwrap_or_else(|s| panic!("{} lacks media: {:#?}", me.id, s.received));
        assert!(
            !stats.received.contains_key(&me.id),
            "{} got its own media",
            me.id
        );
        assert_eq!(stats.received.len(), 2, "{:#?}", stats.received);
    }

    // Carol leaves: her socket closes, the gateway tells the room, the SFU stops forwarding her.
    carol.leave().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = frames_from(&alice.stats(), "carol");
    let bob_before = frames_from(&alice.stats(), "bob");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        frames_from(&alice.stats(), "carol"),
        before,
        "carol is still forwarded after leaving"
    );
    let bob_after = frames_from(&alice.stats(), "bob");
    assert!(
        bob_after.0 > bob_before.0 + 20,
        "bob's audio stopped too: {bob_before:?} -> {bob_after:?}"
    );

    // Dave joins late: offers for everyone sending (alice, bob), never for carol; alice is asked
    // for a keyframe for him, and his first video frame is one.
    let requests_before = alice.stats().keyframe_requests;
    let dave = join("dave").await.unwrap();
    let at_dave = dave
        .wait_for(MEDIA, |s| {
            got_media_from(s, "alice") && got_media_from(s, "bob")
        })
        .await
        .unwrap_or_else(|s| panic!("dave never caught up: {s:#?}"));
    let mut offered: Vec<_> = at_dave.consumer_offers.keys().cloned().collect();
    offered.sort();
    assert_eq!(offered, vec!["alice", "bob"]);
    assert!(!at_dave.received.contains_key("carol"));
    let from_alice = &at_dave.received["alice"];
    assert!(from_alice.video_keyframes >= 1, "{from_alice:#?}");
    let first_video = from_alice.first_video_at.expect("video");
    assert_eq!(
        from_alice.first_keyframe_at,
        Some(first_video),
        "dave's first frame from alice is not a keyframe"
    );
    assert!(
        alice.stats().keyframe_requests > requests_before,
        "no keyframe request reached alice"
    );
    // Alice and bob are offered dave.
    alice
        .wait_for(MEDIA, |s| got_media_from(s, "dave"))
        .await
        .unwrap_or_else(|s| panic!("alice never got dave: {:#?}", s.received));

    for p in [alice, bob, dave] {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_from_one_client_leaves_the_others_call_alone() {
    let _serial = SERIAL.lock().await;
    let stack = common::start(common::options()).await;
    let room = common::create_and_claim(&stack, "/isolation").await;
    let pid = common::task_pid(&stack, &room.task_arn).expect("the SFU's process");
    let alice = Participant::join(&stack.ws_url, &room.id, "alice", Publish::default())
        .await
        .unwrap();
    // Bob's video is H.264 only: it reaches alice as H.264.
    let h264 = Publish {
        h264_only: true,
        ..Publish::default()
    };
    let bob = Participant::join(&stack.ws_url, &room.id, "bob", h264)
        .await
        .unwrap();
    let at_alice = alice
        .wait_for(MEDIA, |s| got_media_from(s, "bob"))
        .await
        .unwrap_or_else(|s| panic!("alice never got bob's media: {s:#?}"));
    assert_eq!(at_alice.received["bob"].video_codecs, vec!["H264"]);
    bob.wait_for(MEDIA, |s| got_media_from(s, "alice"))
        .await
        .unwrap_or_else(|s| panic!("bob never got alice's media: {s:#?}"));

    // A client that never answers its consumer offers.
    let silent = Publish {
        answer_consumers: false,
        ..Publish::default()
    };
    let mute = Participant::join(&stack.ws_url, &room.id, "mute", silent)
        .await
        .unwrap();
    mute.wait_for(MEDIA, |s| s.consumer_offers.len() == 2)
        .await
        .unwrap_or_else(|s| panic!("mute was never offered alice and bob: {s:#?}"));

    // Mallory: garbage SDP, candidates for peers that do not exist, 200 malformed frames.
    let mallory = Participant::join(&stack.ws_url, &room.id, "mallory", Publish::default())
        .await
        .unwrap();
    let handshake = |data: serde_json::Value| json!({ "action": "handshake", "data": data });
    let garbage = [
        handshake(
            json!({ "type": "producer", "description": { "type": "offer", "sdp": "v=0\r\ngarbage" } }),
        ),
        handshake(json!({ "type": "producer", "description": { "type": "answer", "sdp": 7 } })),
        handshake(json!({ "type": "producer", "description": "offer" })),
        handshake(
            json!({ "type": "producer", "candidate": { "candidate": "candidate:x 1 udp nope", "sdpMid": "0" } }),
        ),
        handshake(json!({ "type": "producer", "candidate": 42 })),
        handshake(json!({ "type": "consumer", "remotePeerId": "nobody",
            "candidate": { "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0 } })),
        handshake(
            json!({ "type": "consumer", "remotePeerId": "alice", "description": { "type": "answer", "sdp": "v=0" } }),
        ),
        handshake(json!({ "type": "consumer", "description": { "type": "answer", "sdp": "v=0" } })),
        handshake(json!({ "type": "consumer", "remotePeerId": ["x"], "candidate": {} })),
        handshake(json!({ "type": "nonsense" })),
        handshake(json!(null)),
        handshake(json!([1, 2, 3])),
    ];
    for i in 0..200 {
        mallory.send_frame(garbage[i % garbage.len()].clone());
    }

    // The others' media goes on (what alice gets of bob keeps up with what bob sends, and the
    // other way round), and the SFU is alive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (from, to) in [(&bob, &alice), (&alice, &bob)] {
        assert_flowing(from, to).await;
    }
    assert!(common::alive(pid), "the SFU died");
    // And a newcomer still joins the call.
    let carol = Participant::join(&stack.ws_url, &room.id, "carol", Publish::default())
        .await
        .unwrap();
    carol
        .wait_for(MEDIA, |s| {
            got_media_from(s, "alice") && got_media_from(s, "bob")
        })
        .await
        .unwrap_or_else(|s| panic!("carol never got media: {s:#?}"));

    for p in [alice, bob, mute, mallory, carol] {
        p.leave().await;
    }
}

/// With `SFU_PUBLIC_IP` set, the SFU's answer still names the task's own address as its host
/// candidate, with the public address beside it (a client inside the task's network reaches the
/// host one, a client outside the public one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_public_ip_the_task_address_stays_a_host_candidate() {
    let _serial = SERIAL.lock().await;
    let mut options = common::options();
    options.task_command = Some(format!(
        "SFU_PUBLIC_IP=203.0.113.7 RUST_LOG=${{RUST_LOG:-info}} exec {}",
        common::sfu_binary()
    ));
    let stack = common::start(options).await;
    let room = common::create_and_claim(&stack, "/public").await;
    let task_ip = stack
        .tasks()
        .into_iter()
        .find(|t| t.task_arn == room.task_arn)
        .map(|t| t.address.to_string())
        .expect("the room's task");
    let alice = Participant::join(&stack.ws_url, &room.id, "alice", Publish::default())
        .await
        .unwrap();
    let stats = alice
        .wait_for(MEDIA, |s| s.producer_connected)
        .await
        .unwrap_or_else(|s| panic!("alice's producer never connected: {:#?}", s.frames));
    let answer = stats
        .frames
        .iter()
        .find(|f| f["type"] == "producer" && f["description"]["type"] == "answer")
        .and_then(|f| f["description"]["sdp"].as_str())
        .expect("the SFU's answer")
        .to_string();
    // a=candidate:<foundation> 1 udp <priority> <address> <port> typ <kind> ...
    let candidates: Vec<(String, String)> = answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let fields: Vec<&str> = c.split_whitespace().collect();
            Some((fields.get(4)?.to_string(), fields.get(7)?.to_string()))
        })
        .collect();
    assert!(
        candidates.contains(&(task_ip.clone(), "host".to_string())),
        "no host candidate at the task's address {task_ip}: {candidates:?}\n{answer}"
    );
    assert!(
        candidates
            .iter()
            .any(|(address, _)| address == "203.0.113.7"),
        "no candidate at SFU_PUBLIC_IP: {candidates:?}"
    );
    alice.leave().await;
}
