//! The `switchboard-local` program as a user runs it: flags, generated secrets, the ready
//! line, the routes template.yaml declares (and only those), tasks run with their container
//! environment, and everything stopped on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_local::{HttpRoute, Template, WsRoute, workspace_root};
use tokio_tungstenite::tungstenite::Message;

fn template() -> Template {
    Template::load(&workspace_root().join("template.yaml")).expect("template.yaml parses")
}

#[test]
fn template_declares_the_routes_and_tables_of_the_spec() {
    let http: Vec<(String, String, String)> = template()
        .http_routes()
        .unwrap()
        .into_iter()
        .map(
            |HttpRoute {
                 method,
                 path,
                 function,
             }| (method, path, function),
        )
        .collect();
    let mut expected: Vec<(String, String, String)> = [
        ("GET", "/getRoomId", "get-room-id"),
        ("PATCH", "/claimRoom", "claim-room"),
        ("PUT", "/createRoom", "create-room"),
        ("POST", "/createRoom", "create-room"),
        ("POST", "/api/host/heartbeat", "heartbeat"),
        ("POST", "/api/host/status", "status"),
        ("POST", "/api/find-match", "find-match"),
        ("DELETE", "/rooms/{roomId}", "delete-room"),
        ("GET", "/available-location/{image}", "available-location"),
        ("POST", "/session", "create-session"),
        ("GET", "/session", "list-sessions"),
        ("GET", "/session/{id}", "get-session"),
        ("DELETE", "/session/{id}", "delete-session"),
        ("PUT", "/session/player/join", "join-players"),
        ("DELETE", "/session/player/leave", "leave-players"),
    ]
    .iter()
    .map(|(m, p, f)| (m.to_string(), p.to_string(), f.to_string()))
    .collect();
    expected.sort();
    assert_eq!(http, expected);

    let ws: Vec<(String, String)> = template()
        .ws_routes()
        .unwrap()
        .into_iter()
        .map(
            |WsRoute {
                 route_key,
                 function,
             }| (route_key, function),
        )
        .collect();
    let mut expected: Vec<(String, String)> = [
        ("$connect", "connect"),
        ("$disconnect", "disconnect"),
        ("$default", "default"),
        ("identify", "identify"),
        ("handshake", "handshake"),
        ("disconnect", "disconnect"),
    ]
    .iter()
    .map(|(k, f)| (k.to_string(), f.to_string()))
    .collect();
    expected.sort();
    assert_eq!(ws, expected);

    assert_eq!(
        template().schedules().unwrap(),
        [("sweeper".to_string(), "rate(1 minute)".to_string())],
        "the sweeper runs every minute"
    );

    let mut tables = template().table_ids();
    tables.sort();
    let mut configured: Vec<String> = switchboard::config::Tables::VARIABLES
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    configured.sort();
    assert_eq!(
        tables, configured,
        "one SWITCHBOARD_*_TABLE variable per table in template.yaml"
    );
}

