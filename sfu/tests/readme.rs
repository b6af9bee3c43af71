//! The walkthroughs of README.md and demo/README.md, run as printed against a local stack whose
//! rooms run `switchboard-sfu` (as `scripts/run-local.sh` starts it), so they cannot drift from
//! the code.
//!
//! A block is run when the line before its fence is `<!-- readme-test: NAME [retry] -->` or
//! `<!-- readme-test: terminal=NAME [close=OTHER] -->`, in the order the files print them:
//!
//! - A shell block: each command runs through `bash` in the workspace with `API`, `WS`,
//!   `OPERATOR_KEY`, `HOST_KEY` (and `ROOM`, the roomId of the first createRoom) set as the
//!   README says to copy them. A `# …` comment on the command's line, or the first comment line
//!   under it, that starts with a status or a JSON value is what it must print: the status
//!   (default 2xx; curl reports it through a `.curlrc` of the test's, the command is unchanged)
//!   and a body of exactly that shape: `…` in a string matches any text, `{…}` any object,
//!   `[…]` any array; keys in any order; prose after the value is prose. `retry` runs the
//!   block's first command again until it prints that (30 s: a room is claimable once its SFU
//!   has identified).
//! - A terminal block (examples/wscat.mjs): its first line starts the terminal's command, the
//!   other lines are typed into it, and each `#   {…}` line is the next frame it must print
//!   (10 s). A later block of the same terminal goes on with it; `close=OTHER` first closes
//!   OTHER's input, as Ctrl-D does.
//! - `sfu-command`: the stack's `--sfu-command` of a `scripts/run-local.sh` line, checked by
//!   being that SFU (its own test below).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The defaults the README prints; the test's stack listens where the OS put it.
const README_HTTP: &str = "http://127.0.0.1:3000";
const README_WS: &str = "ws://127.0.0.1:3001";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Where the test's stack listens.
struct Urls {
    http: String,
    ws: String,
}

struct Block {
    file: &'static str,
    marker: String,
    lines: Vec<String>,
}

impl Block {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.marker.split_whitespace().find_map(|word| {
            (word == name)
                .then_some("")
                .or_else(|| word.strip_prefix(&format!("{name}=")))
        })
    }
}

fn blocks(file: &'static str) -> Vec<Block> {
    let text = std::fs::read_to_string(workspace_root().join(file)).expect("the README");
    let mut lines = text.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        let Some(marker) = line
            .trim()
            .strip_prefix("<!-- readme-test:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{file}: a readme-test marker stands right above a fenced block: {line}"
        );
        let body = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .map(str::to_string)
            .collect();
        found.push(Block {
            file,
            marker: marker.trim().to_string(),
            lines: body,
        });
    }
    found
}

/// What a command must print: a status (None: any 2xx) and the body's shape.
#[derive(Debug)]
struct Expected {
    status: Option<u16>,
    body: Value,
    text: String,
}

/// `404 {"message":…}  (prose)`, or None when the comment is prose.
fn expectation(comment: &str, stack: &Urls) -> Option<Expected> {
    let comment = comment.trim();
    let (status, rest) = match comment.split_once(' ') {
        Some((code, rest)) if code.len() == 3 && code.parse::<u16>().is_ok() => {
            (code.parse().ok(), rest.trim_start())
        }
        _ => (None, comment),
    };
    if !rest.starts_with('{') && !rest.starts_with('[') {
        return None;
    }
    let pattern = rest
        .replace(README_HTTP, &stack.http)
        .replace(README_WS, &stack.ws)
        .replace("{…}", "\"…{}\"")
        .replace("[…]", "\"…[]\"");
    let body = serde_json::Deserializer::from_str(&pattern)
        .into_iter::<Value>()
        .next()?
        .unwrap_or_else(|e| {
            panic!("the README's output is JSON with … for what varies: {comment}: {e}")
        });
    Some(Expected {
        status,
        body,
        text: comment.to_string(),
    })
}

/// `…` matches any text.
fn glob(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('…').collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text.ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

fn matches(pattern: &Value, actual: &Value) -> bool {
    match (pattern, actual) {
        (Value::String(p), _) if p == "…{}" => actual.is_object(),
        (Value::String(p), _) if p == "…[]" => actual.is_array(),
        (Value::String(p), Value::String(a)) => glob(p, a),
        (Value::Object(p), Value::Object(a)) => {
            p.len() == a.len()
                && p.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|got| matches(v, got)))
        }
        (Value::Array(p), Value::Array(a)) => {
            p.len() == a.len() && p.iter().zip(a).all(|(p, a)| matches(p, a))
        }
        _ => pattern == actual,
    }
}

