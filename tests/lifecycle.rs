//! The server lifecycle (README, "Server lifecycle") against the local stack: every task started is
//! stopped, rooms outlive their sockets for the reconnect grace, the sweeper ends what is due,
//! reconciles records with tasks, and keeps the warm pool full. Tasks are real processes that
//! record the signals they get.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use switchboard::model::SFU_APP;
use switchboard_tests::*;

const QUIET: Duration = Duration::from_millis(400);

/// A task command: a shell that writes `started`, then `sigterm` when it gets SIGTERM, into
/// `<dir>/<ROOM_ID>`.
fn trap_task(dir: &Path) -> String {
    format!(
        r#"f="{}/${{ROOM_ID:-other}}"; echo started >> "$f"; trap 'echo sigterm >> "$f"; exit 0' TERM; while :; do sleep 0.1; done"#,
        dir.display()
    )
}

/// How long a task process may take to show what it was sent.
const TASK_WAIT: Duration = Duration::from_secs(10);

async fn create_room(t: &TestStack) -> String {
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "createRoom: {body}");
    body["roomId"].as_str().expect("roomId").to_string()
}

/// The SFU of `room` connects and identifies with the token its task was given.
async fn sfu_identifies(t: &TestStack, room: &str) -> Peer {
    let mut sfu = Peer::connect(&t.stack.ws_url, "sfu").await;
    let token = t.task_env(room, "SFU_TOKEN");
    let ack = sfu
        .identify(json!({ "id": room, "type": "sfu", "token": token }))
        .await;
    assert_eq!(ack["type"], "identified", "{ack}");
    sfu
}

async fn join(t: &TestStack, room: &str, id: &str) -> Peer {
    let mut peer = Peer::connect(&t.stack.ws_url, id).await;
    let ack = peer
        .identify(json!({ "id": id, "roomId": room, "type": "client" }))
        .await;
    assert_eq!(ack["type"], "identified", "{id}: {ack}");
    peer
}

fn running(t: &TestStack) -> usize {
    t.stack.tasks().iter().filter(|task| !task.stopped).count()
}

