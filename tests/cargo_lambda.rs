//! cargo-lambda's emulator: `cargo lambda watch` serves the function binaries with the env
//! file in `tests/events/`, and `cargo lambda invoke` answers the API Gateway events of
//! `tests/events/` as deployed, against the DynamoDB Local and `@connections` of a running
//! local stack. The commands are the README's ("cargo-lambda's emulator"), run as printed but
//! for the ports and endpoints: this test's stack, DynamoDB Local and emulator listen on free
//! ones.
//!
//! The env files are held to template.yaml: the cargo-lambda env file has every variable the
//! template gives any function, the `sam local invoke --env-vars` file each function's own,
//! both with the values the local stack gives them on its default ports.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_local::{StackOptions, Template, dynamodb, workspace_root};
use switchboard_tests::TestStack;

const ENV_FILE: &str = "tests/events/cargo-lambda.env";
const SAM_ENV_VARS: &str = "tests/events/sam-env-vars.json";
/// The settings the env file fixes for the stack: the keys and TURN secret the local stack
/// would otherwise generate (the README starts it with these), and the TURN and STUN URLs
/// scripts/run-local.sh gives it for its coturn.
const FIXED: [&str; 5] = [
    "SWITCHBOARD_HOST_KEYS",
    "SWITCHBOARD_OPERATOR_KEYS",
    "SWITCHBOARD_TURN_SECRET",
    "SWITCHBOARD_TURN_URLS",
    "SWITCHBOARD_STUN_URLS",
];

fn template() -> Template {
    Template::load(&workspace_root().join("template.yaml")).expect("template.yaml parses")
}

