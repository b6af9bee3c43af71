//! `switchboard-local` with a malformed setting stops before it starts anything (DynamoDB
//! Local included), with one line naming the setting.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_bad_setting_stops_the_local_stack_at_start_with_one_line_naming_it() {
    for (setting, value) in [
        ("SWITCHBOARD_HOST_TTL_SECONDS", "soon"),
        ("SWITCHBOARD_REGIONS", "local,mars base"),
        ("SWITCHBOARD_MAX_ROOM_MEMBERS", "-3"),
        ("SWITCHBOARD_WS_URL", "https://example.com"),
        ("SWITCHBOARD_SFU_TOKEN_OPTIONAL", "yes"),
    ] {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard-local"))
            .args(["--http-port", "0", "--ws-port", "0", "--ecs-port", "0"])
            .env(setting, value)
            // Nothing may be started before the settings are checked: DynamoDB Local could
            // not even be installed from here.
            .env("SWITCHBOARD_CACHE_DIR", "/dev/null/no-cache")
            .env("SWITCHBOARD_OPERATOR_KEYS", "k")
            .env("SWITCHBOARD_HOST_KEYS", "k")
            .env("SWITCHBOARD_TURN_SECRET", "s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("switchboard-local runs");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{setting}: refused before DynamoDB Local starts ({:?})",
            started.elapsed()
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{setting}={value}: a failure exit"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{setting}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(setting),
            "{setting}: the line names it: {:?}",
            lines[0]
        );
    }
}

/// Runs switchboard-local with `args` and `vars` until it exits (it must, before starting
/// anything); returns its exit success, stdout and stderr lines.
fn refused(args: &[&str], vars: &[(&str, &str)]) -> (bool, Vec<String>, Vec<String>) {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard-local"));
    command
        .args(["--http-port", "0", "--ws-port", "0", "--ecs-port", "0"])
        .args(args)
        .env("SWITCHBOARD_CACHE_DIR", "/dev/null/no-cache")
        .env("SWITCHBOARD_OPERATOR_KEYS", "k")
        .env("SWITCHBOARD_HOST_KEYS", "k")
        .env("SWITCHBOARD_TURN_SECRET", "s")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().expect("switchboard-local runs");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{args:?} {vars:?}: refused before DynamoDB Local starts ({:?})",
        started.elapsed()
    );
    let lines = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect()
    };
    (
        output.status.success(),
        lines(&output.stdout),
        lines(&output.stderr),
    )
}

