//! A call through the real SFU process: the local stack runs `switchboard-sfu` as each room's
//! task; str0m participants join over the gateway and exchange media and chat.

mod common;

use std::time::Duration;

use switchboard_sfu::testing::{Participant, Publish, Stats};

const MEDIA: Duration = Duration::from_secs(15);

fn got_media_from(stats: &Stats, remote: &str) -> bool {
    stats
        .received
        .get(remote)
        .is_some_and(|r| r.audio_frames >= 10 && r.video_frames >= 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_receive_each_others_media_and_chat() {
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