fn with_tasks(dir: &Path) -> switchboard_local::StackOptions {
    let mut options = options();
    options.task_command = Some(trap_task(dir));
    options
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_that_never_identifies_is_ended_and_its_task_stopped() {
    let dir = events_dir();
    let t = TestStack::start_with(with_tasks(&dir)).await;
    let room = create_room(&t).await;
    wait_for_event(&dir, &room, "started", TASK_WAIT).await;

    t.clock.advance(599);
    assert!(
        t.stack.sweep().await.ended.is_empty(),
        "within the start timeout"
    );
    assert!(!events(&dir, &room).contains("sigterm"));

    t.clock.advance(2);
    let report = t.stack.sweep().await;
    assert_eq!(report.ended, std::slice::from_ref(&room), "{report:?}");
    wait_for_event(&dir, &room, "sigterm", TASK_WAIT).await;
    assert_eq!(running(&t), 0, "no task runs on");
    assert!(
        t.raw_item(&t.store().tables().rooms, "roomId", &room)
            .await
            .is_none(),
        "the record is gone"
    );
    assert!(
        t.stack.sweep().await.ended.is_empty(),
        "ending is done once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sfu_that_reconnects_within_the_grace_keeps_its_room() {
    let dir = events_dir();
    let t = TestStack::start_with(with_tasks(&dir)).await;
    let room = create_room(&t).await;
    let sfu = sfu_identifies(&t, &room).await;
    let (status, claimed) = t
        .call(
            "PATCH",
            "/claimRoom",
            Some(r#"{"urlPath":"/standup"}"#),
            None,
        )
        .await;
    assert_eq!(
        (status, claimed["roomId"].as_str()),
        (200, Some(room.as_str()))
    );
    let mut alice = join(&t, &room, "alice").await;

    // API Gateway closes the SFU's socket (idle timeout, 2 h limit, a network blip).
    sfu.kill();
    alice.expect_silence(QUIET).await;
    t.clock.advance(20);
    assert!(t.stack.sweep().await.ended.is_empty(), "within the grace");

    // It identifies again with its token on a new socket: same room, same path, same members.
    let mut sfu = sfu_identifies(&t, &room).await;
    alice.expect_silence(QUIET).await;
    let (status, found) = t
        .call("GET", "/getRoomId?urlPath=standup", None, None)
        .await;
    assert_eq!(
        (status, found["roomId"].as_str()),
        (200, Some(room.as_str()))
    );
    alice
        .send(
            "handshake",
            json!({ "type": "producer", "description": { "type": "offer", "sdp": "again" } }),
        )
        .await;
    let got = sfu.recv("the offer after the reconnect").await;
    assert_eq!(
        (got["sender"].as_str(), got["description"]["sdp"].as_str()),
        (Some("alice"), Some("again"))
    );
    t.clock.advance(60);
    assert!(
        t.stack.sweep().await.ended.is_empty(),
        "the reconnect cancelled the grace"
    );
    assert!(!events(&dir, &room).contains("sigterm"));

    // Gone again, and this time the grace lapses.
    sfu.kill();
    alice.expect_silence(QUIET).await;
    t.clock.advance(31);
    assert_eq!(t.stack.sweep().await.ended, std::slice::from_ref(&room));
    assert_eq!(
        alice.recv("the SFU leaving").await,
        json!({ "type": "sfuDisconnect", "sfuId": room })
    );
    wait_for_event(&dir, &room, "sigterm", TASK_WAIT).await;
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=standup", None, None)
            .await
            .0,
        404,
        "the path is free"
    );
    assert_eq!(running(&t), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_ends_a_room_now() {
    let dir = events_dir();
    let t = TestStack::start_with(with_tasks(&dir)).await;
    let room = create_room(&t).await;
    let _sfu = sfu_identifies(&t, &room).await;
    t.call(
        "PATCH",
        "/claimRoom",
        Some(r#"{"urlPath":"town-hall"}"#),
        None,
    )
    .await;
    let mut bob = join(&t, &room, "bob").await;

    let path = format!("/rooms/{room}");
    assert_eq!(t.call("DELETE", &path, None, None).await.0, 401);
    assert_eq!(t.call("DELETE", &path, None, Some("wrong")).await.0, 401);
    assert_eq!(
        t.call("DELETE", "/rooms/no-such-room", None, Some(OPERATOR_KEY))
            .await,
        (404, json!({ "message": "Room not found" }))
    );
    assert_eq!(
        t.call("DELETE", &path, None, Some(OPERATOR_KEY)).await,
        (200, json!({ "message": "Room ended", "roomId": room }))
    );
    assert_eq!(
        bob.recv("the room ending").await,
        json!({ "type": "sfuDisconnect", "sfuId": room })
    );
    wait_for_event(&dir, &room, "sigterm", TASK_WAIT).await;
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=town-hall", None, None)
            .await
            .0,
        404
    );
    assert_eq!(
        t.call("DELETE", &path, None, Some(OPERATOR_KEY)).await.0,
        404,
        "ended is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_leaves_no_task_without_a_record_and_no_record_without_a_task() {
    let dir = events_dir();
    let first = with_tasks(&dir);
    let prefix = first.table_prefix.clone();
    let t = TestStack::start_with(first).await;
    let gone_with_the_stack = [create_room(&t).await, create_room(&t).await];
    let _sfu = sfu_identifies(&t, &gone_with_the_stack[0]).await;
    // A sweeper killed half-way through ending a third room.
    let interrupted = create_room(&t).await;
    assert!(
        t.store()
            .begin_ending(&interrupted, false)
            .await
            .unwrap()
            .is_some()
    );
    // The stack dies: its tasks with it, but the records stay in DynamoDB.
    drop(t);

    let mut second = with_tasks(&dir);
    second.table_prefix = prefix;
    let t = TestStack::start_with(second).await;
    // A task whose server was never recorded (a crash between RunTask and the write).
    let ecs = ecs_client(&t).await;
    let orphan_id = uuid::Uuid::new_v4().to_string();
    let orphan_arn = bare_task(&ecs, &orphan_id).await;
    // A task that is somebody else's (not started by Switchboard) is left alone.
    let foreign_arn = bare_task(&ecs, "nightly-batch").await;
    t.clock.advance(61);

    let report = t.stack.sweep().await;
    assert!(report.errors.is_empty(), "{report:?}");
    let mut ended = report.ended.clone();
    ended.sort();
    let mut expected = vec![
        gone_with_the_stack[0].clone(),
        gone_with_the_stack[1].clone(),
        interrupted.clone(),
    ];
    expected.sort();
    assert_eq!(ended, expected, "every record without a task is ended");
    assert!(
        report.orphans_stopped.contains(&orphan_arn),
        "every task without a record is stopped: {report:?}"
    );
    assert!(
        t.store().servers(SFU_APP, 100).await.unwrap().is_empty(),
        "no server record is left"
    );
    // StopTask asks: the orphan's process exits once its SIGTERM handler has run (lastStatus
    // follows desiredStatus, as on ECS), so only the foreign task is still wanted running, and
    // the orphan is gone within the stop timeout.
    let wanted_running: Vec<String> = t
        .stack
        .tasks()
        .into_iter()
        .filter(|task| task.desired_status != "STOPPED")
        .map(|task| task.task_arn)
        .collect();
    assert_eq!(wanted_running, std::slice::from_ref(&foreign_arn));
    let deadline = std::time::Instant::now() + TASK_WAIT;
    while running(&t) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan's process outlives its StopTask: {:?}",
            t.stack.tasks()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = t.stack.sweep().await;
    assert!(
        again.ended.is_empty() && again.orphans_stopped.is_empty(),
        "{again:?}"
    );
}

/// A task run straight on the ECS endpoint (no server record), marked with `started_by`.
async fn bare_task(ecs: &aws_sdk_ecs::Client, started_by: &str) -> String {
    let out = ecs
        .run_task()
        .cluster(switchboard_local::DEFAULT_CLUSTER)
        .task_definition(switchboard_local::DEFAULT_TASK_DEFINITION)
        .started_by(started_by)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets("subnet-local")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .expect("RunTask");
    out.tasks()[0].task_arn().unwrap().to_string()
}

async fn ecs_client(t: &TestStack) -> aws_sdk_ecs::Client {
    let sdk = switchboard_local::local_sdk_config().await;
    aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::config::Builder::from(&sdk)
            .endpoint_url(&t.stack.ecs_url)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn create_room_marks_its_task_with_the_room() {
    let t = TestStack::start().await;
    let room = create_room(&t).await;
    let ecs = ecs_client(&t).await;
    let listed = ecs
        .list_tasks()
        .cluster(switchboard_local::DEFAULT_CLUSTER)
        .started_by(&room)
        .send()
        .await
        .expect("ListTasks");
    assert_eq!(listed.task_arns().len(), 1, "startedBy is the room id");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sweepers_at_once_end_each_server_once() {
    let dir = events_dir();
    let t = TestStack::start_with(with_tasks(&dir)).await;
    let mut rooms = Vec::new();
    for _ in 0..6 {
        rooms.push(create_room(&t).await);
    }
    t.clock.advance(601);
    let (a, b) = tokio::join!(t.stack.sweep(), t.stack.sweep());
    let mut ended: Vec<String> = a.ended.iter().chain(&b.ended).cloned().collect();
    ended.sort();
    rooms.sort();
    assert_eq!(ended, rooms, "each ended exactly once: {a:?} {b:?}");
    for room in &rooms {
        wait_for_event(&dir, room, "sigterm", TASK_WAIT).await;
    }
}

fn warm(options: &mut switchboard_local::StackOptions, rooms: u32) {
    options
        .vars
        .insert("SWITCHBOARD_WARM_ROOMS".into(), rooms.to_string());
}

/// Ready, unclaimed rooms: what claimRoom can hand out.
async fn claimable(t: &TestStack, sfus: &mut Vec<Peer>, known: &mut Vec<String>) -> usize {
    // Every task the pool launched gets its SFU, as the container would.
    for task in t.stack.tasks() {
        let room = task.environment.get("ROOM_ID").cloned().unwrap_or_default();
        if !task.stopped && !known.contains(&room) {
            sfus.push(sfu_identifies(t, &room).await);
            known.push(room);
        }
    }
    t.store()
        .servers(SFU_APP, 100)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url_path.is_none() && r.state == switchboard::model::RoomState::Ready)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warm_pool_fills_refills_and_waits_out_capacity() {
    let mut options = options();
    warm(&mut options, 3);
    let t = TestStack::start_with(options).await;
    let (mut sfus, mut known) = (Vec::new(), Vec::new());
    assert_eq!(t.stack.sweep().await.launched.len(), 3, "no operator call");
    assert_eq!(claimable(&t, &mut sfus, &mut known).await, 3);
    assert!(t.stack.sweep().await.launched.is_empty(), "full stays full");

    for path in ["a", "b"] {
        let (status, body) = t
            .call(
                "PATCH",
                "/claimRoom",
                Some(&format!(r#"{{"urlPath":"{path}"}}"#)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Each claim refilled its slot at once; the new rooms are starting.
    assert_eq!(t.stack.tasks().len(), 5);
    assert_eq!(claimable(&t, &mut sfus, &mut known).await, 3);
    assert!(t.stack.sweep().await.launched.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_capacity_fails_quietly_and_the_pool_fills_later() {
    let mut options = options();
    warm(&mut options, 3);
    options.ecs_capacity = Some(3);
    let t = TestStack::start_with(options).await;
    // An operator's room takes one of the three task slots.
    let extra = create_room(&t).await;
    let report = t.stack.sweep().await;
    assert_eq!(report.launched.len(), 2, "{report:?}");
    assert_eq!(
        report.errors.len(),
        1,
        "one capacity failure, then it backs off to the next sweep: {report:?}"
    );
    let (mut sfus, mut known) = (vec![sfu_identifies(&t, &extra).await], vec![extra.clone()]);
    assert_eq!(claimable(&t, &mut sfus, &mut known).await, 3 - 1 + 1);
    assert_eq!(
        t.store().servers(SFU_APP, 100).await.unwrap().len(),
        3,
        "a refused launch leaves no record"
    );
    // A claim with no capacity left still succeeds; its refill waits for the sweeper.
    let (status, body) = t
        .call("PATCH", "/claimRoom", Some(r#"{"urlPath":"x"}"#), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .call("PATCH", "/claimRoom", Some(r#"{"urlPath":"y"}"#), None)
        .await;
    assert_eq!(status, 200, "{body}");
    // Capacity returns: the operator's room ends and frees its task slot.
    assert_eq!(
        t.call(
            "DELETE",
            &format!("/rooms/{extra}"),
            None,
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        200
    );
    let report = t.stack.sweep().await;
    assert_eq!(report.launched.len(), 1, "{report:?}");
    assert!(claimable(&t, &mut sfus, &mut known).await >= 1);
}

/// The `@connections` management API, signed with the stack's own credentials.
async fn management_api(t: &TestStack) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = switchboard_local::local_sdk_config().await;
    aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(t.stack.ws_url.replacen("ws://", "http://", 1))
            .build(),
    )
}

/// Lines of the example server's events file for `room`.
fn count(dir: &Path, room: &str, what: &str) -> usize {
    events(dir, room).lines().filter(|l| *l == what).count()
}

async fn wait_for_count(dir: &Path, room: &str, what: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count(dir, room, what) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room}: {what:?} seen {} times, not {n}: {:?}",
            count(dir, room, what),
            events(dir, room)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_sfu_process_fills_the_pool_and_keeps_its_room_across_a_lost_socket() {
    let dir = events_dir();
    let mut options = options();
    options.task_command = Some(format!(
        r#"EXAMPLE_SERVER_EVENTS="{}/$ROOM_ID" exec {}"#,
        dir.display(),
        env!("CARGO_BIN_EXE_example-server")
    ));
    options.task_stop_timeout = Duration::from_secs(1);
    warm(&mut options, 1);
    let t = TestStack::start_with(options).await;

    // The pool launches a room; its SFU process connects and identifies with its token.
    let launched = t.stack.sweep().await.launched;
    assert_eq!(launched.len(), 1);
    let room = launched[0].clone();
    wait_for_count(&dir, &room, "identified", 1).await;
    let (status, body) = t
        .call("PATCH", "/claimRoom", Some(r#"{"urlPath":"live"}"#), None)
        .await;
    assert_eq!(
        (status, body["roomId"].as_str()),
        (200, Some(room.as_str()))
    );
    let mut alice = join(&t, &room, "alice").await;
    let offer = json!({ "type": "producer", "description": { "type": "offer", "sdp": "v=0" } });
    alice.send("handshake", offer.clone()).await;
    assert_eq!(
        alice.recv("the SFU's answer").await["description"]["sdp"],
        format!("answer-from-{room}")
    );

    // API Gateway drops the SFU's socket; the process reconnects and identifies again.
    let serving = t
        .store()
        .room(&room)
        .await
        .unwrap()
        .unwrap()
        .serving_connection
        .unwrap();
    let management = management_api(&t).await;
    management
        .delete_connection()
        .connection_id(&serving)
        .send()
        .await
        .expect("the gateway drops the socket");
    wait_for_count(&dir, &room, "identified", 2).await;
    alice.expect_silence(QUIET).await;
    alice.send("handshake", offer).await;
    assert_eq!(
        alice.recv("the answer after the reconnect").await["description"]["sdp"],
        format!("answer-from-{room}")
    );

    // Now the process hangs (SIGSTOP) and its socket goes: the grace lapses.
    let task = t
        .stack
        .tasks()
        .into_iter()
        .find(|task| task.started_by.as_deref() == Some(room.as_str()))
        .unwrap();
    let pid = task.pid.unwrap() as i32;
    // SAFETY: kill(2) on the task process this test's stack started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let serving = t
        .store()
        .room(&room)
        .await
        .unwrap()
        .unwrap()
        .serving_connection
        .unwrap();
    management
        .delete_connection()
        .connection_id(&serving)
        .send()
        .await
        .expect("the gateway drops the socket");
    tokio::time::sleep(QUIET).await;
    t.clock.advance(31);
    let report = t.stack.sweep().await;
    assert!(report.ended.contains(&room), "{report:?}");
    assert_eq!(
        alice.recv("the SFU leaving").await,
        json!({ "type": "sfuDisconnect", "sfuId": room })
    );
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=live", None, None).await.0,
        404,
        "the path is free"
    );
    // SIGTERM finds a stopped process; SIGKILL follows after the stop timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t
        .stack
        .tasks()
        .iter()
        .any(|task| task.pid == Some(pid as u32) && !task.stopped)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task process is gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    assert_ne!(
        unsafe { libc::kill(pid, 0) },
        0,
        "no process outlives its room"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_keeps_a_room_its_path_and_its_members_alive() {
    let dir = events_dir();
    let t = TestStack::start_with(with_tasks(&dir)).await;
    let room = create_room(&t).await;
    let mut sfu = sfu_identifies(&t, &room).await;
    t.call(
        "PATCH",
        "/claimRoom",
        Some(r#"{"urlPath":"marathon"}"#),
        None,
    )
    .await;
    let mut carol = join(&t, &room, "carol").await;
    // Three hours of a call whose sockets stay up and ping (as they must under the 10 min
    // idle timeout): past the records' first expiry (2 h 10 min after identify).
    for _ in 0..6 {
        t.clock.advance(30 * 60);
        for peer in [&mut sfu, &mut carol] {
            peer.send_raw(json!({ "action": "ping" }).to_string()).await;
            assert_eq!(peer.recv("pong").await["type"], "pong");
        }
        assert!(
            t.stack.sweep().await.ended.is_empty(),
            "a pinging room lives on"
        );
    }
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=marathon", None, None)
            .await
            .1["roomId"],
        room.as_str(),
        "its path too"
    );
    carol
        .send(
            "handshake",
            json!({ "type": "producer", "description": { "type": "offer", "sdp": "late" } }),
        )
        .await;
    assert_eq!(
        sfu.recv("an offer after three hours").await["sender"],
        "carol"
    );
    // Without pings, it ends once its records' time is up.
    t.clock.advance(2 * 3600 + 601);
    assert_eq!(t.stack.sweep().await.ended, std::slice::from_ref(&room));
}
