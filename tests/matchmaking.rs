//! Matchmaking: heartbeat, status and find-match under real concurrency against DynamoDB
//! Local; reservation and liveness with a clock the test moves; match cost from DynamoDB's own
//! figures; TURN credentials checked by a real coturn.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchboard::model::HostStatus;
use switchboard_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_matches_against_ten_idle_hosts() {
    let t = TestStack::start().await;
    let regions = ["us-east-1", "us-west-1", "eu-central", "local"];
    for i in 0..10 {
        let (status, body) = t
            .heartbeat(
                &format!("host-{i}"),
                &format!("room-{i}"),
                regions[i % 4],
                "idle",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let results = futures_util::future::join_all((0..50).map(|_| t.find_match(None))).await;
    let matched: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 404)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(matched.len(), 10, "exactly one match per idle host");
    assert_eq!(refused.len(), 40, "everyone else is told there is no host");
    let rooms: BTreeSet<&str> = matched
        .iter()
        .map(|b| b["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(rooms.len(), 10, "no host is handed to two clients");
    for body in &refused {
        assert_eq!(body["success"], false);
        assert_eq!(body["message"], "No available hosts");
    }
    for body in &matched {
        assert_eq!(body["success"], true);
        assert_eq!(body["signalingUrl"], t.stack.ws_url.as_str());
        assert!(
            !body.to_string().contains("host-"),
            "a hostId is never revealed: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn region_filter_and_busy_hosts() {
    let t = TestStack::start().await;
    t.heartbeat("h-east", "r-east", "us-east-1", "idle").await;
    t.heartbeat("h-west", "r-west", "us-west-1", "busy").await;
    let (status, body) = t.find_match(Some("us-west-1")).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("No available hosts in region us-west-1"))
    );
    let (status, body) = t.find_match(Some("us-east-1")).await;
    assert_eq!((status, body["roomId"].as_str()), (200, Some("r-east")));
    // A registration without status means idle.
    let (status, _) = t
        .call(
            "POST",
            "/api/host/heartbeat",
            Some(r#"{"hostId":"h-north","roomId":"r-north","region":"us-west-1"}"#),
            Some(HOST_KEY),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(t.find_match(None).await.1["roomId"], "r-north");
    assert_eq!(
        t.status("nobody", "idle").await,
        (
            404,
            serde_json::json!({"success": false, "message": "Host not registered"})
        )
    );
    // A roomId is one host's: another host cannot take it while it lives.
    let (status, body) = t.heartbeat("h-thief", "r-east", "us-east-1", "idle").await;
    assert_eq!(
        (status, body["success"].as_bool()),
        (409, Some(false)),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn find_match_hands_out_the_freshest_hosts_first() {
    // More hosts than one index query reads (10): which end it reads from decides.
    let t = TestStack::start().await;
    for i in 0..20 {
        let (status, body) = t
            .heartbeat(
                &format!("stale-{i}"),
                &format!("stale-room-{i}"),
                "local",
                "idle",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // The stale hosts are still live (30 s), but closer to expiring than the fresh ones.
    t.clock.advance(10);
    for i in 0..20 {
        let (status, body) = t
            .heartbeat(
                &format!("fresh-{i}"),
                &format!("fresh-room-{i}"),
                "local",
                "idle",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for _ in 0..4 {
        let (status, body) = t.find_match(Some("local")).await;
        assert_eq!(status, 200, "{body}");
        let room = body["roomId"].as_str().unwrap_or_default();
        assert!(
            room.starts_with("fresh-room-"),
            "a match gets one of the freshest hosts, not {room}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reserved_host_stays_reserved_until_status_or_lease() {
    let t = TestStack::start().await;
    t.heartbeat("h1", "room-1", "local", "idle").await;
    assert_eq!(t.find_match(Some("local")).await.1["roomId"], "room-1");

    // Its heartbeats keep saying idle (the host has not seen the viewer yet): still reserved.
    for _ in 0..3 {
        t.clock.advance(5);
        assert_eq!(t.heartbeat("h1", "room-1", "local", "idle").await.0, 200);
        assert_eq!(
            t.find_match(Some("local")).await.0,
            404,
            "an idle heartbeat must not undo a match"
        );
    }
    // The host reports through status: busy while the viewer is there, idle after.
    assert_eq!(
        t.status("h1", "busy").await,
        (200, serde_json::json!({"success": true}))
    );
    assert_eq!(t.heartbeat("h1", "room-1", "local", "busy").await.0, 200);
    assert_eq!(
        t.find_match(None).await.0,
        404,
        "busy hosts are not matched"
    );
    assert_eq!(t.status("h1", "idle").await.0, 200);
    assert_eq!(
        t.find_match(None).await.1["roomId"],
        "room-1",
        "idle through status: matchable again"
    );

    // Reserved again; this time the viewer never shows up and the host never calls status.
    t.clock.advance(19);
    assert_eq!(t.heartbeat("h1", "room-1", "local", "idle").await.0, 200);
    assert_eq!(
        t.find_match(None).await.0,
        404,
        "the 20 s lease still holds at 19 s"
    );
    t.clock.advance(2);
    assert_eq!(t.heartbeat("h1", "room-1", "local", "idle").await.0, 200);
    assert_eq!(
        t.find_match(None).await.1["roomId"],
        "room-1",
        "after the lease an idle heartbeat makes it matchable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_host_stays_busy_until_status_idle() {
    let t = TestStack::start().await;
    t.heartbeat("h1", "room-1", "local", "idle").await;
    assert_eq!(t.status("h1", "busy").await.0, 200);
    // Real hosts (the CloudGaming host) keep sending `idle`; others send no status at all.
    t.clock.advance(10);
    assert_eq!(t.heartbeat("h1", "room-1", "local", "idle").await.0, 200);
    assert_eq!(
        t.find_match(None).await.0,
        404,
        "an idle heartbeat never returns a busy host to matching"
    );
    t.clock.advance(10);
    let body = serde_json::json!({ "hostId": "h1", "roomId": "room-1", "region": "local" });
    let (status, _) = t
        .call(
            "POST",
            "/api/host/heartbeat",
            Some(&body.to_string()),
            Some(HOST_KEY),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        t.find_match(None).await.0,
        404,
        "nor does a heartbeat without status"
    );
    t.clock.advance(25);
    assert_eq!(
        t.find_match(None).await.0,
        404,
        "still busy well past a lease"
    );
    assert_eq!(t.status("h1", "idle").await.0, 200);
    assert_eq!(
        t.find_match(None).await.1["roomId"],
        "room-1",
        "status idle makes it matchable"
    );

    // An entry that expired registers afresh: a heartbeat after 31 s of silence starts idle.
    assert_eq!(t.status("h1", "busy").await.0, 200);
    t.clock.advance(31);
    assert_eq!(t.heartbeat("h1", "room-1", "local", "idle").await.0, 200);
    assert_eq!(t.find_match(None).await.1["roomId"], "room-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_host_is_never_matched() {
    let t = TestStack::start().await;
    t.heartbeat("quiet", "room-quiet", "eu-central", "idle")
        .await;
    t.clock.advance(31);
    assert_eq!(
        t.find_match(None).await.0,
        404,
        "no heartbeat for 30 s: gone"
    );
    assert_eq!(t.find_match(Some("eu-central")).await.0, 404);
    assert_eq!(
        t.status("quiet", "idle").await.0,
        404,
        "an expired host is not registered"
    );
    // DynamoDB has not deleted it (TTL deletion is lazy; DynamoDB Local never does it).
    let item = t
        .raw_item(&t.store().tables().hosts, "hostId", "quiet")
        .await;
    assert!(item.is_some(), "the item is still in the table");
    // Heartbeating again brings it back.
    t.heartbeat("quiet", "room-quiet", "eu-central", "idle")
        .await;
    assert_eq!(t.find_match(None).await.1["roomId"], "room-quiet");
}

/// Registers `busy` busy hosts and one idle one, then measures one match.
async fn match_cost(busy: usize) -> (i64, f64) {
    let t = TestStack::start().await;
    let store = t.store();
    let registrations = futures_util::stream::iter(0..busy)
        .map(|i| async move {
            store
                .heartbeat(
                    &format!("busy-{i}"),
                    &format!("busy-room-{i}"),
                    "local",
                    HostStatus::Busy,
                    30,
                )
                .await
                .expect("register");
        })
        .buffer_unordered(32);
    registrations.collect::<Vec<_>>().await;
    t.heartbeat("the-idle-one", "idle-room", "local", "idle")
        .await;
    let outcome = store
        .reserve_idle_host(&["local".to_string()], 20)
        .await
        .expect("match");
    assert_eq!(
        outcome.host.map(|h| h.room_id).as_deref(),
        Some("idle-room")
    );
    (outcome.items_read, outcome.capacity_units)
}

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread")]
async fn match_cost_does_not_grow_with_the_pool() {
    let (alone_items, alone_units) = match_cost(0).await;
    let (crowd_items, crowd_units) = match_cost(2000).await;
    println!(
        "match cost: pool of 1 -> {alone_items} items read, {alone_units} capacity units; \
         2000 busy + 1 idle -> {crowd_items} items read, {crowd_units} capacity units"
    );
    assert!(
        alone_items >= 1,
        "the figures are real: the idle host was read"
    );
    assert!(
        crowd_items <= alone_items,
        "items read grew with the pool: {crowd_items} > {alone_items}"
    );
    assert!(
        crowd_units <= alone_units,
        "capacity grew with the pool: {crowd_units} > {alone_units}"
    );
}

/// Registers `idle` idle hosts and measures what one match reads.
async fn idle_pool_cost(idle: usize) -> i64 {
    let t = TestStack::start().await;
    let store = t.store();
    futures_util::stream::iter(0..idle)
        .map(|i| async move {
            store
                .heartbeat(
                    &format!("idle-{i}"),
                    &format!("idle-room-{i}"),
                    "local",
                    HostStatus::Idle,
                    30,
                )
                .await
                .expect("register");
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let outcome = store
        .reserve_idle_host(&["local".to_string()], 20)
        .await
        .expect("match");
    assert!(outcome.host.is_some(), "a host is matched");
    outcome.items_read
}

#[tokio::test(flavor = "multi_thread")]
async fn a_match_reads_as_many_hosts_from_ten_idle_as_from_a_crowd() {
    // scripts/bench.sh's goal: items read by a pool of 100,000 ÷ by a pool of 10 ≤ 1.05.
    let ten = idle_pool_cost(10).await;
    let crowd = idle_pool_cost(300).await;
    assert_eq!(ten, 10, "a pool of 10 is read whole");
    assert_eq!(crowd, ten, "a crowd of idle hosts costs what ten do");
}

struct Coturn {
    child: std::process::Child,
    port: u16,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_coturn(secret: &str) -> Coturn {
    let port = switchboard_local::dynamodb::free_port().expect("port");
    let relay_min = 50000 + (port % 100) * 100;
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--allow-loopback-peers",
        ])
        .arg(format!("--listening-port={port}"))
        .arg(format!("--min-port={relay_min}"))
        .arg(format!("--max-port={}", relay_min + 99))
        .args([
            "--use-auth-secret",
            &format!("--static-auth-secret={secret}"),
            "--realm=switchboard",
        ])
        .args([
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--fingerprint",
            "--log-file=stdout",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver is installed (apt-get install coturn)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "coturn did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Coturn { child, port }
}

/// Allocates a relay with `turnutils_uclient`; true when coturn accepted the credentials.
fn allocates(port: u16, username: &str, credential: &str) -> bool {
    let out = Command::new("timeout")
        .args([
            "20",
            "turnutils_uclient",
            "-u",
            username,
            "-w",
            credential,
            "-y",
            "-n",
            "2",
            "-m",
            "1",
            "-c",
        ])
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .output()
        .expect("turnutils_uclient is installed");
    let log = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !log.contains("Cannot complete Allocation")
}

fn turn_entry(body: &Value) -> (String, String) {
    let turn = body["iceServers"]
        .as_array()
        .expect("iceServers")
        .iter()
        .find(|s| {
            s["urls"][0]
                .as_str()
                .is_some_and(|u| u.starts_with("turn:"))
        })
        .expect("a TURN entry");
    (
        turn["username"].as_str().unwrap().to_string(),
        turn["credential"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn find_match_credentials_allocate_a_relay_on_coturn() {
    let coturn = start_coturn(TURN_SECRET);
    let t = TestStack::start().await;
    t.heartbeat("h-turn", "room-turn", "local", "idle").await;
    let (status, body) = t.find_match(None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["iceServers"][0],
        serde_json::json!({"urls": ["stun:127.0.0.1:3478"]})
    );
    let (username, credential) = turn_entry(&body);
    let expiry: i64 = username
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("expiry timestamp");
    assert!(
        (expiry - now() - 86_400).abs() < 60,
        "the timestamp is the expiry, 24 h ahead: {username}"
    );
    assert!(
        allocates(coturn.port, &username, &credential),
        "coturn accepts Switchboard's credentials"
    );
    assert!(
        !allocates(coturn.port, &username, "d3JvbmcK"),
        "and refuses a wrong credential"
    );

    // Credentials minted two days ago (24 h lifetime) have expired: coturn refuses them.
    let mut past = options();
    past.clock = switchboard::Clock::manual(now() - 2 * 86_400);
    let old = TestStack::start_with(past).await;
    old.heartbeat("h-old", "room-old", "local", "idle").await;
    let (username, credential) = turn_entry(&old.find_match(None).await.1);
    assert!(
        !allocates(coturn.port, &username, &credential),
        "an expired credential is refused"
    );
}
