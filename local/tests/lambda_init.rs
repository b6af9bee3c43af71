//! Every function binary, started as Lambda starts it with exactly the environment
//! template.yaml gives it (Globals plus its own, every parameter given a plausible value),
//! gets through its init and asks the Runtime API for its first event. A function the
//! template leaves without a setting it needs stops at init instead (exit 78, one line): this
//! test names it and that line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_local::template::Values;
use switchboard_local::{Template, needs_of, workspace_root};

fn template() -> Template {
    Template::load(&workspace_root().join("template.yaml")).expect("template.yaml parses")
}

/// What a deployment would resolve the template's references to: every parameter given
/// (secrets, the VPC, a sessions application in a second region), resources named as
/// CloudFormation names them.
fn deployed_values(template: &Template) -> Values {
    let mut values = Values::default();
    let given: HashMap<&str, String> = [
        ("HostKeys", "host-key-1,host-key-2".to_string()),
        ("OperatorKeys", "operator-key".to_string()),
        ("TurnSecret", "turn-secret".to_string()),
        (
            "TurnUrls",
            "turn:turn.example.com:3478?transport=udp".to_string(),
        ),
        ("StunUrls", "stun:turn.example.com:3478".to_string()),
        ("Subnets", "subnet-0a1b2c3d,subnet-4e5f6a7b".to_string()),
        ("SecurityGroups", "sg-0a1b2c3d".to_string()),
        (
            "SfuImage",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/sfu:latest".to_string(),
        ),
        ("WarmRooms", "2".to_string()),
        (
            "Locations",
            serde_json::json!({ "eu": {
                "region": "eu-central-1", "cluster": "switchboard-eu",
                "subnets": ["subnet-9a8b7c6d"], "securityGroups": ["sg-9a8b7c6d"],
                "ips": ["198.51.100.7"],
            }})
            .to_string(),
        ),
        (
            "Applications",
            serde_json::json!({ "arena": {
                "taskDefinition": "switchboard-arena", "container": "game",
                "ports": [{ "type": "udp", "container": 7777 }],
                "versions": { "v2": "switchboard-arena:2" },
                "warm": { "eu": 1 },
            }})
            .to_string(),
        ),
    ]
    .into_iter()
    .collect();
    for parameter in template.parameters() {
        let value = given
            .get(parameter.as_str())
            .cloned()
            .or_else(|| template.parameter_default(&parameter))
            .unwrap_or_else(|| panic!("parameter {parameter} needs a value in this test"));
        values.parameters.insert(parameter, value);
    }
    for id in template.table_ids() {
        values
            .resources
            .insert(id.clone(), format!("switchboard-{id}-1A2B3C4D5E6F"));
    }
    for (id, value) in [
        ("SfuCluster", "switchboard-SfuCluster-7G8H9I0J"),
        (
            "SfuTaskDefinition",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/switchboard-sfu:1",
        ),
        ("WebSocketApi", "a1b2c3d4e5"),
    ] {
        values.resources.insert(id.into(), value.into());
    }
    for (name, value) in [
        ("AWS::Region", "us-east-1"),
        ("AWS::AccountId", "123456789012"),
        ("AWS::Partition", "aws"),
        ("AWS::StackName", "switchboard"),
    ] {
        values.pseudo.insert(name.into(), value.into());
    }
    values
}

/// What Lambda itself puts in a `provided.al2023` function's environment.
fn lambda_variables(function: &str, runtime_api: &str) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "example-secret"),
        ("AWS_SESSION_TOKEN", "example-token"),
        ("_HANDLER", "bootstrap"),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The function binaries, built as `cargo build` builds them (debug), in this test's target
/// directory.
fn build(binaries: &[String]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // <target>/debug/deps/<this test>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a target directory")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("a target directory");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--target-dir"])
        .arg(target_dir);
    for binary in binaries {
        cargo.args(["-p", binary, "--bin", binary]);
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "the function binaries build");
    profile_dir
}

/// Starts `binary` with `environment` against a Runtime API stub; returns the first request
/// line it sent the stub, or its exit code and stderr when it sent none.
fn first_request(
    binary: &std::path::Path,
    function: &str,
    environment: &BTreeMap<String, String>,
) -> Result<String, String> {
    let stub = TcpListener::bind("127.0.0.1:0").unwrap();
    let runtime_api = stub.local_addr().unwrap().to_string();
    stub.set_nonblocking(true).unwrap();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(lambda_variables(function, &runtime_api))
        .envs(environment)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the function binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        match stub.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                // No event to give: the runtime's poll fails and the process ends.
                let _ = (&stream).write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                break Ok(line.trim().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("stub: {e}"),
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            break Err(format!(
                "exited with {status} before asking: {}",
                stderr.trim()
            ));
        }
        if Instant::now() > deadline {
            break Err("never asked the Runtime API for an event within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[test]
fn every_function_binary_reaches_its_first_invocation_with_the_templates_environment() {
    let template = template();
    let values = deployed_values(&template);
    let functions: Vec<String> = template
        .functions()
        .unwrap()
        .into_iter()
        .map(|(_, binary)| binary)
        .collect();
    assert_eq!(functions.len(), 20, "{functions:?}");
    let dir = build(&functions);
    let mut failures = Vec::new();
    for function in &functions {
        let environment = template.function_environment(function, &values).unwrap();
        // Only what it reads: no secret it does not use.
        let needs = needs_of(function).unwrap_or_else(|| panic!("{function} declares NEEDS"));
        let given: BTreeSet<&str> = environment
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("SWITCHBOARD_"))
            .collect();
        assert_eq!(
            given,
            switchboard::config::variables_of(needs),
            "{function}: the template gives exactly what it needs"
        );
        match first_request(&dir.join(function), function, &environment) {
            Ok(line) if line.starts_with("GET /2018-06-01/runtime/invocation/next ") => {}
            Ok(line) => failures.push(format!("{function}: first request {line:?}")),
            Err(e) => failures.push(format!("{function}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check is real: a function whose deployed environment lacks a setting it needs stops
/// at init, and the failure names it and the line it printed.
#[test]
fn a_function_without_a_setting_it_needs_stops_at_init_naming_it() {
    let template = template();
    let values = deployed_values(&template);
    let dir = build(&["find-match".to_string()]);
    let mut environment = template
        .function_environment("find-match", &values)
        .unwrap();
    environment.remove("SWITCHBOARD_WS_URL");
    let error = first_request(&dir.join("find-match"), "find-match", &environment).unwrap_err();
    assert!(
        error.contains("exit status: 78")
            && error.contains("environment variable SWITCHBOARD_WS_URL is required"),
        "{error}"
    );
}