/// `KEY=VALUE` lines and `#` comment lines; a value is bare or in single quotes, as
/// cargo-lambda's env-file reader takes them (a bare value has no whitespace, quote, `#` or
/// `=`: cargo-lambda refuses a file with `KEY=a=b`; a quoted one has no `'`, and `\n` in it
/// would become a newline).
fn read_env_file() -> BTreeMap<String, String> {
    let path = workspace_root().join(ENV_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{ENV_FILE}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{ENV_FILE}: {line:?} is not KEY=VALUE"));
            let value = match value.strip_prefix('\'') {
                Some(quoted) => quoted
                    .strip_suffix('\'')
                    .filter(|v| !v.contains('\''))
                    .unwrap_or_else(|| panic!("{ENV_FILE}: {line:?}: unbalanced quotes")),
                None => {
                    assert!(
                        !value.contains(BARE_EXCLUDED),
                        "{ENV_FILE}: {line:?}: this value needs single quotes"
                    );
                    value
                }
            };
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// What a bare value of cargo-lambda's env-file reader cannot hold.
const BARE_EXCLUDED: [char; 7] = ['=', '#', '\'', '"', '`', ' ', '\t'];

/// One env file line for `value`, as `read_env_file` reads it back.
fn env_line(name: &str, value: &str) -> String {
    assert!(
        !value.contains('\'') && !value.contains("\\n") && !value.contains('\n'),
        "{name}={value:?} cannot be written in an env file cargo-lambda reads"
    );
    if value.is_empty() || value.contains(BARE_EXCLUDED) {
        format!("{name}='{value}'\n")
    } else {
        format!("{name}={value}\n")
    }
}

/// Each function's environment (by binary) as the local stack gives it on `ports`, with the
/// settings the env file fixes.
fn local_environments(
    env_file: &BTreeMap<String, String>,
    ports: (u16, u16, u16),
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut options = StackOptions::new("");
    (options.http_port, options.ws_port, options.ecs_port) = ports;
    for name in FIXED {
        let value = env_file
            .get(name)
            .unwrap_or_else(|| panic!("{ENV_FILE} sets {name}"));
        options.vars.insert(name.into(), value.clone());
    }
    switchboard_local::check_configuration(&options)
        .expect("the local stack's configuration")
        .environments
}

/// What Lambda itself sets from the template's `Globals` `LoggingConfig`:
/// `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL`.
fn lambda_logging() -> Vec<(&'static str, String)> {
    let raw = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&raw).unwrap();
    let logging = &doc["Globals"]["Function"]["LoggingConfig"];
    let text = |key: &str| {
        logging[key]
            .as_str()
            .unwrap_or_else(|| panic!("Globals.Function.LoggingConfig.{key}"))
            .to_string()
    };
    vec![
        ("AWS_LAMBDA_LOG_FORMAT", text("LogFormat")),
        ("AWS_LAMBDA_LOG_LEVEL", text("ApplicationLogLevel")),
    ]
}

#[test]
fn the_env_files_give_each_function_its_template_environment() {
    let env_file = read_env_file();
    let environments = local_environments(&env_file, (3000, 3001, 3002));

    // cargo lambda watch gives every function the one env file: the union of the template's
    // variables (no two functions disagree on a value), and what Lambda and the SDK read.
    let mut union = BTreeMap::new();
    for (function, environment) in &environments {
        for (name, value) in environment {
            if let Some(other) = union.insert(name.clone(), value.clone()) {
                assert_eq!(
                    &other, value,
                    "{function}: {name} differs between functions"
                );
            }
        }
    }
    for (name, value) in [
        ("AWS_REGION", switchboard_local::iam::REGION),
        // DynamoDB Local keeps one database per access key and region: the stack's tables
        // are under its admin key.
        ("AWS_ACCESS_KEY_ID", switchboard_local::ADMIN_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        // The local stack's ECS endpoint also answers the EC2 call of the sessions functions.
        ("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:3002"),
        ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:3002"),
    ] {
        union.insert(name.into(), value.into());
    }
    for (name, value) in lambda_logging() {
        union.insert(name.into(), value);
    }
    let expected: String = union.iter().map(|(k, v)| env_line(k, v)).collect();
    assert_eq!(
        env_file, union,
        "{ENV_FILE} holds the template's variables with the local stack's values:\n{expected}"
    );

    // sam local invoke --env-vars: function logical id → its own variables.
    let by_logical_id: BTreeMap<String, BTreeMap<String, String>> = template()
        .functions()
        .unwrap()
        .into_iter()
        .map(|(id, binary)| (id, environments[&binary].clone()))
        .collect();
    let expected = serde_json::to_value(&by_logical_id).unwrap();
    let path = workspace_root().join(SAM_ENV_VARS);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{SAM_ENV_VARS}: {e}"));
    let given: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        given,
        expected,
        "{SAM_ENV_VARS} gives each function its template variables:\n{}",
        serde_json::to_string_pretty(&expected).unwrap()
    );
}

/// The README's commands in its "cargo-lambda's emulator" block, backslash continuations
/// joined, comments and a trailing `&` dropped, each split into words.
fn readme_lines() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("### cargo-lambda's emulator")
        .nth(1)
        .expect("the README has a \"cargo-lambda's emulator\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    block
        .replace("\\\n", " ")
        .lines()
        .map(|line| line.split(" #").next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
            // A command the shell runs in the background.
            if words.last().is_some_and(|w| w == "&") {
                words.pop();
            }
            words
        })
        .collect()
}

/// The README's `cargo lambda` commands.
fn readme_commands() -> Vec<Vec<String>> {
    readme_lines()
        .into_iter()
        .filter(|words| words.starts_with(&["cargo".into(), "lambda".into()]))
        .collect()
}

/// The word after `flag` in a command.
fn after<'a>(words: &'a [String], flag: &str) -> &'a str {
    let at = words
        .iter()
        .position(|w| w == flag)
        .unwrap_or_else(|| panic!("{} has {flag}", words.join(" ")));
    words
        .get(at + 1)
        .unwrap_or_else(|| panic!("{} has a value after {flag}", words.join(" ")))
}