/// What would otherwise start fine and then fail every request (or every sweep) stops the
/// start, with one line naming the application, location or setting.
#[test]
fn what_would_fail_at_request_time_stops_the_start_naming_it() {
    let location = |fields: &str| {
        format!(
            r#"{{"eu": {{"region": "eu-central-1", "cluster": "switchboard-eu", "ips": ["10.0.0.1"]{fields}}}}}"#
        )
    };
    let with_subnets = location(r#", "subnets": ["subnet-1"], "securityGroups": ["sg-1"]"#);
    let cases: Vec<(Vec<(&str, String)>, Vec<&str>)> = vec![
        // RunTask without a network configuration: every POST /session a 500.
        (
            vec![(
                "SWITCHBOARD_LOCATIONS",
                location(r#", "securityGroups": ["sg-1"]"#),
            )],
            vec!["SWITCHBOARD_LOCATIONS", "location \"eu\"", "subnets"],
        ),
        (
            vec![(
                "SWITCHBOARD_LOCATIONS",
                location(r#", "subnets": ["subnet-1"]"#),
            )],
            vec!["SWITCHBOARD_LOCATIONS", "location \"eu\"", "securityGroups"],
        ),
        // A task definition IAM does not let the functions run: every POST /session a 500.
        (
            vec![
                ("SWITCHBOARD_LOCATIONS", with_subnets.clone()),
                (
                    "SWITCHBOARD_APPLICATIONS",
                    r#"{"arena": {"taskDefinition": "arena-game", "container": "game"}}"#.into(),
                ),
            ],
            vec![
                "SWITCHBOARD_APPLICATIONS",
                "application \"arena\"",
                "SWITCHBOARD_SESSION_TASK_FAMILY_PREFIX",
            ],
        ),
        // A cluster IAM does not let them use.
        (
            vec![(
                "SWITCHBOARD_LOCATIONS",
                with_subnets.replace("switchboard-eu", "games-eu"),
            )],
            vec!["location \"eu\"", "SWITCHBOARD_SESSION_CLUSTER_PREFIX"],
        ),
        // Warm rooms with nowhere to launch them: an error every sweep.
        (
            vec![
                ("SWITCHBOARD_WARM_ROOMS", "2".into()),
                ("SWITCHBOARD_ECS_CLUSTER", String::new()),
            ],
            vec!["SWITCHBOARD_WARM_ROOMS", "SWITCHBOARD_ECS_CLUSTER"],
        ),
        // Table names are the local stack's own.
        (
            vec![("SWITCHBOARD_ROOMS_TABLE", "rooms".into())],
            vec!["SWITCHBOARD_ROOMS_TABLE", "--table-prefix"],
        ),
    ];
    for (vars, named) in cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (success, _, stderr) = refused(&[], &vars);
        assert!(!success, "{vars:?}: a failure exit");
        assert_eq!(stderr.len(), 1, "{vars:?}: one line, got {stderr:?}");
        for name in named {
            assert!(
                stderr[0].contains(name),
                "{vars:?}: {name} in {:?}",
                stderr[0]
            );
        }
    }
}

/// A setting given by a flag is named by its flag, not by an environment variable.
#[test]
fn a_bad_flag_value_is_named_by_its_flag() {
    let (success, _, stderr) = refused(
        &[
            "--applications",
            r#"{"arena":{"taskDefinition":"switchboard-arena","container":"game","warm":{"mars":2}}}"#,
        ],
        &[],
    );
    assert!(!success);
    assert_eq!(
        stderr,
        [
            r#"switchboard-local: --applications is not valid: application "arena": unknown location "mars""#
        ]
    );
    let (success, _, stderr) = refused(&["--locations", "[]"], &[]);
    assert!(!success);
    assert_eq!(
        stderr,
        ["switchboard-local: --locations is not valid: must be a JSON object"]
    );
    for (flag, value) in [
        ("--http-port", "http"),
        ("--sweep-interval-seconds", "0"),
        ("--ws-idle-timeout-seconds", "0"),
        ("--ecs-capacity", "many"),
    ] {
        let (success, _, stderr) = refused(&[flag, value], &[]);
        assert!(!success, "{flag} {value}");
        assert!(
            stderr
                .first()
                .is_some_and(|l| l.contains(flag) && l.contains(value)),
            "{flag} {value}: {stderr:?}"
        );
    }
}

/// A misspelt setting is not silently ignored.
#[test]
fn an_unknown_setting_is_reported_with_the_setting_it_likely_means() {
    let (success, _, stderr) = refused(
        &[],
        &[
            ("SWITCHBOARD_TURN_URL", "turn:127.0.0.1:3478"),
            // Stops the start, so that nothing else starts.
            ("SWITCHBOARD_HOST_TTL_SECONDS", "soon"),
        ],
    );
    assert!(!success);
    assert_eq!(stderr.len(), 2, "{stderr:?}");
    assert_eq!(
        stderr[0],
        "switchboard-local: warning: SWITCHBOARD_TURN_URL is not a Switchboard setting and is ignored (did you mean SWITCHBOARD_TURN_URLS?)"
    );
    assert!(
        stderr[1].contains("SWITCHBOARD_HOST_TTL_SECONDS"),
        "{stderr:?}"
    );
}

/// `--help` describes every flag with its default; `--version` prints the version.
#[test]
fn help_describes_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-local"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--http-port <N>",
        "--ws-port <N>",
        "--ecs-port <N>",
        "--dynamodb-endpoint <URL>",
        "--task-command <CMD>",
        "--sfu-command <CMD>",
        "--ecs-capacity <N>",
        "--task-stop-timeout-seconds <N>",
        "--sweep-interval-seconds <N>",
        "--applications <JSON>",
        "--locations <JSON>",
        "--template <PATH>",
        "--table-prefix <P>",
        "--ws-idle-timeout-seconds <N>",
        "--ws-max-connection-seconds <N>",
        "--ws-frame-jitter-ms <N>",
        "--no-iam",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    for default in [
        "[default: 3000]",
        "[default: 3001]",
        "[default: 3002]",
        "[default: 60]",
        "[default: 600]",
        "[default: 7200]",
    ] {
        assert!(help.contains(default), "{default} in {help}");
    }
    assert!(help.lines().count() > 30, "a description per flag: {help}");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-local"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("switchboard-local {}", env!("CARGO_PKG_VERSION"))
    );
}
