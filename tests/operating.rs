//! Operating it: what an operator reads off a deployment, checked through the local stack.
//!
//! - A session's `host` is its task's public IPv4, which EC2 reports on the task's network
//!   interface (the local EC2 endpoint associates 127.1.0.x with a task's private 127.0.0.x),
//!   and the private address when the task has no public one.
//! - Only the functions the template grants `ec2:DescribeNetworkInterfaces` may call it.
//! - The functions' metrics (EMF lines) reach the totals at `GET /__local/metrics`.
//! - No log line and no metric line of real traffic carries a secret.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_local::dynamodb::{self, DynamoDbLocal, Storage};
use switchboard_tests::*;

const GAME: &str = "arena";

/// Everything the functions (and the stack) log in this test binary, as Lambda's JSON log
/// format writes it (`switchboard::json_logs`, the functions' own subscriber).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber =
            switchboard::json_logs(tracing_subscriber::filter::LevelFilter::INFO, move || {
                Capture(sink.clone())
            });
        subscriber
            .try_init()
            .expect("this binary's only log subscriber");
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stack whose sessions application `arena` starts cold in `local` (public IPs) and in
/// `private` (no public IP), with the example server as every task's process.
fn sessions_stack() -> switchboard_local::StackOptions {
    captured_logs();
    let mut options = options();
    options.task_command = Some(format!(
        "exec {} \"$@\"",
        env!("CARGO_BIN_EXE_example-server")
    ));
    // A room's task must not identify as its SFU: the secrets test plays the SFU itself, and
    // the example server (which identifies as the room's SFU when given ROOM_ID) would race it
    // for the room's socket.
    options.sfu_command = Some("exec sleep 3600".into());
    options.task_stop_timeout = Duration::from_secs(2);
    let location = |public: bool| {
        json!({
            "region": "us-east-1", "cluster": switchboard_local::DEFAULT_CLUSTER,
            "subnets": ["subnet-local"], "securityGroups": ["sg-local"], "ips": ["127.0.0.1"],
            "assignPublicIp": public,
        })
    };
    options.vars.insert(
        "SWITCHBOARD_LOCATIONS".into(),
        json!({ "local": location(true), "private": location(false) }).to_string(),
    );
    options.vars.insert(
        "SWITCHBOARD_APPLICATIONS".into(),
        json!({ GAME: {
            "taskDefinition": "switchboard-arena", "container": "game",
            "ports": [{ "type": "udp", "container": 7777 }],
        }})
        .to_string(),
    );
    options
        .vars
        .insert("SWITCHBOARD_SESSION_WAIT_SECONDS".into(), "10".into());
    options
}

async fn udp_ping(host: &str) -> Option<String> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let mut buffer = [0u8; 256];
    for _ in 0..25 {
        socket.send_to(b"ping", (host, 7777)).await.ok()?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buffer)).await
        {
            return Some(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
    }
    None
}

/// The functions' EC2 client, of the local stack's EC2 endpoint, signed as `principal`.
async fn ec2_as(t: &TestStack, principal: &str) -> switchboard::ec2::Ec2 {
    let sdk = switchboard_local::sdk_config_for(principal).await;
    switchboard::ec2::Ec2::new(&sdk, Some(t.stack.ecs_url.clone()))
}