/// The function API Gateway would invoke with an event of `tests/events/`: by its HTTP API
/// `routeKey` (`METHOD /path`), else its WebSocket `requestContext.routeKey`, as template.yaml
/// routes them.
fn routed_function(template: &Template, path: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("the README's {path}: {e}"));
    let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let routed = if event["version"] == "2.0" {
        let key = event["routeKey"].as_str().unwrap_or_default();
        template
            .http_routes()
            .unwrap()
            .into_iter()
            .find(|r| format!("{} {}", r.method, r.path) == key)
            .map(|r| r.function)
    } else {
        let key = event["requestContext"]["routeKey"]
            .as_str()
            .unwrap_or_default();
        template
            .ws_routes()
            .unwrap()
            .into_iter()
            .find(|r| r.route_key == key)
            .map(|r| r.function)
    };
    routed.unwrap_or_else(|| panic!("{path}: template.yaml routes its event to no function"))
}

/// The README's commands name real functions and files: `cargo lambda invoke` a template
/// function's binary with an event of `tests/events/` that API Gateway would send that
/// function, `sam local invoke` a template logical id the same way (this test does not run it:
/// it needs Docker and the SAM build).
#[test]
fn the_readme_commands_name_real_functions_and_files() {
    let template = template();
    let functions = template.functions().unwrap();
    let exists = |path: &str| {
        assert!(
            workspace_root().join(path).is_file(),
            "the README's {path} exists"
        )
    };
    let lines = readme_lines();
    let mut invoked = 0;
    let mut sam = 0;
    for words in &lines {
        let line = words.join(" ");
        match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["cargo", "lambda", "watch", ..] => exists(after(words, "--env-file")),
            ["cargo", "lambda", "invoke", function, ..] => {
                assert!(
                    functions.iter().any(|(_, binary)| binary == function),
                    "{line}: {function} is a function of template.yaml"
                );
                let event = after(words, "--data-file");
                assert_eq!(routed_function(&template, event), function, "{line}");
                invoked += 1;
            }
            ["sam", "local", "invoke", logical_id, ..] => {
                let (_, binary) = functions
                    .iter()
                    .find(|(id, _)| id == logical_id)
                    .unwrap_or_else(|| {
                        panic!("{line}: {logical_id} is a function's logical id in template.yaml")
                    });
                let event = after(words, "--event");
                assert_eq!(&routed_function(&template, event), binary, "{line}");
                assert_eq!(after(words, "--env-vars"), SAM_ENV_VARS, "{line}");
                sam += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        (invoked, sam),
        (3, 1),
        "three invokes and a sam line: {lines:?}"
    );
}

/// cargo-lambda from PyPI, installed once into the cache's venv (scripts/sam-build.sh uses
/// the same); returns a PATH with its bin directory first.
fn cargo_lambda_path() -> String {
    let started = Instant::now();
    let output = Command::new(workspace_root().join("scripts/ensure-cargo-lambda.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/ensure-cargo-lambda.sh runs");
    assert!(output.status.success(), "cargo-lambda installs");
    let bin = String::from_utf8(output.stdout).unwrap().trim().to_string();
    eprintln!(
        "cargo-lambda in {bin} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

fn target_dir() -> PathBuf {
    // <target>/debug/deps/<this test>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).expect("a target directory").into()
}

/// The function binaries, built as `cargo lambda watch` builds them (`cargo run --bin NAME`
/// from the workspace root: the dev profile, the workspace's features) in this test's target
/// directory, so the emulator's first invocation finds them fresh instead of compiling.
fn build(binaries: &[&str]) {
    let started = Instant::now();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--target-dir"])
        .arg(target_dir());
    for binary in binaries {
        cargo.args(["--bin", binary]);
    }
    assert!(cargo.status().unwrap().success(), "the functions build");
    eprintln!(
        "built {binaries:?} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// A command's process group, killed when dropped.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        unsafe { libc::kill(-pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn with_port(words: &[String], port: u16) -> Vec<String> {
    let mut words = words.to_vec();
    let at = words
        .iter()
        .position(|w| w == "-P")
        .expect("the command names its port with -P");
    words[at + 1] = port.to_string();
    words
}

/// Runs `cargo lambda invoke` (the README's words, on `port`, with `extra` words) and returns
/// the function's answer; fails after 120 s without one (a function that stops at init leaves
/// the invocation waiting).
fn invoke(
    path: &str,
    words: &[String],
    extra: &[&str],
    port: u16,
    log: &dyn Fn() -> String,
) -> Value {
    let mut words = with_port(words, port);
    let line = match extra {
        [] => words.join(" "),
        [flag, ..] => format!("{} {flag} …", words.join(" ")),
    };
    words.extend(extra.iter().map(|w| w.to_string()));
    let started = Instant::now();
    let child = Command::new("cargo")
        .args(&words[1..])
        .env("PATH", path)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("cargo lambda invoke runs");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => output.expect("cargo lambda invoke runs"),
        Err(_) => {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!(
                "{line}: no answer within 120 s\ncargo lambda watch:\n{}",
                log()
            );
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{line}: {}\n{stdout}{}\ncargo lambda watch:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        log()
    );
    eprintln!(
        "{line} ({:.1} s)\n  {}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout}: {e}\n{}", log()))
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a JSON body")
}

fn listening(port: u16) -> bool {
    // watch listens on `::` (IPv4 too, where the system maps it); invoke goes to ::1.
    ["[::1]", "127.0.0.1"]
        .iter()
        .any(|host| std::net::TcpStream::connect(format!("{host}:{port}")).is_ok())
}

// The test blocks a worker while it waits for the emulator; the stack serves on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cargo_lambda_watch_serves_the_functions_against_the_local_stack() {
    let started = Instant::now();
    let path = cargo_lambda_path();
    let env_file = read_env_file();
    let commands = readme_commands();
    let [watch, heartbeat, connect, handshake] = commands.as_slice() else {
        panic!("the README shows watch and three invokes: {commands:?}");
    };
    // And one the README does not show, whose answer comes from the env file's JSON values.
    let available = "available-location";
    let mut binaries: Vec<&str> = [heartbeat, connect, handshake]
        .iter()
        .map(|words| words[3].as_str())
        .collect();
    binaries.push(available);
    build(&binaries);

    // The local stack as the env file expects it (tables without a prefix, its keys, TURN
    // secret and URLs), on this test binary's own DynamoDB Local and free ports.
    let dynamodb = dynamodb::for_process().expect("DynamoDB Local starts");
    let mut options = StackOptions::new(dynamodb.clone());
    for name in FIXED {
        options.vars.insert(name.into(), env_file[name].clone());
    }
    let t = TestStack::start_with(options).await;
    let port_of = |url: &str| url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let stack_ports = (
        port_of(&t.stack.http_url),
        port_of(&t.stack.ws_url),
        port_of(&t.stack.ecs_url),
    );
    // What differs from the README's stack on its default ports: the endpoints.
    let defaults = local_environments(&env_file, (3000, 3001, 3002));
    let here = local_environments(&env_file, stack_ports);
    let mut overrides: BTreeMap<String, String> = BTreeMap::new();
    for (function, environment) in &here {
        for (name, value) in environment {
            if defaults[function].get(name) != Some(value) {
                overrides.insert(name.clone(), value.clone());
            }
        }
    }
    overrides.insert("AWS_ENDPOINT_URL_ECS".into(), t.stack.ecs_url.clone());
    overrides.insert("AWS_ENDPOINT_URL_EC2".into(), t.stack.ecs_url.clone());

    // The README's watch command: its port, its $DYNAMODB, and the endpoint overrides; no
    // reloading on file changes (other tests may write in the workspace meanwhile). Its
    // `cargo run` builds in this test's target directory, where `build` left the binaries
    // (CARGO_TARGET_DIR: cargo-lambda 1.9 passes a `--target-dir` on to `cargo metadata`, which
    // refuses it).
    let port = dynamodb::free_port().unwrap();
    let mut words = with_port(watch, port);
    for word in &mut words {
        *word = word.replace("$DYNAMODB", &dynamodb);
    }
    for (name, value) in &overrides {
        assert!(!value.contains(','), "--env-var splits at commas: {value}");
        words.push("--env-var".into());
        words.push(format!("{name}={value}"));
    }
    words.push("--ignore-changes".into());
    let log_path = target_dir().join("cargo-lambda-watch.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut watch = Group(
        Command::new("cargo")
            .args(&words[1..])
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .expect("cargo lambda watch starts"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listening(port) {
        if let Ok(Some(status)) = watch.0.try_wait() {
            panic!("cargo lambda watch ended ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch listens on {port} within 60 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // HTTP: a heartbeat through the emulator registers a host the local stack then matches,
    // and hands out the stack's signaling URL and TURN servers.
    let reply = invoke(&path, heartbeat, &[], port, &log);
    assert_eq!(reply["statusCode"], 200, "{reply}\n{}", log());
    let answer = body(&reply);
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["ttl"], 30, "{answer}");
    assert_eq!(answer["signalingUrl"], t.stack.ws_url.as_str(), "{answer}");
    let turn: Vec<&str> = env_file["SWITCHBOARD_TURN_URLS"].split(',').collect();
    assert!(
        answer["iceServers"]
            .as_array()
            .is_some_and(|servers| servers.iter().any(|s| s["urls"] == serde_json::json!(turn))),
        "the env file's TURN URLs: {answer}"
    );
    let data_file = after(heartbeat, "--data-file");
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join(data_file)).unwrap())
            .unwrap();
    let registered: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    let (status, matched) = t.find_match(Some("local")).await;
    assert_eq!(
        (status, &matched["roomId"]),
        (200, &registered["roomId"]),
        "{matched}"
    );

    // The sessions settings (JSON in single quotes) arrive whole: the `sfu` image runs in the
    // location `local`, pinged at 127.0.0.1.
    let mut event = event.clone();
    event["routeKey"] = "GET /available-location/{image}".into();
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["rawPath"] = "/available-location/sfu".into();
    event["requestContext"]["http"]["method"] = "GET".into();
    event["requestContext"]["http"]["path"] = "/available-location/sfu".into();
    event["headers"]["authorization"] =
        format!("Bearer {}", env_file["SWITCHBOARD_OPERATOR_KEYS"]).into();
    event["pathParameters"] = serde_json::json!({ "image": "sfu" });
    event["body"] = Value::Null;
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("content-length");
    headers.remove("content-type");
    // The heartbeat's command line, for another function and event.
    let mut words = heartbeat.clone();
    words[3] = available.into();
    let at = words.iter().position(|w| w == "--data-file").unwrap();
    words.drain(at..at + 2);
    let reply = invoke(
        &path,
        &words,
        &["--data-ascii", &event.to_string()],
        port,
        &log,
    );
    assert_eq!(reply["statusCode"], 200, "{reply}\n{}", log());
    assert_eq!(
        body(&reply),
        serde_json::json!({ "locations": [{ "location": "local", "ips": ["127.0.0.1"] }] })
    );

    // WebSocket: $connect records the connection in the stack's tables; a handshake before
    // identify is refused, and its error frame, posted through the stack's @connections to a
    // socket the gateway never had, is answered 410, which removes the records.
    let reply = invoke(&path, connect, &[], port, &log);
    assert_eq!(reply["statusCode"], 200, "{reply}\n{}", log());
    let connection = "L0SM9cOFvHcCIhw=";
    assert!(
        t.store().connection(connection).await.unwrap().is_some(),
        "$connect through the emulator wrote the stack's ConnectionsTable"
    );
    let reply = invoke(&path, handshake, &[], port, &log);
    assert_eq!(reply["statusCode"], 400, "{reply}\n{}", log());
    assert!(
        t.store().connection(connection).await.unwrap().is_none(),
        "the 410 from the stack's @connections removed the records\n{}",
        log()
    );
    eprintln!(
        "cargo lambda watch and invokes: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