#[test]
fn secrets_reach_only_the_functions_that_use_them() {
    let template = template();
    let secrets = [
        "SWITCHBOARD_OPERATOR_KEYS",
        "SWITCHBOARD_HOST_KEYS",
        "SWITCHBOARD_TURN_SECRET",
    ];
    let needs: &[(&str, &[&str])] = &[
        (
            "create-room",
            &["SWITCHBOARD_OPERATOR_KEYS", "SWITCHBOARD_TURN_SECRET"],
        ),
        (
            "heartbeat",
            &["SWITCHBOARD_HOST_KEYS", "SWITCHBOARD_TURN_SECRET"],
        ),
        ("status", &["SWITCHBOARD_HOST_KEYS"]),
        ("find-match", &["SWITCHBOARD_TURN_SECRET"]),
        // Room clients get TURN credentials; a claim refills the warm pool (RTC_CONFIG).
        ("get-room-id", &["SWITCHBOARD_TURN_SECRET"]),
        ("claim-room", &["SWITCHBOARD_TURN_SECRET"]),
        ("delete-room", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("sweeper", &["SWITCHBOARD_TURN_SECRET"]),
        ("available-location", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("create-session", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("list-sessions", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("get-session", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("delete-session", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("join-players", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("leave-players", &["SWITCHBOARD_OPERATOR_KEYS"]),
        ("connect", &[]),
        ("identify", &[]),
        ("handshake", &[]),
        ("disconnect", &[]),
        ("default", &[]),
    ];
    for (function, wanted) in needs {
        let env = template.environment_of(function).unwrap();
        let given: Vec<&str> = secrets
            .iter()
            .copied()
            .filter(|s| env.contains(*s))
            .collect();
        assert_eq!(&given, wanted, "{function}'s secrets");
        let turn = ["SWITCHBOARD_TURN_URLS", "SWITCHBOARD_TURN_SECRET"];
        assert!(
            turn.iter().all(|v| env.contains(*v)) || !turn.iter().any(|v| env.contains(*v)),
            "{function} gets TURN URLs and the secret together, or neither"
        );
    }
}

/// The template gives each function exactly the variables its declared needs read: nothing
/// it needs is missing (it would stop at init deployed), nothing it does not read is given
/// (no secret where it is not used), and the local stack, which configures each function
/// from its template environment, holds it to the same.
#[test]
fn each_function_gets_exactly_the_environment_its_needs_read() {
    let template = template();
    for (_, function) in template.functions().unwrap() {
        let needs = switchboard_local::needs_of(&function)
            .unwrap_or_else(|| panic!("{function} declares its NEEDS"));
        let mut given = template.environment_of(&function).unwrap();
        assert!(given.remove("RUST_LOG"), "{function} gets RUST_LOG");
        let wanted: std::collections::BTreeSet<String> = switchboard::config::variables_of(needs)
            .into_iter()
            .map(String::from)
            .collect();
        let missing: Vec<_> = wanted.difference(&given).collect();
        let unused: Vec<_> = given.difference(&wanted).collect();
        assert!(
            missing.is_empty() && unused.is_empty(),
            "{function}: missing {missing:?}, given but not read {unused:?}"
        );
    }
}

fn local_iam(
    template: &Template,
) -> Result<switchboard_local::Iam, switchboard_local::template::TemplateError> {
    switchboard_local::Iam::from_template(
        template,
        switchboard_local::iam::LocalNames {
            table_prefix: String::new(),
            cluster: "cluster".into(),
            task_definition: "sfu".into(),
            ws_api_id: "api".into(),
            ws_stage: "stage".into(),
        },
        true,
    )
}

/// Each function's policy grants exactly the DynamoDB actions its code calls (through the
/// Store methods it reaches, including a 410's cleanup after a gone socket), on exactly its
/// tables and indexes; a change here is deliberate.
#[test]
fn each_functions_policy_grants_exactly_what_it_calls() {
    let iam = local_iam(&template()).expect("the template's policies are checkable locally");
    let table = |t: &str| format!("arn:aws:dynamodb:us-east-1:000000000000:table/{t}");
    let post = "execute-api:ManageConnections arn:aws:execute-api:us-east-1:000000000000:api/stage/POST/@connections/*".to_string();
    let grants = |rows: &[(&str, &[&str])]| -> Vec<String> {
        let mut lines: Vec<String> = rows
            .iter()
            .flat_map(|(resource, actions)| {
                let arn = match resource.split_once('/') {
                    Some((t, index)) => format!("{}/index/{index}", table(t)),
                    None => table(resource),
                };
                actions.iter().map(move |a| format!("dynamodb:{a} {arn}"))
            })
            .collect();
        lines.sort();
        lines
    };
    // What signaling::send needs when a post is answered 410: the target's connection and
    // membership go (with its room's member count), and a serving peer's room starts its
    // reconnect grace.
    let cleanup: &[(&str, &[&str])] = &[
        ("ConnectionsTable", &["GetItem", "DeleteItem"]),
        ("MembersTable", &["DeleteItem"]),
        ("RoomsTable", &["GetItem", "UpdateItem"]),
    ];
    let with = |parts: &[&[(&str, &[&str])]], extra: &[String]| -> Vec<String> {
        let mut lines: Vec<String> = parts.iter().flat_map(|p| grants(p)).collect();
        lines.extend(extra.iter().cloned());
        lines.sort();
        lines.dedup();
        lines
    };
    let with_cleanup = |own: &[(&str, &[&str])]| with(&[own, cleanup], std::slice::from_ref(&post));
    let sfu_cluster =
        r#"if ecs:cluster ArnEquals ["arn:aws:ecs:us-east-1:000000000000:cluster/cluster"]"#;
    let session_cluster =
        r#"if ecs:cluster ArnLike ["arn:aws:ecs:*:000000000000:cluster/switchboard-*"]"#;
    let passed = r#"if iam:PassedToService StringEquals ["ecs-tasks.amazonaws.com"]"#;
    let sfu_tasks = |actions: &[&str]| -> Vec<String> {
        actions
            .iter()
            .map(|a| format!("ecs:{a} * {sfu_cluster}"))
            .collect()
    };
    let session_tasks = |actions: &[&str]| -> Vec<String> {
        actions
            .iter()
            .map(|a| format!("ecs:{a} * {session_cluster}"))
            .collect()
    };
    let sfu_run = || -> Vec<String> {
        let mut lines = vec![format!(
            "ecs:RunTask arn:aws:ecs:us-east-1:000000000000:task-definition/sfu:1 {sfu_cluster}"
        )];
        for role in ["SfuExecutionRole", "SfuTaskRole"] {
            lines.push(format!(
                "iam:PassRole arn:aws:iam::000000000000:role/{role} {passed}"
            ));
        }
        lines
    };
    let session_run = || -> Vec<String> {
        vec![
            format!(
                "ecs:RunTask arn:aws:ecs:*:000000000000:task-definition/switchboard-* {session_cluster}"
            ),
            format!("iam:PassRole arn:aws:iam::000000000000:role/switchboard-* {passed}"),
        ]
    };
    let cat = |groups: &[Vec<String>]| -> Vec<String> { groups.concat() };
    // A session task's public address, from its network interface.
    let addresses = "ec2:DescribeNetworkInterfaces *".to_string();
    // Ending a server: its record, its room's members told, a gone member's records removed.
    let ending: &[(&str, &[&str])] = &[
        ("RoomsTable", &["GetItem", "UpdateItem", "DeleteItem"]),
        ("MembersTable", &["Query", "DeleteItem"]),
        ("ConnectionsTable", &["GetItem", "DeleteItem"]),
    ];
    let expected: Vec<(&str, Vec<String>)> = vec![
        (
            "GetRoomIdFunction",
            grants(&[("PathsTable", &["GetItem"]), ("RoomsTable", &["GetItem"])]),
        ),
        (
            "ClaimRoomFunction",
            with(
                &[&[
                    ("PathsTable", &["GetItem", "PutItem"]),
                    (
                        "RoomsTable",
                        &["GetItem", "PutItem", "UpdateItem", "DeleteItem"],
                    ),
                    ("RoomsTable/ReadyRooms", &["Query"]),
                ]],
                &cat(&[sfu_run(), sfu_tasks(&["StopTask"])]),
            ),
        ),
        (
            "CreateRoomFunction",
            with(
                &[&[("RoomsTable", &["PutItem", "UpdateItem", "DeleteItem"])]],
                &cat(&[sfu_run(), sfu_tasks(&["StopTask"])]),
            ),
        ),
        (
            "DeleteRoomFunction",
            with(
                &[ending, &[("PathsTable", &["DeleteItem"])]],
                &cat(&[vec![post.clone()], sfu_tasks(&["StopTask", "ListTasks"])]),
            ),
        ),
        (
            "SweeperFunction",
            with(
                &[
                    ending,
                    &[
                        ("RoomsTable", &["PutItem"]),
                        ("RoomsTable/Servers", &["Query"]),
                        ("PathsTable", &["DeleteItem"]),
                        ("HostsTable", &["DeleteItem"]),
                        ("SessionsTable", &["DeleteItem"]),
                        ("PlayersTable", &["DeleteItem"]),
                    ],
                ],
                &cat(&[
                    vec![post.clone()],
                    sfu_run(),
                    sfu_tasks(&["StopTask", "ListTasks", "DescribeTasks"]),
                    session_run(),
                    session_tasks(&["StopTask", "ListTasks", "DescribeTasks"]),
                ]),
            ),
        ),
        (
            "HeartbeatFunction",
            grants(&[
                ("RoomsTable", &["PutItem", "UpdateItem"]),
                ("HostsTable", &["UpdateItem"]),
            ]),
        ),
        ("StatusFunction", grants(&[("HostsTable", &["UpdateItem"])])),
        (
            "FindMatchFunction",
            grants(&[
                ("HostsTable/IdleHosts", &["Query"]),
                ("HostsTable", &["UpdateItem"]),
            ]),
        ),
        (
            "ConnectFunction",
            grants(&[("ConnectionsTable", &["PutItem"])]),
        ),
        (
            "IdentifyFunction",
            with_cleanup(&[
                ("ConnectionsTable", &["GetItem", "UpdateItem"]),
                ("MembersTable", &["GetItem", "PutItem", "Query"]),
                ("RoomsTable", &["GetItem", "UpdateItem"]),
                ("PathsTable", &["UpdateItem"]),
            ]),
        ),
        (
            "HandshakeFunction",
            with_cleanup(&[
                ("ConnectionsTable", &["GetItem"]),
                ("MembersTable", &["GetItem"]),
                ("RoomsTable", &["GetItem"]),
            ]),
        ),
        (
            "DisconnectFunction",
            with_cleanup(&[("MembersTable", &["Query"])]),
        ),
        // A ping keeps the connection's records alive, and a serving peer's room and path.
        (
            "DefaultFunction",
            with_cleanup(&[
                ("ConnectionsTable", &["UpdateItem"]),
                ("MembersTable", &["UpdateItem"]),
                ("RoomsTable", &["UpdateItem"]),
                ("PathsTable", &["UpdateItem"]),
            ]),
        ),
        ("AvailableLocationFunction", Vec::new()),
        (
            "CreateSessionFunction",
            with(
                &[
                    ending,
                    &[
                        (
                            "SessionsTable",
                            &["GetItem", "PutItem", "UpdateItem", "DeleteItem"],
                        ),
                        ("RoomsTable", &["PutItem"]),
                        ("RoomsTable/ReadyRooms", &["Query"]),
                        ("PlayersTable", &["DeleteItem"]),
                    ],
                ],
                &cat(&[
                    vec![post.clone()],
                    session_run(),
                    session_tasks(&["DescribeTasks", "StopTask", "ListTasks"]),
                    vec![addresses.clone()],
                ]),
            ),
        ),
        (
            "ListSessionsFunction",
            grants(&[("SessionsTable/LiveSessions", &["Query"])]),
        ),
        (
            "GetSessionFunction",
            with(
                &[&[
                    ("SessionsTable", &["GetItem", "UpdateItem"]),
                    ("RoomsTable", &["GetItem", "UpdateItem"]),
                ]],
                &cat(&[session_tasks(&["DescribeTasks"]), vec![addresses.clone()]]),
            ),
        ),
        (
            "DeleteSessionFunction",
            with(
                &[
                    ending,
                    &[
                        ("SessionsTable", &["GetItem", "DeleteItem"]),
                        ("PlayersTable", &["DeleteItem"]),
                    ],
                ],
                &cat(&[
                    vec![post.clone()],
                    session_tasks(&["StopTask", "ListTasks"]),
                ]),
            ),
        ),
        (
            "JoinPlayersFunction",
            grants(&[
                ("SessionsTable", &["GetItem", "UpdateItem"]),
                ("PlayersTable", &["PutItem"]),
            ]),
        ),
        (
            "LeavePlayersFunction",
            grants(&[
                ("PlayersTable", &["DeleteItem"]),
                ("SessionsTable", &["UpdateItem"]),
            ]),
        ),
    ];
    let mut functions: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
    functions.sort();
    assert_eq!(
        iam.functions(),
        functions,
        "every function's policy is pinned"
    );
    for (function, lines) in expected {
        assert_eq!(iam.granted(function), lines, "{function}'s grants");
    }
}

#[test]
fn the_template_uses_no_sam_policy_templates_and_the_partition_in_every_arn() {
    let raw = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    assert!(!raw.contains("arn:aws:"), "ARNs use ${{AWS::Partition}}");
    for sam_policy in [
        "DynamoDBCrudPolicy",
        "DynamoDBReadPolicy",
        "DynamoDBWritePolicy",
    ] {
        assert!(!raw.contains(sam_policy), "no {sam_policy}");
    }
    // A template that grants through a SAM policy template is refused, with a reason.
    let widened = raw.replacen(
        "      Policies:\n",
        "      Policies:\n        - DynamoDBCrudPolicy:\n            TableName: !Ref RoomsTable\n",
        1,
    );
    let error = local_iam(&Template::parse(&widened).unwrap())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("DynamoDBCrudPolicy is a SAM policy template"),
        "{error}"
    );
}

/// Every binary the template deploys, and the benchmark's hello world it is measured
/// against, is linked by the one Lambda build script (`build/lambda-link.rs`: no PIE,
/// so the loader relocates nothing at a cold start). A function added without it would start
/// slower than the rest and be measured against a different baseline.
#[test]
fn every_deployed_binary_and_the_hello_world_use_the_lambda_build_script() {
    let root = workspace_root();
    let raw = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let binaries: Vec<&str> = raw
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary: "))
        .collect();
    assert!(binaries.len() >= 20, "{binaries:?}");
    let script = root.join("build/lambda-link.rs");
    assert!(script.is_file());
    for package in binaries
        .iter()
        .map(|b| format!("functions/{b}"))
        .chain(["bench/hello".into()])
    {
        let dir = root.join(&package);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{package}/Cargo.toml: {e}"));
        let build = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("build = "))
            .unwrap_or_else(|| panic!("{package} has no build script"))
            .trim_matches('"');
        assert_eq!(
            dir.join(build).canonicalize().unwrap(),
            script.canonicalize().unwrap(),
            "{package}"
        );
    }
}

/// DynamoDB Local's bundled log4j-core (2.8) has the JNDI lookup of Log4Shell; the install
/// removes that class, also from a cache installed before it did.
#[test]
fn dynamodb_local_is_installed_without_the_jndi_lookup() {
    use switchboard_local::dynamodb;
    let jar_dir = dynamodb::ensure_installed(&dynamodb::cache_dir()).expect("installed");
    let jars: Vec<std::path::PathBuf> = std::fs::read_dir(jar_dir.join("DynamoDBLocal_lib"))
        .expect("DynamoDBLocal_lib")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log4j-core-") && n.ends_with(".jar"))
        })
        .collect();
    assert!(!jars.is_empty(), "DynamoDB Local bundles log4j-core");
    // Entry names are stored uncompressed in a zip's headers.
    let entry = b"org/apache/logging/log4j/core/lookup/JndiLookup.class";
    for jar in jars {
        let bytes = std::fs::read(&jar).unwrap();
        assert!(
            !bytes.windows(entry.len()).any(|w| w == entry),
            "{} still has JndiLookup.class",
            jar.display()
        );
        assert!(
            bytes
                .windows(b"org/apache/logging/log4j/core/Logger.class".len())
                .any(|w| w == b"org/apache/logging/log4j/core/Logger.class"),
            "the rest of {} is intact",
            jar.display()
        );
    }
}

struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Its stderr, when piped: drained as it comes (a full pipe would stall it).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    fn new(mut child: std::process::Child) -> Self {
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = sink.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// The lines printed before the ready line.
    fn until_ready(&mut self) -> Vec<String> {
        let mut printed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.starts_with("ready ") => return printed,
                Ok(line) => printed.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let stderr = self.stderr.lock().unwrap().clone();
                    panic!("no ready line within 120 s; printed: {printed:?}; stderr: {stderr}");
                }
            }
        }
    }

    /// SIGTERM, and the wait for everything it started to stop.
    fn stop(&mut self) {
        // SAFETY: signalling the child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    switchboard_local::dynamodb::free_port().expect("free port")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).unwrap_or_default().starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_program_serves_what_template_yaml_declares_and_stops_everything() {
    let tasks = std::env::temp_dir().join(format!(
        "switchboard-tasks-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&tasks).unwrap();
    let (http_port, ws_port, ecs_port) = (free_port(), free_port(), free_port());
    let task_command = format!(
        "printf '%s\\n' \"$ROOM_ID\" \"$SFU_TOKEN\" \"$SIGNAL_SERVER_URL\" > {dir}/$ROOM_ID.env; echo $$ > {dir}/$ROOM_ID.pid; trap '' TERM; exec sleep 300",
        dir = tasks.display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-local"))
        .args([
            "--http-port",
            &http_port.to_string(),
            "--ws-port",
            &ws_port.to_string(),
        ])
        .args([
            "--ecs-port",
            &ecs_port.to_string(),
            "--task-command",
            &task_command,
            "--task-stop-timeout-seconds",
            "1",
        ])
        .env("SWITCHBOARD_OPERATOR_KEYS", "given-operator-key")
        .env_remove("SWITCHBOARD_HOST_KEYS")
        .env_remove("SWITCHBOARD_TURN_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("switchboard-local starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut running = Running {
        child,
        lines,
        stderr: Default::default(),
    };

    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let line = running
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no ready line within 120 s; printed: {printed:?}"));
        if line.starts_with("ready ") {
            break line;
        }
        printed.push(line);
    };
    let field = |name: &str| -> String {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("ready line has {name}=: {ready}"))
            .to_string()
    };
    let (http, ws, ecs, dynamodb) = (field("http"), field("ws"), field("ecs"), field("dynamodb"));
    assert_eq!(http, format!("http://127.0.0.1:{http_port}"));
    assert_eq!(ws, format!("ws://127.0.0.1:{ws_port}"));
    assert_eq!(ecs, format!("http://127.0.0.1:{ecs_port}"));
    assert!(
        printed.iter().any(|l| l.contains("SWITCHBOARD_HOST_KEYS=")),
        "a host key it was not given is generated and printed"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.contains("SWITCHBOARD_TURN_SECRET="))
    );
    assert!(
        !printed
            .iter()
            .any(|l| l.contains("SWITCHBOARD_OPERATOR_KEYS=")),
        "a given key is not replaced"
    );
    let host_key = printed
        .iter()
        .find_map(|l| l.split("SWITCHBOARD_HOST_KEYS=").nth(1))
        .unwrap()
        .to_string();

    // The demo links it prints open pages it serves.
    let client = reqwest::Client::new();
    let host_link =
        format!("demo host (open in one tab): {http}/demo/host.html#hostKey={host_key}");
    assert!(printed.contains(&host_link), "{host_link} in {printed:?}");
    for page in ["/demo/host.html", "/demo/viewer.html", "/demo/"] {
        let reply = client.get(format!("{http}{page}")).send().await.unwrap();
        assert_eq!(reply.status().as_u16(), 200, "{page}");
        assert!(
            reply.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    // Every HTTP route of the template is served by its function; nothing else is.
    for route in template().http_routes().unwrap() {
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let reply = client
            .request(method, format!("{http}{}", route.path))
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap();
        assert!(
            body["message"] != "Not Found",
            "{} {} is served: {status} {body}",
            route.method,
            route.path
        );
    }
    let reply = client
        .get(format!("{http}/api/unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 404);

    // Every WebSocket route reaches its function; ping reaches $default.
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws)
        .await
        .expect("ws connects");
    for action in ["identify", "handshake", "disconnect"] {
        socket
            .send(Message::Text(
                json!({ "action": action, "data": {} }).to_string().into(),
            ))
            .await
            .unwrap();
        if action == "disconnect" {
            continue; // an unidentified leave is quietly accepted
        }
        let frame = next_json(&mut socket).await;
        assert_eq!(
            frame["action"], action,
            "{action} is routed to its own function: {frame}"
        );
    }
    socket
        .send(Message::Text(
            json!({ "action": "ping" }).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await, json!({ "type": "pong" }));

    // Host key generated and printed works; createRoom runs the task command with its environment.
    let heartbeat = json!({ "hostId": "h", "roomId": "r", "region": "local" });
    let reply = client
        .post(format!("{http}/api/host/heartbeat"))
        .bearer_auth(&host_key)
        .json(&heartbeat)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let reply = client
        .put(format!("{http}/createRoom"))
        .bearer_auth("given-operator-key")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let room = reply.json::<Value>().await.unwrap()["roomId"]
        .as_str()
        .unwrap()
        .to_string();
    let pid_file = tasks.join(format!("{room}.pid"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.is_file()
        || std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the task command ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let env = std::fs::read_to_string(tasks.join(format!("{room}.env"))).unwrap();
    let env: Vec<&str> = env.lines().collect();
    assert_eq!(env[0], room);
    assert!(env[1].len() >= 32, "the task got its SFU token");
    assert_eq!(env[2], ws);
    let task_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(task_pid));

    // SIGTERM: the program, its DynamoDB Local and its tasks all stop; the task ignores
    // SIGTERM, so it gets SIGKILL after the stop timeout (1 s).
    let stopping = Instant::now();
    // SAFETY: signalling the child this test started.
    unsafe {
        libc::kill(running.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "switchboard-local stops on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean exit: {status:?}");
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(8)).contains(&stopping.elapsed()),
        "the task's stop timeout was --task-stop-timeout-seconds: {:?}",
        stopping.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(task_pid)
        || std::net::TcpStream::connect(dynamodb.trim_start_matches("http://")).is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the task and DynamoDB Local stopped with it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err(),
        "the HTTP port is closed"
    );
    let _ = std::fs::remove_dir_all(&tasks);
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no frame: {other:?}"),
        }
    }
}

/// The README's sessions example, as printed (with free ports instead of the defaults):
/// `--applications` alone keeps the default location `local`, the warm servers start there,
/// and a session is allocated.
#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_sessions_example_starts_and_serves_sessions() {
    let (http_port, ws_port, ecs_port) = (free_port(), free_port(), free_port());
    let example_server = env!("CARGO_BIN_EXE_switchboard-example-server");
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard-local"))
        .args([
            "--task-command",
            &format!("exec {example_server} \"$@\""),
            "--applications",
            r#"{"arena":{"taskDefinition":"switchboard-arena","container":"game",
                   "ports":[{"type":"udp","container":7777}],"warm":{"local":2}}}"#,
        ])
        .args(["--http-port", &http_port.to_string()])
        .args(["--ws-port", &ws_port.to_string()])
        .args(["--ecs-port", &ecs_port.to_string()])
        .args(["--task-stop-timeout-seconds", "1"])
        .env_remove("SWITCHBOARD_OPERATOR_KEYS")
        .env_remove("SWITCHBOARD_HOST_KEYS")
        .env_remove("SWITCHBOARD_APPLICATIONS")
        .env_remove("SWITCHBOARD_LOCATIONS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchboard-local starts");
    let mut running = Running::new(child);
    let printed = running.until_ready();
    let operator_key = printed
        .iter()
        .find_map(|l| l.split("SWITCHBOARD_OPERATOR_KEYS=").nth(1))
        .expect("a generated operator key")
        .to_string();
    // The lines naming the generated keys are the README's, and say what each key is for: the
    // operator key authorizes createRoom, DELETE /rooms and the sessions API (used below).
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for name in ["SWITCHBOARD_OPERATOR_KEYS=", "SWITCHBOARD_HOST_KEYS="] {
        let line = printed.iter().find(|l| l.contains(name)).unwrap();
        let said = &line[..line.find(name).unwrap() + name.len()];
        assert!(
            readme.lines().any(|l| l.starts_with(said)),
            "the README shows the line `{said}…`"
        );
    }
    assert!(
        printed.iter().any(|l| l.starts_with(
            "generated operator key (createRoom, DELETE /rooms, sessions API): SWITCHBOARD_OPERATOR_KEYS="
        )),
        "{printed:?}"
    );
    let api = format!("http://127.0.0.1:{http_port}");
    let client = reqwest::Client::new();
    let reply = client
        .get(format!("{api}/available-location/arena"))
        .bearer_auth(&operator_key)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(
        reply.json::<Value>().await.unwrap(),
        json!({"locations":[{"location":"local","ips":["127.0.0.1"]}]})
    );
    // The sweeper's first run starts the two warm servers; once one is ready, a session is
    // allocated to it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let session = loop {
        let reply = client
            .post(format!("{api}/session"))
            .bearer_auth(&operator_key)
            .json(&json!({"image":"arena","location":"local","env":{"MAP":"dust"},"args":["--mode","duel"],"ttl":3600}))
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap();
        if status == 201 && body["host"].is_string() {
            break body;
        }
        assert!(Instant::now() < deadline, "no session: {status} {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        session["ports"],
        json!([{"type":"udp","container":7777,"host":7777}])
    );
    running.stop();
}
