//! cargo-lambda's emulator: `cargo lambda watch` serves the function binaries with the env
//! file in `tests/events/`, and `cargo lambda invoke` answers the API Gateway events of
//! `tests/events/` as deployed, against the DynamoDB Local and `@connections` of a running
//! local stack. The commands are the README's ("cargo-lambda's emulator"), run as printed but
//! for the ports: this test's stack and emulator listen on free ones.
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
/// The settings the local stack generates when it is not given them: the env file fixes them.
const SECRETS: [&str; 3] = [
    "SWITCHBOARD_HOST_KEYS",
    "SWITCHBOARD_OPERATOR_KEYS",
    "SWITCHBOARD_TURN_SECRET",
];

/// `KEY=VALUE` lines, `#` comments, values optionally in single quotes (as cargo-lambda's
/// env-file reader takes them).
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
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// Each function's environment (by binary) as the local stack gives it on `ports`, with the
/// env file's secrets.
fn local_environments(
    env_file: &BTreeMap<String, String>,
    ports: (u16, u16, u16),
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut options = StackOptions::new("");
    (options.http_port, options.ws_port, options.ecs_port) = ports;
    for name in SECRETS {
        let value = env_file
            .get(name)
            .unwrap_or_else(|| panic!("{ENV_FILE} sets {name}"));
        options.vars.insert(name.into(), value.clone());
    }
    switchboard_local::check_configuration(&options)
        .expect("the local stack's configuration")
        .environments
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
                assert_eq!(&other, value, "{function}: {name} differs between functions");
            }
        }
    }
    for (name, value) in [
        ("AWS_REGION", switchboard_local::iam::REGION),
        ("AWS_ACCESS_KEY_ID", switchboard_local::ADMIN_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:3002"),
    ] {
        union.insert(name.into(), value.into());
    }
    let expected: String = union
        .iter()
        .map(|(k, v)| {
            if v.contains(['"', '=', '#', ' ']) {
                format!("{k}='{v}'\n")
            } else {
                format!("{k}={v}\n")
            }
        })
        .collect();
    assert_eq!(
        env_file, union,
        "{ENV_FILE} holds the template's variables with the local stack's values:\n{expected}"
    );

    // sam local invoke --env-vars: function logical id → its own variables.
    let template = Template::load(&workspace_root().join("template.yaml")).unwrap();
    let by_logical_id: BTreeMap<String, BTreeMap<String, String>> = template
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

/// The README's `cargo lambda` commands (backslash continuations joined), split into words.
fn readme_commands() -> Vec<Vec<String>> {
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
        .filter(|line| line.starts_with("cargo lambda "))
        .map(|line| line.split_whitespace().map(String::from).collect())
        .collect()
}

/// cargo-lambda from PyPI, installed once into the cache's venv, as scripts/sam-build.sh does.
fn cargo_lambda_path() -> String {
    let status = Command::new(workspace_root().join("scripts/ensure-cargo-lambda.sh"))
        .stdout(Stdio::piped())
        .output()
        .expect("scripts/ensure-cargo-lambda.sh runs");
    assert!(status.status.success(), "cargo-lambda installs");
    let bin = String::from_utf8(status.stdout).unwrap().trim().to_string();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

fn target_dir() -> PathBuf {
    // <target>/debug/deps/<this test>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).expect("a target directory").into()
}

/// The function binaries, built in the dev profile `cargo lambda watch` runs them in, so the
/// first invocation does not wait for a compile.
fn build(binaries: &[&str]) {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--target-dir"])
        .arg(target_dir());
    for binary in binaries {
        cargo.args(["-p", binary, "--bin", binary]);
    }
    assert!(cargo.status().unwrap().success(), "the functions build");
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

fn invoke(path: &str, words: &[String], port: u16) -> Value {
    let words = with_port(words, port);
    let started = Instant::now();
    let output = Command::new("cargo")
        .args(&words[1..])
        .env("PATH", path)
        .current_dir(workspace_root())
        .output()
        .expect("cargo lambda invoke runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {}\n{stdout}{}",
        words.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{} ({:.1} s)", words.join(" "), started.elapsed().as_secs_f64());
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout}: {e}"))
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn cargo_lambda_watch_serves_the_functions_against_the_local_stack() {
    let started = Instant::now();
    let path = cargo_lambda_path();
    let env_file = read_env_file();
    let commands = readme_commands();
    let [watch, heartbeat, connect, handshake] = commands.as_slice() else {
        panic!("the README shows watch and three invokes: {commands:?}");
    };
    build(&["heartbeat", "connect", "handshake"]);

    // The local stack as the env file expects it (tables without a prefix, its secrets), on
    // its own DynamoDB Local and free ports.
    let dynamodb = dynamodb::for_process().expect("DynamoDB Local starts");
    let mut options = StackOptions::new(dynamodb.clone());
    for name in SECRETS {
        options.vars.insert(name.into(), env_file[name].clone());
    }
    let t = TestStack::start_with(options).await;
    let ports = |url: &str| url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let stack_ports = (
        ports(&t.stack.http_url),
        ports(&t.stack.ws_url),
        ports(&t.stack.ecs_url),
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

    let port = dynamodb::free_port().unwrap();
    let mut words = with_port(watch, port);
    for word in &mut words {
        *word = word.replace("$DYNAMODB", &dynamodb);
    }
    for (name, value) in &overrides {
        words.push("--env-var".into());
        words.push(format!("{name}={value}"));
    }
    words.push("--target-dir".into());
    words.push(target_dir().display().to_string());
    let log_path = target_dir().join("cargo-lambda-watch.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _watch = Group(
        Command::new("cargo")
            .args(&words[1..])
            .env("PATH", &path)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("cargo lambda watch starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch listens on {port} within 60 s: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // HTTP: a heartbeat through the emulator registers a host the local stack then matches.
    let reply = invoke(&path, heartbeat, port);
    assert_eq!(reply["statusCode"], 200, "{reply}\n{}", log());
    let answer = body(&reply);
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["ttl"], 30, "{answer}");
    assert_eq!(answer["signalingUrl"], t.stack.ws_url.as_str(), "{answer}");
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("tests/events/http-heartbeat.json"))
            .unwrap(),
    )
    .unwrap();
    let registered: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    let (status, matched) = t.find_match(Some("local")).await;
    assert_eq!(
        (status, &matched["roomId"]),
        (200, &registered["roomId"]),
        "{matched}"
    );

    // WebSocket: $connect records the connection in the stack's tables; a handshake before
    // identify is refused, and its error frame, posted through the stack's @connections to a
    // socket the gateway never had, is answered 410, which removes the records.
    let reply = invoke(&path, connect, port);
    assert_eq!(reply["statusCode"], 200, "{reply}\n{}", log());
    let connection = "L0SM9cOFvHcCIhw=";
    assert!(
        t.store().connection(connection).await.unwrap().is_some(),
        "$connect through the emulator wrote the stack's ConnectionsTable"
    );
    let reply = invoke(&path, handshake, port);
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
