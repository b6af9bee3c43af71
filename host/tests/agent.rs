//! `switchboard-host` against the local stack: the README's command driving `examples/host.py`
//! (a viewer's offer reaches it and its answer comes back; busy and idle reach find-match;
//! SIGTERM stops it), and the agent relaying on its own stdin/stdout (bad lines skipped, the
//! socket the gateway closes reopened and identified again, a refused key fatal).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::Clock;
use switchboard_tests::{HOST_KEY, Peer, TestStack};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const AGENT: &str = env!("CARGO_BIN_EXE_switchboard-host");
const WAIT: Duration = Duration::from_secs(20);

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The code block of the README's "Native hosts: switchboard-host" section, as printed.
fn readme_command() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let section = readme
        .split("\n## Native hosts: switchboard-host\n")
        .nth(1)
        .expect("the README has the section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a sh block");
    block.to_string()
}

/// A running agent (or the shell running it): its stderr collected (and echoed), its stdout
/// as lines when piped.
struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Option<mpsc::UnboundedReceiver<String>>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the agent starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let collected = stderr.clone();
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                eprintln!("agent: {line}");
                collected.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let mut out_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out_lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stderr,
            stdout: Some(rx),
        }
    }

    fn stderr_has(&self, text: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    async fn wait_for_stderr(&self, text: &str, count: usize) {
        let deadline = Instant::now() + WAIT;
        while self.stderr_has(text) < count {
            assert!(
                Instant::now() < deadline,
                "no {count}× {text:?} on the agent's stderr"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next line the agent writes for its process, as JSON.
    async fn next_event(&mut self) -> Value {
        let stdout = self.stdout.as_mut().expect("stdout is piped");
        let line = tokio::time::timeout(WAIT, stdout.recv())
            .await
            .expect("the agent writes a line in time")
            .expect("the agent's stdout is open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    async fn write_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(line.as_bytes()).await.expect("write");
        stdin.write_all(b"\n").await.expect("write");
        stdin.flush().await.expect("flush");
    }

    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the agent exits in time")
            .expect("wait")
            .code()
    }
}

/// A viewer in `room` that sends an offer and returns the frame answering it.
async fn offer(stack: &TestStack, room: &str, viewer: &str, sdp: &str) -> (Peer, Value) {
    let mut peer = Peer::connect(&stack.stack.ws_url, viewer).await;
    let identified = peer
        .identify(json!({ "id": viewer, "type": "client", "roomId": room }))
        .await;
    assert_eq!(identified["type"], "identified", "{identified}");
    peer.send(
        "handshake",
        json!({ "type": "producer", "description": { "type": "offer", "sdp": sdp } }),
    )
    .await;
    let answer = peer.recv("the host's answer").await;
    (peer, answer)
}

fn assert_answer(frame: &Value, viewer: &str, sdp: &str) {
    assert_eq!(frame["type"], "producer", "{frame}");
    assert_eq!(frame["sender"], "host", "{frame}");
    assert_eq!(frame["receiver"], viewer, "{frame}");
    assert_eq!(
        frame["description"],
        json!({ "type": "answer", "sdp": sdp }),
        "{frame}"
    );
}

async fn find_match_until(stack: &TestStack, wanted: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = stack.find_match(Some("local")).await;
        if status == wanted {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "find-match stays {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The README's command, as printed, with `examples/host.py` as the host process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_command_answers_viewers_reports_busy_and_idle_and_stops_on_sigterm() {
    let mut options = switchboard_tests::options();
    // Real time: host entries expire (a 2 s TTL, so heartbeats every 1.3 s), leases lapse.
    options.clock = Clock::system();
    for (name, value) in [
        ("SWITCHBOARD_HOST_TTL_SECONDS", "2"),
        ("SWITCHBOARD_MATCH_LEASE_SECONDS", "1"),
    ] {
        options.vars.insert(name.into(), value.into());
    }
    let stack = TestStack::start_with(options).await;
    let host_id = uuid::Uuid::new_v4().to_string();
    let bin = std::path::Path::new(AGENT)
        .parent()
        .expect("the binary's folder");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(readme_command())
        .current_dir(workspace_root())
        .env("PATH", path)
        .env("HOST_KEY", HOST_KEY)
        .env("API", &stack.stack.http_url)
        .env("SWITCHBOARD_HOST_ID", &host_id);
    let mut running = Running::spawn(shell);
    running.wait_for_stderr("host.py: room ", 1).await;
    running
        .wait_for_stderr("host.py: identified in room", 1)
        .await;

    // Past the first heartbeat's TTL: only the heartbeats since keep the host matchable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, matched) = stack.find_match(Some("local")).await;
    assert_eq!(status, 200, "{matched}");
    let room = matched["roomId"].as_str().expect("roomId").to_string();

    // The viewer's offer reaches the script; its answer comes back.
    let (viewer, answer) = offer(&stack, &room, "viewer-1", "v=0 offer-1").await;
    assert_answer(&answer, "viewer-1", "answer to v=0 offer-1");
    running
        .wait_for_stderr("host.py: offer from viewer-1", 1)
        .await;

    // The script said busy: once the match's lease (1 s) and a TTL (2 s) are past, heartbeats
    // still keep it out of matching.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = stack.find_match(Some("local")).await;
    assert_eq!(status, 404, "a busy host was matched: {body}");

    // The viewer leaves; the script says idle; find-match finds the host again.
    viewer.close().await;
    running.wait_for_stderr("host.py: viewer-1 left", 1).await;
    let again = find_match_until(&stack, 200).await;
    assert_eq!(again["roomId"], room.as_str(), "{again}");

    // SIGTERM: exit 0, the socket closed, no heartbeat after it.
    let shell_pid = running.child.id().expect("the shell runs");
    let agent_pid = std::fs::read_to_string(format!("/proc/{shell_pid}/task/{shell_pid}/children"))
        .expect("the shell's children")
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse::<i32>().ok())
        .expect("the agent's pid");
    let sigterm_at = Clock::system().now();
    // SAFETY: kill(2) on the agent this test started.
    assert_eq!(unsafe { libc::kill(agent_pid, libc::SIGTERM) }, 0);
    let stopped = Instant::now();
    assert_eq!(running.exit_code(Duration::from_secs(10)).await, Some(0));
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while stack.stack.open_sockets() > 0 {
        assert!(Instant::now() < deadline, "the host's socket stays open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let host = || async {
        stack
            .raw_item(&stack.store().tables().hosts, "hostId", &host_id)
            .await
            .expect("the host's entry")
    };
    let item = host().await;
    // It went out of matching as it stopped, not only once its entry expires.
    assert_eq!(
        item.get("status")
            .and_then(|s| s.as_s().ok())
            .map(String::as_str),
        Some("busy"),
        "{item:?}"
    );
    let expires_at =
        |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
            item.get("expiresAt")
                .and_then(|n| n.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .expect("expiresAt")
        };
    let last = expires_at(&item);
    // The last heartbeat came before SIGTERM (its entry lives 2 s; a second for rounding).
    assert!(
        last <= sigterm_at + 3,
        "a heartbeat after SIGTERM: expires {last}, SIGTERM at {sigterm_at}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let item = host().await;
    assert_eq!(
        expires_at(&item),
        last,
        "a heartbeat after SIGTERM: {item:?}"
    );
    assert!(last <= Clock::system().now(), "{item:?}");
    let (status, body) = stack.find_match(Some("local")).await;
    assert_eq!(status, 404, "{body}");
}

/// No `--exec`: the test is the host process, on the agent's stdin/stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_skipped_and_frames_keep_flowing_when_the_gateway_closes_the_socket() {
    const MAX_CONNECTION: Duration = Duration::from_secs(6);
    let mut options = switchboard_tests::options();
    options.ws_max_connection = MAX_CONNECTION;
    let stack = TestStack::start_with(options).await;
    let api = stack.stack.http_url.clone();
    let agent = |key: &str| {
        let mut command = Command::new(AGENT);
        command
            .args([
                "--api-url",
                &api,
                "--region",
                "local",
                "--room-id",
                "room-relay",
            ])
            .env("SWITCHBOARD_HOST_KEY", key)
            .env("SWITCHBOARD_HOST_ID", "host-relay-secret");
        command
    };

    // A key the API refuses: one line naming the refusal, exit 1.
    let mut refused = Running::spawn(agent("not-a-host-key"));
    assert_eq!(refused.exit_code(WAIT).await, Some(1));
    refused.wait_for_stderr("heartbeat refused: 401", 1).await;

    let mut running = Running::spawn(agent(HOST_KEY));
    let ice = running.next_event().await;
    assert_eq!(ice["type"], "iceServers", "{ice}");
    assert_eq!(ice["roomId"], "room-relay", "{ice}");
    let servers = ice["iceServers"].as_array().expect("an array");
    assert!(
        servers
            .iter()
            .any(|s| s["username"].is_string() && s["credential"].is_string()),
        "no TURN credentials: {ice}"
    );
    let identified = running.next_event().await;
    assert_eq!(identified["type"], "identified", "{identified}");
    assert_eq!(identified["roomId"], "room-relay", "{identified}");
    let first_identify = Instant::now();

    // Not JSON, one frame over 32 KB (sent, it would close the socket with 1009), a frame
    // that is not one: each reported with its line number and skipped.
    running.write_line("this is not JSON").await;
    let big = json!({ "action": "handshake", "data": { "pad": "x".repeat(40_000) } });
    running.write_line(&big.to_string()).await;
    running.write_line(r#"{"type":"answer"}"#).await;

    let viewer = tokio::spawn({
        let ws_url = stack.stack.ws_url.clone();
        async move {
            let mut peer = Peer::connect(&ws_url, "viewer-1").await;
            peer.identify(json!({ "id": "viewer-1", "type": "client", "roomId": "room-relay" }))
                .await;
            peer.send(
                "handshake",
                json!({ "type": "producer", "description": { "type": "offer", "sdp": "offer-1" } }),
            )
            .await;
            let answer = peer.recv("the answer").await;
            (peer, answer)
        }
    });
    let offer = running.next_event().await;
    assert_eq!(
        offer["type"], "producer",
        "the socket reopened first? {offer}"
    );
    assert_eq!(offer["sender"], "viewer-1", "{offer}");
    assert_eq!(offer["description"]["sdp"], "offer-1", "{offer}");
    running
        .write_line(
            r#"{"action":"handshake","data":{"type":"producer","receiver":"viewer-1","description":{"type":"answer","sdp":"answer-1"}}}"#,
        )
        .await;
    let (_viewer, answer) = viewer.await.expect("the viewer");
    assert_answer(&answer, "viewer-1", "answer-1");
    assert!(
        first_identify.elapsed() < MAX_CONNECTION,
        "too slow to tell a 1009 close from the gateway's: {:?}",
        first_identify.elapsed()
    );
    running.wait_for_stderr("line 1 skipped: not JSON", 1).await;
    let too_big = format!(
        "line 2 skipped: {} bytes, over the 32768-byte limit",
        big.to_string().len()
    );
    running.wait_for_stderr(&too_big, 1).await;
    running
        .wait_for_stderr("line 3 skipped: neither \"action\"", 1)
        .await;

    // The gateway closes the socket at its maximum age; the agent opens another and
    // identifies again (the viewer's socket went too: a new viewer offers).
    let mut seen = Vec::new();
    let again = loop {
        let event = running.next_event().await;
        if event["type"] == "identified" {
            break event;
        }
        seen.push(event);
    };
    assert!(
        first_identify.elapsed() >= MAX_CONNECTION - Duration::from_millis(500),
        "identified again after {:?}, before the gateway closed the socket; {seen:?}",
        first_identify.elapsed()
    );
    assert_eq!(again["roomId"], "room-relay", "{again}");
    let viewer = tokio::spawn({
        let ws_url = stack.stack.ws_url.clone();
        async move {
            let mut peer = Peer::connect(&ws_url, "viewer-2").await;
            peer.identify(json!({ "id": "viewer-2", "type": "client", "roomId": "room-relay" }))
                .await;
            peer.send(
                "handshake",
                json!({ "type": "producer", "description": { "type": "offer", "sdp": "offer-2" } }),
            )
            .await;
            peer.recv("the answer").await
        }
    });
    let offer = loop {
        let event = running.next_event().await;
        if event["type"] == "producer" {
            break event;
        }
    };
    assert_eq!(offer["sender"], "viewer-2", "{offer}");
    running
        .write_line(
            r#"{"action":"handshake","data":{"type":"producer","receiver":"viewer-2","description":{"type":"answer","sdp":"answer-2"}}}"#,
        )
        .await;
    assert_answer(&viewer.await.expect("the viewer"), "viewer-2", "answer-2");

    // The end of its input stops it: exit 0.
    drop(running.child.stdin.take());
    assert_eq!(running.exit_code(Duration::from_secs(10)).await, Some(0));
}
