//! A function with a missing or malformed setting stops at start, before the Lambda runtime
//! asks for an event, with one line naming the setting. (Configuration is read by
//! `switchboard::init`, shared by every function's `main`; this is one of them, run as Lambda
//! would run it, minus the runtime API.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every table variable the configuration requires.
fn tables() -> Vec<&'static str> {
    switchboard::config::Tables::VARIABLES
        .iter()
        .map(|(_, variable)| *variable)
        .collect()
}

/// Runs the function's binary with only `vars` set; returns its exit code and stderr.
fn run(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let (code, _, stderr) = run_with_stdout(vars);
    (code, stderr)
}

fn run_with_stdout(vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_find-match"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // The runtime API is never reached: the config check comes first.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    let started = Instant::now();
    let output = command.output().expect("the function binary runs");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it stopped at start, not at a first request"
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The tables and the signaling URL find-match cannot do without, and `extra`.
fn with_tables(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<(&str, &str)> = tables().into_iter().map(|t| (t, "table")).collect();
    vars.push(("SWITCHBOARD_WS_URL", "wss://example.com/prod"));
    for (name, value) in extra {
        vars.retain(|(n, _)| n != name);
        vars.push((name, value));
    }
    vars
}

#[test]
fn a_bad_or_missing_setting_stops_the_function_at_start_with_one_line_naming_it() {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "SWITCHBOARD_MATCH_LEASE_SECONDS",
            with_tables(&[("SWITCHBOARD_MATCH_LEASE_SECONDS", "soon")]),
        ),
        (
            "SWITCHBOARD_REGIONS",
            with_tables(&[("SWITCHBOARD_REGIONS", "local,us east 1")]),
        ),
        (
            "SWITCHBOARD_WS_URL",
            with_tables(&[("SWITCHBOARD_WS_URL", "127.0.0.1:3001")]),
        ),
        (
            "SWITCHBOARD_TURN_SECRET",
            with_tables(&[("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478")]),
        ),
        // Every match answers with it: without it, find-match could only answer 500.
        ("SWITCHBOARD_WS_URL", {
            let mut vars = with_tables(&[]);
            vars.retain(|(name, _)| *name != "SWITCHBOARD_WS_URL");
            vars
        }),
        ("SWITCHBOARD_HOSTS_TABLE", {
            let mut vars = with_tables(&[]);
            vars.retain(|(name, _)| *name != "SWITCHBOARD_HOSTS_TABLE");
            vars
        }),
    ];
    for (setting, vars) in cases {
        let (code, stderr) = run(&vars);
        assert_eq!(
            code,
            Some(78),
            "{setting}: exit code (EX_CONFIG); stderr: {stderr}"
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

/// A setting find-match does not read, however malformed, does not stop it; a
/// `SWITCHBOARD_*` name no function reads is reported as a warning naming the likely setting.
#[test]
fn settings_it_does_not_read_do_not_stop_it_and_a_misspelt_one_is_reported() {
    let (code, stdout, stderr) = run_with_stdout(&with_tables(&[
        ("SWITCHBOARD_HOST_TTL_SECONDS", "soon"),
        ("SWITCHBOARD_TURN_URL", "turn:127.0.0.1:3478"),
    ]));
    // It got past its configuration: the runtime API (nothing listens) is what failed.
    assert_ne!(code, Some(78), "stderr: {stderr}");
    assert!(
        stdout.contains("SWITCHBOARD_TURN_URL is not a Switchboard setting")
            && stdout.contains("did you mean SWITCHBOARD_TURN_URLS?"),
        "stdout: {stdout}"
    );
}