struct Shell {
    env: HashMap<String, String>,
    curl_home: PathBuf,
    path: String,
}

struct Ran {
    status: Option<u16>,
    stdout: String,
    stderr: String,
}

impl Shell {
    fn command(&self, line: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .args(["-c", line])
            .current_dir(workspace_root())
            .envs(&self.env)
            .env("PATH", &self.path)
            .env("CURL_HOME", &self.curl_home);
        command
    }

    fn run(&self, line: &str) -> Ran {
        let output = self.command(line).output().expect("bash runs");
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        Ran {
            // The .curlrc writes the status to stderr, last.
            status: stderr.lines().last().and_then(|l| l.trim().parse().ok()),
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr,
        }
    }
}

fn satisfies(ran: &Ran, expected: &Expected) -> bool {
    let status_ok = match (expected.status, ran.status) {
        (Some(want), Some(got)) => want == got,
        (None, Some(got)) => (200..300).contains(&got),
        (_, None) => false,
    };
    let body: Option<Value> = serde_json::from_str(ran.stdout.trim()).ok();
    status_ok && body.is_some_and(|body| matches(&expected.body, &body))
}

/// Commands of a shell block with what each must print.
fn commands(block: &Block, urls: &Urls) -> Vec<(String, Option<Expected>)> {
    let mut commands: Vec<(String, Option<Expected>)> = Vec::new();
    let mut lines = block.lines.iter();
    let mut expecting = false;
    while let Some(line) = lines.next() {
        if let Some(comment) = line.trim_start().strip_prefix('#') {
            if expecting && let Some(expected) = expectation(comment, urls) {
                commands.last_mut().unwrap().1 = Some(expected);
                expecting = false;
            }
            continue;
        }
        let mut command = line.clone();
        while command.ends_with('\\') {
            command.push('\n');
            command.push_str(lines.next().expect("a continued line"));
        }
        let last_line = command.lines().last().unwrap_or_default();
        let inline = last_line
            .find("  # ")
            .and_then(|at| expectation(&last_line[at + 4..], urls));
        expecting = inline.is_none();
        commands.push((command, inline));
    }
    commands
}

struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    frames: Receiver<String>,
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_terminal(shell: &Shell, line: &str) -> Terminal {
    let mut child = shell
        .command(line)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the terminal's command starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, frames) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Terminal {
        input: child.stdin.take(),
        child,
        frames,
    }
}

