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
