//! The SFU process's lifecycle: its settings, SIGTERM, a socket the gateway closes, a refused
//! identify.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_sfu::testing::{Participant, Publish, Stats};

const MEDIA: Duration = Duration::from_secs(30);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn got_media_from(stats: &Stats, remote: &str) -> bool {
    stats
        .received
        .get(remote)
        .is_some_and(|r| r.audio_frames >= 10 && r.video_frames >= 5)
}

fn audio_from(stats: &Stats, remote: &str) -> u64 {
    stats.received.get(remote).map_or(0, |r| r.audio_frames)
}

fn settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ROOM_ID", "room-1"),
        ("SFU_TOKEN", "token"),
        ("SIGNAL_SERVER_URL", "ws://127.0.0.1:9"),
        ("RTC_CONFIG", r#"{"iceServers":[]}"#),
        ("TASK_IP", "127.0.0.1"),
    ]
}

#[test]
fn a_missing_or_malformed_setting_exits_78_naming_it() {
    for (name, value) in [
        ("ROOM_ID", None),
        ("RTC_CONFIG", Some("{not json")),
        ("SFU_UDP_PORT", Some("0")),
        ("TASK_IP", None),
    ] {
        let mut command = Command::new(common::sfu_binary());
        command.env_clear();
        for (k, v) in settings() {
            if k != name {
                command.env(k, v);
            }
        }
        if let Some(value) = value {
            command.env(name, value);
        }
        let output = command.output().expect("the SFU runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_room_stops_the_sfu_with_exit_0_within_5_seconds() {
    let _serial = SERIAL.lock().await;
    let stack = common::start(common::options()).await;
    let room = common::create_and_claim(&stack, "/delete").await;
    let alice = Participant::join(&stack.ws_url, &room.id, "alice", Publish::default())
        .await
        .unwrap();
    let bob = Participant::join(&stack.ws_url, &room.id, "bob", Publish::default())
        .await
        .unwrap();
    alice
        .wait_for(MEDIA, |s| got_media_from(s, "bob"))
        .await
        .unwrap_or_else(|s| panic!("no call: {s:#?}"));

    // DELETE /rooms/{id}: StopTask, SIGTERM to the SFU (SIGKILL only after 10 s).
    let started = Instant::now();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/rooms/{}", stack.http_url, room.id))
        .bearer_auth(common::OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let task = loop {
        let task = stack
            .tasks()
            .into_iter()
            .find(|t| t.task_arn == room.task_arn)
            .expect("the task");
        if task.stopped {
            break task;
        }
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "the SFU is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task.exit_code, Some(0), "{task:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    alice.leave().await;
    bob.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_the_gateway_closes_is_replaced_and_the_call_goes_on() {
    let _serial = SERIAL.lock().await;
    let stack = common::start(common::options()).await;
    let room = common::create_and_claim(&stack, "/reconnect").await;
    let alice = Participant::join(&stack.ws_url, &room.id, "alice", Publish::default())
        .await
        .unwrap();
    let bob = Participant::join(&stack.ws_url, &room.id, "bob", Publish::default())
        .await
        .unwrap();
    bob.wait_for(MEDIA, |s| got_media_from(s, "alice"))
        .await
        .unwrap_or_else(|s| panic!("no call: {s:#?}"));

    // The gateway drops the SFU's socket (as API Gateway does at 2 h, or idle at 10 min).
    let serving = |stack: &switchboard_local::Stack| {
        let store = stack.deps.store.clone();
        let id = room.id.clone();
        async move {
            store
                .room(&id)
                .await
                .ok()
                .flatten()
                .and_then(|r| r.serving_connection)
        }
    };
    let first = serving(&stack).await.expect("the SFU's connection");
    let sdk = switchboard_local::local_sdk_config().await;
    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(stack.ws_url.replacen("ws://", "http://", 1))
            .build(),
    );
    let before = audio_from(&bob.stats(), "alice");
    management
        .delete_connection()
        .connection_id(&first)
        .send()
        .await
        .expect("the gateway drops the socket");

    // It identifies again on a new socket, with its token: the room keeps its SFU.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(now) = serving(&stack).await
            && now != first
        {
            break;
        }
        assert!(Instant::now() < deadline, "the SFU never identified again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Media never stopped, and a newcomer joins through the new socket.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        audio_from(&bob.stats(), "alice") > before + 40,
        "media stopped with the socket"
    );
    let carol = Participant::join(&stack.ws_url, &room.id, "carol", Publish::default())
        .await
        .unwrap();
    carol
        .wait_for(MEDIA, |s| {
            got_media_from(s, "alice") && got_media_from(s, "bob")
        })
        .await
        .unwrap_or_else(|s| panic!("carol never got media: {s:#?}"));
    alice
        .wait_for(MEDIA, |s| got_media_from(s, "carol"))
        .await
        .unwrap_or_else(|s| panic!("alice never got carol: {:#?}", s.received));
    let pid = common::task_pid(&stack, &room.task_arn).expect("pid");
    assert!(common::alive(pid));
    for p in [alice, bob, carol] {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_identify_ends_the_process() {
    let _serial = SERIAL.lock().await;
    let stack = common::start(common::options()).await;
    let room = common::create_and_claim(&stack, "/refused").await;
    // A second SFU for the room, with a wrong token: the gateway refuses it, and it exits 1.
    let started = Instant::now();
    let output = tokio::process::Command::new(common::sfu_binary())
        .env_clear()
        .env("ROOM_ID", &room.id)
        .env("SFU_TOKEN", "not-the-token")
        .env("SIGNAL_SERVER_URL", &stack.ws_url)
        .env("RTC_CONFIG", r#"{"iceServers":[]}"#)
        .env("TASK_IP", "127.0.0.1")
        .env(
            "SFU_UDP_PORT",
            (40000 + uuid::Uuid::new_v4().as_u128() % 9000).to_string(),
        )
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .expect("the refused SFU exits")
        .expect("the SFU runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("identify refused"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// README, "The SFU": `scripts/sfu-image.sh --help` as printed (docker does not run here), and
/// the script parses.
#[test]
fn the_image_script_parses_and_explains_itself() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let syntax = Command::new("bash")
        .args(["-n", "scripts/sfu-image.sh"])
        .current_dir(&root)
        .output()
        .expect("bash runs");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let help = Command::new("sh")
        .args(["-c", "scripts/sfu-image.sh --help"])
        .current_dir(&root)
        .output()
        .expect("the script runs");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );
    assert!(
        text.contains("--push REPOSITORY_URI") && text.contains("SfuImage"),
        "{text}"
    );
}
