//! The repository's scripts, run for real: `scripts/test.sh` (every step runs, the summary is
//! printed, the exit is non-zero when a step fails) and `scripts/ensure-deps.sh` (python3-venv
//! and a Node.js of 20 or later when the machine lacks them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An executable script at `path`.
fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(first: &Path) -> String {
    format!(
        "{}:{}",
        first.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// scripts/test.sh, copied into a tree whose other scripts and `cargo` are stand-ins that pass
/// or fail as told (`fail` names them), so its own control flow is what is tested.
fn run_test_sh(fail: &[&str]) -> Output {
    let root = temp_dir("test-sh");
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::copy(
        workspace_root().join("scripts/test.sh"),
        root.join("scripts/test.sh"),
    )
    .unwrap();
    let status = |name: &str| if fail.contains(&name) { 1 } else { 0 };
    for name in ["ensure-deps", "sam-validate", "fuzz"] {
        script(
            &root.join(format!("scripts/{name}.sh")),
            &format!("echo {name} ran; exit {}", status(name)),
        );
    }
    // The browser test reports as node's test runner does.
    script(
        &root.join("scripts/e2e.sh"),
        &format!(
            "echo e2e ran; echo '# pass 2'; echo '# fail {0}'; exit {0}",
            status("e2e")
        ),
    );
    let bin = root.join("bin");
    let cargo_test = if fail.contains(&"cargo-test") {
        "echo 'test result: ok. 3 passed; 0 failed; 0 ignored'; \
         echo 'test result: FAILED. 4 passed; 2 failed; 0 ignored'; exit 101"
    } else {
        "echo 'test result: ok. 7 passed; 0 failed; 0 ignored'"
    };
    script(
        &bin.join("cargo"),
        &format!(
            "echo \"cargo $1 ran\"\ncase \"$1\" in\n  fmt) exit {};;\n  clippy) exit {};;\n  test) {cargo_test};;\nesac",
            status("fmt"),
            status("clippy")
        ),
    );
    let output = Command::new("bash")
        .arg(root.join("scripts/test.sh"))
        .env("PATH", path_with(&bin))
        .env("SWITCHBOARD_CACHE_DIR", root.join("cache"))
        .output()
        .expect("bash runs scripts/test.sh");
    let _ = std::fs::remove_dir_all(&root);
    output
}

#[test]
fn test_sh_runs_every_step_prints_its_summary_and_fails_when_a_step_fails() {
    // clippy fails (no tests of its own: one failure), two Rust tests fail, the fuzzer fails
    // (one failure), one browser test fails.
    let output = run_test_sh(&["clippy", "cargo-test", "fuzz", "e2e"]);
    let printed = text(&output);
    assert!(
        !output.status.success(),
        "a failed step fails the run:\n{printed}"
    );
    for step in [
        "ensure-deps ran",
        "cargo fmt ran",
        "cargo clippy ran",
        "sam-validate ran",
        "cargo test ran",
        "fuzz ran",
        "e2e ran",
    ] {
        assert!(
            printed.contains(step),
            "every step runs after a failure ({step}):\n{printed}"
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some("summary: 9 passed, 5 failed"),
        "7 + 2 passed; 2 + 1 tests and 2 steps failed:\n{printed}"
    );
    assert!(
        printed.contains("failed: lint"),
        "it names the failed steps:\n{printed}"
    );

    let output = run_test_sh(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(stdout.lines().last(), Some("summary: 9 passed, 0 failed"));

    // A step that cannot even start its tests (fmt here) still leaves the summary last.
    let output = run_test_sh(&["fmt"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert_eq!(stdout.lines().last(), Some("summary: 9 passed, 1 failed"));
}

fn node_major(node: &Path) -> Option<u32> {
    let output = Command::new(node).arg("--version").output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// A machine as Debian 12 / Ubuntu 24.04 leave it: a Node 18 first on PATH (a stand-in that
/// says it is 18 and otherwise runs the real node, so npm still works as with an old node),
/// and a python3 without ensurepip (no python3-venv). apt-get only records what it is asked
/// to install: the test does not change the machine's packages. The Node.js it installs is
/// real, from the npm registry, into a cache kept between runs.
#[test]
fn ensure_deps_installs_python3_venv_and_a_node_of_20_or_later() {
    let root = temp_dir("ensure-deps");
    let bin = root.join("bin");
    let real = |name: &str| {
        let output = Command::new("bash")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let (real_node, real_python) = (real("node"), real("python3"));
    assert!(!real_node.is_empty(), "a node to stand behind the old one");
    script(
        &bin.join("node"),
        &format!(
            "case \"$*\" in\n  --version) echo v18.19.0; exit 0;;\n  *process.versions*) echo 18; exit 0;;\nesac\nexec {real_node} \"$@\""
        ),
    );
    script(
        &bin.join("python3"),
        &format!(
            "case \"$*\" in *ensurepip*) echo \"No module named 'ensurepip'\" >&2; exit 1;; esac\nexec {real_python} \"$@\""
        ),
    );
    let apt_log = root.join("apt-get.log");
    script(
        &bin.join("apt-get"),
        &format!("echo \"$*\" >> {}", apt_log.display()),
    );
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ensure-deps-cache");
    let run = || {
        Command::new(workspace_root().join("scripts/ensure-deps.sh"))
            .arg("run")
            .env("PATH", path_with(&bin))
            .env("SWITCHBOARD_CACHE_DIR", &cache)
            .output()
            .expect("ensure-deps.sh runs")
    };

    let output = run();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    let asked = std::fs::read_to_string(&apt_log).unwrap_or_default();
    assert!(
        asked
            .lines()
            .any(|l| l.starts_with("install") && l.split_whitespace().any(|w| w == "python3-venv")),
        "python3-venv is installed when python3 has no ensurepip: apt-get was asked {asked:?}\n{printed}"
    );
    let node = cache.join("node/bin/node");
    assert!(
        node_major(&node).is_some_and(|major| major >= 20),
        "a Node.js of 20 or later in {}: {:?}\n{printed}",
        node.display(),
        node_major(&node)
    );
    assert_eq!(
        node_major(&bin.join("node")),
        Some(18),
        "the old one is kept"
    );

    // Again, with python3-venv there: nothing more to install (the Node.js is in the cache).
    std::fs::remove_file(bin.join("python3")).unwrap();
    let _ = std::fs::remove_file(&apt_log);
    let output = run();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        !printed.contains("installing"),
        "a second run installs nothing:\n{printed}"
    );
    assert!(
        std::fs::read_to_string(&apt_log)
            .unwrap_or_default()
            .is_empty()
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_scripts_pass_shellcheck() {
    let root = workspace_root();
    for script in [
        "scripts/test.sh",
        "scripts/ensure-deps.sh",
        "scripts/run-local.sh",
        "scripts/sam-validate.sh",
        "scripts/sam-build.sh",
        "scripts/ensure-cargo-lambda.sh",
        ".ci/run",
    ] {
        let lint = Command::new("shellcheck")
            .arg(script)
            .current_dir(&root)
            .output()
            .unwrap_or_else(|e| panic!("shellcheck: {e} (scripts/ensure-deps.sh installs it)"));
        assert!(
            lint.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
}