async fn cold_session(t: &TestStack, location: &str) -> (String, String) {
    let (status, created) = t
        .call(
            "POST",
            "/session",
            Some(&json!({ "image": GAME, "location": location }).to_string()),
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let host = created["host"]
        .as_str()
        .unwrap_or_else(|| panic!("a cold start's address within the wait: {created}"))
        .to_string();
    (id, host)
}

fn task_of(t: &TestStack, session_id: &str) -> switchboard_local::TaskRecord {
    t.stack
        .tasks()
        .into_iter()
        .find(|task| task.environment.get("SESSION_ID").map(String::as_str) == Some(session_id))
        .expect("the session's task")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_session_reports_its_public_address() {
    let t = TestStack::start_with(sessions_stack()).await;

    let (id, host) = cold_session(&t, "local").await;
    let task = task_of(&t, &id);
    let public = task.public_address.expect("a public IP was asked for");
    assert_ne!(public, task.private_address);
    // What EC2 reports for the task's interface is what the session says.
    let association = ec2_as(&t, switchboard_local::ADMIN_ACCESS_KEY)
        .await
        .public_ips("", &[task.network_interface.as_str()])
        .await
        .expect("DescribeNetworkInterfaces");
    assert_eq!(association, [host.as_str()]);
    assert_eq!(host, public.to_string());
    assert_eq!(
        udp_ping(&host).await.as_deref(),
        Some(format!("pong {}", task.environment["SERVER_ID"]).as_str()),
        "the public address reaches the server"
    );
    let (status, one) = t
        .call("GET", &format!("/session/{id}"), None, Some(OPERATOR_KEY))
        .await;
    assert_eq!((status, one["host"].as_str()), (200, Some(host.as_str())));

    // Without a public IP, the private address.
    let (id, host) = cold_session(&t, "private").await;
    let task = task_of(&t, &id);
    assert_eq!(task.public_address, None);
    assert_eq!(host, task.private_address.to_string());
    assert!(
        udp_ping(&host).await.is_some(),
        "the private address reaches it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_functions_granted_it_may_read_network_interfaces() {
    let t = TestStack::start_with(sessions_stack()).await;
    let granted: Vec<String> = t
        .stack
        .iam()
        .functions()
        .into_iter()
        .filter(|f| {
            t.stack
                .iam()
                .granted(f)
                .iter()
                .any(|g| g.starts_with("ec2:"))
        })
        .collect();
    assert_eq!(granted, ["CreateSessionFunction", "GetSessionFunction"]);

    let refused = ec2_as(&t, "FindMatchFunction")
        .await
        .public_ips("", &[])
        .await
        .expect_err("find-match has no EC2 grant");
    assert!(
        matches!(&refused, switchboard::ec2::Ec2Error::Refused { code, .. } if code == "UnauthorizedOperation"),
        "{refused:?}"
    );
    for function in granted {
        ec2_as(&t, &function)
            .await
            .public_ips("", &[])
            .await
            .unwrap_or_else(|e| panic!("{function} is granted the call: {e:?}"));
    }
}

/// The total of `name` with exactly these dimensions at `GET /__local/metrics`.
async fn metric(t: &TestStack, name: &str, dimensions: Value) -> f64 {
    let response = t.request("GET", "/__local/metrics", None, None, &[]).await;
    assert_eq!(response.status(), 200);
    let totals: Value = response.json().await.expect("JSON totals");
    assert_eq!(totals["namespace"], "Switchboard");
    totals["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .filter(|m| m["name"] == name && m["dimensions"] == dimensions)
        .filter_map(|m| m["value"].as_f64())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_match_and_a_miss_are_counted() {
    captured_logs();
    let t = TestStack::start().await;
    let region = json!({ "Region": "local" });
    let (matches, misses) = (
        metric(&t, "Matches", region.clone()).await,
        metric(&t, "Misses", region.clone()).await,
    );
    let host_id = uuid::Uuid::new_v4().to_string();
    let (status, body) = t.heartbeat(&host_id, "room-metrics", "local", "idle").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.find_match(Some("local")).await.0, 200);
    assert_eq!(t.find_match(Some("local")).await.0, 404);
    assert_eq!(metric(&t, "Matches", region.clone()).await, matches + 1.0);
    assert_eq!(metric(&t, "Misses", region).await, misses + 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dynamodb_outage_is_counted_as_503s() {
    captured_logs();
    let jar = dynamodb::ensure_installed(&dynamodb::cache_dir()).expect("DynamoDB Local installs");
    let port = dynamodb::free_port().expect("free port");
    let mut dynamo: DynamoDbLocal =
        DynamoDbLocal::start_with(&jar, port, &Storage::InMemory).expect("DynamoDB Local starts");
    dynamo.wait_ready().await.expect("DynamoDB Local answers");
    let t = TestStack::start_with(options_for(dynamo.endpoint.clone())).await;
    let dependency = json!({ "Dependency": "DynamoDB" });
    assert_eq!(metric(&t, "Unavailable", dependency.clone()).await, 0.0);

    dynamo.stop();
    let (status, body) = t.find_match(Some("local")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(metric(&t, "Unavailable", dependency).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_log_line_or_metric_carries_a_secret() {
    let logs = captured_logs();
    let t = TestStack::start_with(sessions_stack()).await;
    let mut secrets: Vec<String> = [OPERATOR_KEYS, HOST_KEYS]
        .iter()
        .flat_map(|keys| keys.split(','))
        .map(String::from)
        .chain([TURN_SECRET.to_string(), "a-wrong-operator-key".into()])
        .collect();

    // Rooms: createRoom, the SFU identifying with its token, a claim, a client's offer relayed.
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let room = body["roomId"].as_str().expect("roomId").to_string();
    let token = t.task_env(&room, "SFU_TOKEN");
    secrets.push(token.clone());
    let mut sfu = Peer::connect(&t.stack.ws_url, "sfu").await;
    let ack = sfu
        .identify(json!({ "id": room, "type": "sfu", "token": token }))
        .await;
    assert_eq!(ack["type"], "identified", "{ack}");
    let refused = Peer::connect(&t.stack.ws_url, "impostor")
        .await
        .identify(json!({ "id": room, "type": "sfu", "token": "not-the-token" }))
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    let (status, body) = t
        .call("PATCH", "/claimRoom", Some(r#"{"urlPath":"/ops"}"#), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut client = Peer::connect(&t.stack.ws_url, "client").await;
    let ack = client
        .identify(json!({ "id": "client-1", "type": "client", "roomId": room }))
        .await;
    assert_eq!(ack["type"], "identified", "{ack}");
    client
        .send(
            "handshake",
            json!({ "type": "producer", "description": { "type": "offer", "sdp": "v=0" } }),
        )
        .await;
    sfu.recv("the relayed offer").await;

    // Matchmaking: a host's secret id, its heartbeat, a match with TURN credentials, status.
    let host_id = uuid::Uuid::new_v4().to_string();
    secrets.push(host_id.clone());
    let (status, body) = t.heartbeat(&host_id, "room-ops", "local", "idle").await;
    assert_eq!(status, 200, "{body}");
    let (status, matched) = t.find_match(Some("local")).await;
    assert_eq!(status, 200, "{matched}");
    for server in matched["iceServers"].as_array().into_iter().flatten() {
        if let Some(credential) = server["credential"].as_str() {
            secrets.push(credential.to_string());
        }
    }
    assert_eq!(t.status(&host_id, "busy").await.0, 200);

    // Sessions: a cold start (its server's token), a refused key, an ending.
    let (id, _) = cold_session(&t, "local").await;
    secrets.push(task_of(&t, &id).environment["SERVER_TOKEN"].clone());
    let (status, _) = t
        .call("GET", "/session", None, Some("a-wrong-operator-key"))
        .await;
    assert_eq!(status, 401);
    let (status, _) = t
        .call(
            "DELETE",
            &format!("/session/{id}"),
            None,
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 200);
    t.stack.sweep().await;
    sfu.close().await;
    client.close().await;

    let logs =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    let lines: Vec<&str> = logs.lines().collect();
    // The traffic was logged, as JSON lines with the route.
    for line in &lines {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    for route in [
        "create-room",
        "identify",
        "find-match",
        "heartbeat",
        "create-session",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(r#""route":"{route}""#))),
            "no log line of {route}"
        );
    }
    let metric_lines = t.stack.metric_lines();
    assert!(
        metric_lines.iter().any(|l| l.contains("\"Matches\"")),
        "the match was counted"
    );
    for secret in &secrets {
        for line in lines
            .iter()
            .copied()
            .chain(metric_lines.iter().map(String::as_str))
        {
            assert!(!line.contains(secret.as_str()), "a secret in: {line}");
        }
    }
}