fn node_path() -> String {
    // scripts/ensure-deps.sh's Node.js, when the one on PATH was too old for it to keep.
    let cache = std::env::var_os("SWITCHBOARD_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache"));
    let path = std::env::var("PATH").unwrap_or_default();
    let node = cache.join("node/bin");
    if node.join("node").is_file() {
        format!("{}:{path}", node.display())
    } else {
        path
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_walkthroughs_run_as_printed() {
    let mut options = common::options();
    let host_key = format!("host-{}", uuid::Uuid::new_v4().simple());
    // As scripts/run-local.sh configures the stack (its coturn's URLs; nothing here dials them).
    for (name, value) in [
        ("SWITCHBOARD_HOST_KEYS", host_key.as_str()),
        (
            "SWITCHBOARD_TURN_URLS",
            "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp",
        ),
    ] {
        options.vars.insert(name.into(), value.into());
    }
    let stack = common::start(options).await;
    let urls = Urls {
        http: stack.http_url.clone(),
        ws: stack.ws_url.clone(),
    };
    let curl_home = std::env::temp_dir().join(format!(
        "switchboard-readme-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&curl_home).unwrap();
    std::fs::write(
        curl_home.join(".curlrc"),
        "write-out = \"%{stderr}%{http_code}\\n\"\n",
    )
    .unwrap();
    let mut shell = Shell {
        env: HashMap::from([
            ("API".to_string(), stack.http_url.clone()),
            ("WS".to_string(), stack.ws_url.clone()),
            ("OPERATOR_KEY".to_string(), common::OPERATOR_KEY.to_string()),
            ("HOST_KEY".to_string(), host_key.clone()),
        ]),
        curl_home: curl_home.clone(),
        path: node_path(),
    };

    let all: Vec<Block> = blocks("README.md")
        .into_iter()
        .chain(blocks("demo/README.md"))
        .collect();
    let names: Vec<&str> = all.iter().map(|b| b.marker.as_str()).collect();
    for expected in [
        "rooms",
        "claim",
        "matchmaking",
        "terminal=host",
        "delete-room",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "README marks its {expected} walkthrough: {names:?}"
        );
    }

    let mut terminals: HashMap<String, Terminal> = HashMap::new();
    let mut ran_commands = 0;
    let mut received_frames = 0;
    for block in &all {
        let name = &block.marker;
        if name == "sfu-command" {
            continue; // the_readmes_own_sfu_task_keeps_its_room
        }
        if let Some(terminal) = block.attribute("terminal") {
            if let Some(other) = block.attribute("close") {
                let closing = terminals
                    .get_mut(other)
                    .unwrap_or_else(|| panic!("{}: no terminal {other} to close", block.file));
                closing.input.take();
            }
            let mut lines = block.lines.iter().peekable();
            if !terminals.contains_key(terminal) {
                let line = lines
                    .next()
                    .expect("a terminal block starts with its command");
                terminals.insert(terminal.to_string(), start_terminal(&shell, line));
                ran_commands += 1;
            }
            let term = terminals.get_mut(terminal).unwrap();
            for line in lines {
                if let Some(comment) = line.trim_start().strip_prefix('#') {
                    let Some(expected) = expectation(comment, &urls) else {
                        continue;
                    };
                    let frame = term
                        .frames
                        .recv_timeout(Duration::from_secs(10))
                        .unwrap_or_else(|_| {
                            panic!(
                                "{} [{name}]: no frame within 10 s; expected {}",
                                block.file, expected.text
                            )
                        });
                    let got: Value = serde_json::from_str(&frame).unwrap_or_else(|e| {
                        panic!("{} [{name}]: not a frame: {frame}: {e}", block.file)
                    });
                    assert!(
                        matches(&expected.body, &got),
                        "{} [{name}]: terminal {terminal} printed\n  {frame}\nwhere the README shows\n  {}",
                        block.file,
                        expected.text
                    );
                    received_frames += 1;
                } else {
                    let input = term.input.as_mut().expect("the terminal is open");
                    writeln!(input, "{line}").expect("the terminal takes input");
                }
            }
            continue;
        }

        let retry = block.attribute("retry").is_some();
        for (index, (command, expected)) in commands(block, &urls).into_iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(30);
            let ran = loop {
                let ran = shell.run(&command);
                let ok = expected.as_ref().is_none_or(|e| satisfies(&ran, e));
                if ok || !(retry && index == 0) || Instant::now() > deadline {
                    break ran;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            ran_commands += 1;
            if let Some(expected) = &expected {
                assert!(
                    satisfies(&ran, expected),
                    "{} [{name}]: `{command}` printed\n  {}\n  (status {:?}; stderr {})\nwhere the README shows\n  {}",
                    block.file,
                    ran.stdout.trim(),
                    ran.status,
                    ran.stderr.trim(),
                    expected.text
                );
            } else {
                assert!(
                    ran.status.is_some_and(|s| (200..300).contains(&s)),
                    "{} [{name}]: `{command}`: status {:?}, {}",
                    block.file,
                    ran.status,
                    ran.stdout
                );
            }
            // The README's ROOM: the room the first createRoom started.
            if !shell.env.contains_key("ROOM")
                && let Ok(body) = serde_json::from_str::<Value>(ran.stdout.trim())
                && let (Some(room), true) = (body["roomId"].as_str(), body["taskArn"].is_string())
            {
                shell.env.insert("ROOM".into(), room.to_string());
            }
        }
    }
    assert!(
        ran_commands >= 10 && received_frames >= 5,
        "{ran_commands} commands, {received_frames} frames"
    );
    drop(terminals);
    let _ = std::fs::remove_dir_all(&curl_home);
}

#[test]
fn the_output_patterns_match_only_their_shape() {
    let urls = Urls {
        http: "http://127.0.0.1:9".into(),
        ws: "ws://127.0.0.1:10".into(),
    };
    let expected = expectation(r#"404 {"message":"Room not found"}  (prose)"#, &urls).unwrap();
    assert_eq!(expected.status, Some(404));
    let room = expectation(
        r#"{"roomId":"…","signalingUrl":"ws://127.0.0.1:3001","iceServers":[…],"d":{…}}"#,
        &urls,
    )
    .unwrap()
    .body;
    let good: Value = serde_json::json!({"signalingUrl":"ws://127.0.0.1:10","roomId":"r1","iceServers":[1],"d":{"a":1}});
    assert!(matches(&room, &good));
    for bad in [
        serde_json::json!({"signalingUrl":"ws://127.0.0.1:3001","roomId":"r1","iceServers":[],"d":{}}),
        serde_json::json!({"signalingUrl":"ws://127.0.0.1:10","roomId":"r1","iceServers":[],"d":{},"extra":1}),
        serde_json::json!({"signalingUrl":"ws://127.0.0.1:10","roomId":1,"iceServers":[],"d":{}}),
        serde_json::json!({"signalingUrl":"ws://127.0.0.1:10","roomId":"r","iceServers":{},"d":{}}),
    ] {
        assert!(!matches(&room, &bad), "{bad}");
    }
    assert!(glob("arn:aws:ecs:…", "arn:aws:ecs:local:1:task/x"));
    assert!(!glob("arn:aws:ecs:…", "arn:aws:ec2:x"));
    assert!(glob("…:room-abc", "1796:room-abc"));
    assert!(!glob("…:room-abc", "1796:room-abd"));
    assert!(expectation("The room is claimable once …", &urls).is_none());
}

/// README, "SFU flow": the `--sfu-command` it prints shows the task's ROOM_ID and SFU_TOKEN and
/// stays up, so the identify it shows (with those) makes the room claimable, and the room
/// outlives the sweeps (a task that exits has stopped, and the sweeper ends its room).
#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_own_sfu_task_keeps_its_room() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let block = blocks("README.md")
        .into_iter()
        .find(|b| b.marker == "sfu-command")
        .expect("README marks its --sfu-command example");
    let line = &block.lines[0];
    let start = line.find("--sfu-command '").expect("an --sfu-command '…'") + 15;
    let end = line.rfind('\'').unwrap();
    let command = &line[start..end];
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let at = readme
        .find(r#"{"action":"identify","data":{"id":"<ROOM_ID>""#)
        .expect("README shows the SFU's identify");
    let identify = &readme[at..at + readme[at..].find('`').unwrap()];

    let out = std::env::temp_dir().join(format!(
        "switchboard-readme-sfu-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&out).unwrap();
    let mut options = common::options();
    // What the task prints goes to a file of the test's; the command is the README's.
    options.sfu_command = Some(format!("{{ {command}\n}} > {}/\"$ROOM_ID\"", out.display()));
    options.sweep_interval = Some(Duration::from_millis(500));
    let stack = common::start(options).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .put(format!("{}/createRoom", stack.http_url))
        .bearer_auth(common::OPERATOR_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = created["roomId"].as_str().expect("roomId").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let printed = loop {
        let printed = std::fs::read_to_string(out.join(&room)).unwrap_or_default();
        if printed.contains("SFU_TOKEN=") && printed.contains("ROOM_ID=") {
            break printed;
        }
        assert!(Instant::now() < deadline, "the task printed {printed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    assert_eq!(value("ROOM_ID"), room);
    let frame = identify
        .replace("<ROOM_ID>", &value("ROOM_ID"))
        .replace("<SFU_TOKEN>", &value("SFU_TOKEN"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&stack.ws_url)
        .await
        .unwrap();
    socket.send(Message::Text(frame.into())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an answer to the identify")
        .unwrap()
        .unwrap();
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["type"], "identified", "{reply}");

    // Several sweeps later, the room is still there to be claimed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claim = http
        .patch(format!("{}/claimRoom", stack.http_url))
        .body(r#"{"urlPath":"/sfuRoom"}"#)
        .send()
        .await
        .unwrap();
    let status = claim.status().as_u16();
    let body: Value = claim.json().await.unwrap();
    assert_eq!(
        (status, body["roomId"].as_str()),
        (200, Some(room.as_str())),
        "{body}"
    );
    drop(socket);
    drop(stack);
    let _ = std::fs::remove_dir_all(&out);
}
