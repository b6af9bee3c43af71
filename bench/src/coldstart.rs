//! Cold start without AWS: each function binary is started as Lambda starts a
//! `provided.al2023` bootstrap, with `AWS_LAMBDA_RUNTIME_API` pointing at a stub on 127.0.0.1
//! that answers nothing and only notes when the first `GET .../invocation/next` arrives. The
//! time from exec to that request is the function's init. The same is done for a
//! `lambda_runtime` hello world built with the same profile in the same build.
//! Under `strace -f -e trace=connect,openat` the same start shows which files init opens and
//! whether it connects anywhere but the Runtime API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::common::{Error, median, millis};

pub const HELLO: &str = "bench-hello";

#[derive(Debug, Default)]
pub struct Binary {
    pub name: String,
    pub init_ms: f64,
    pub files_opened: usize,
    /// connect() calls to anything but the Runtime API stub.
    pub network_calls: usize,
    pub size_bytes: u64,
}

pub struct ColdStart {
    pub binaries: Vec<Binary>,
}

impl ColdStart {
    pub fn hello(&self) -> Option<&Binary> {
        self.binaries.iter().find(|b| b.name == HELLO)
    }

    pub fn functions(&self) -> impl Iterator<Item = &Binary> {
        self.binaries.iter().filter(|b| b.name != HELLO)
    }
}

/// The environment Lambda gives a function, plus exactly what template.yaml gives that
/// function (every parameter given a plausible value); the hello world gets Lambda's only.
fn lambda_env(name: &str, port: u16) -> Vec<(String, String)> {
    let mut vars =
        switchboard_local::template::lambda_variables(name, &format!("127.0.0.1:{port}"));
    if let Ok(template) = switchboard_local::Template::load(
        &switchboard_local::workspace_root().join("template.yaml"),
    ) && let Ok(environment) = template.function_environment(
        name,
        &switchboard_local::template::deployed_values(&template),
    ) {
        vars.extend(environment);
    }
    vars
}

/// Starts `command` (the binary, or strace wrapping it) against a fresh stub; returns the time
/// from spawn to the first `/next` request. The stub then closes the connection, and the
/// runtime, with no invocation to run, exits.
async fn start_once(program: &Path, args: &[String], name: &str) -> Result<Duration, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(lambda_env(name, port))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let first_poll = async {
        let (mut stream, _) = listener.accept().await?;
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                return Err::<Duration, Error>("runtime closed before asking".into());
            }
            request.extend_from_slice(&buffer[..read]);
        }
        let elapsed = started.elapsed();
        let line = String::from_utf8_lossy(&request);
        if !line.starts_with("GET /2018-06-01/runtime/invocation/next") {
            return Err(format!(
                "unexpected first request: {}",
                line.lines().next().unwrap_or("")
            )
            .into());
        }
        Ok(elapsed)
    };
    let result = tokio::time::timeout(Duration::from_secs(20), first_poll).await;
    // Bounded: the process exits once its connection is gone; it is killed if not.
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
    match result {
        Ok(r) => r,
        Err(_) => Err(format!("{} never polled the Runtime API", program.display()).into()),
    }
}

/// Files opened (openat calls) and connect() calls other than to the stub during init.
async fn trace(binary: &Path, scratch: &Path) -> Result<(usize, usize), Error> {
    let log = scratch.join(format!(
        "{}.strace",
        binary.file_name().and_then(|n| n.to_str()).unwrap_or("bin")
    ));
    let _ = std::fs::remove_file(&log);
    let args = vec![
        "-f".to_string(),
        "-qq".to_string(),
        "-e".to_string(),
        "trace=connect,openat".to_string(),
        "-o".to_string(),
        log.display().to_string(),
        binary.display().to_string(),
    ];
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    start_once(Path::new("strace"), &args, name).await?;
    let text = std::fs::read_to_string(&log)?;
    // The runtime's only connection is to the stub on 127.0.0.1 (one per poll).
    let mut stub_port = None;
    let mut network = 0;
    let mut opened = 0;
    for line in text.lines() {
        if line.contains("openat(") {
            opened += 1;
        } else if line.contains("connect(") {
            let is_stub = line.contains("127.0.0.1") && {
                let port = line
                    .split("htons(")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .map(String::from);
                if stub_port.is_none() {
                    stub_port = port.clone();
                }
                port == stub_port
            };
            if !is_stub {
                network += 1;
            }
        }
    }
    Ok((opened, network))
}

pub async fn measure(dir: &Path, runs: usize, scratch: &Path) -> Result<ColdStart, Error> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    if !names.iter().any(|n| n == HELLO) {
        return Err(format!("{} has no {HELLO}", dir.display()).into());
    }
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // Interleaved, so that a busy moment on the machine falls on all binaries alike.
    for run in 0..runs + 1 {
        for name in &names {
            let elapsed = start_once(&dir.join(name), &[], name).await?;
            if run > 0 {
                times.entry(name.clone()).or_default().push(millis(elapsed));
            }
        }
    }
    let mut binaries = vec![];
    for name in &names {
        let path: PathBuf = dir.join(name);
        let (files_opened, network_calls) = trace(&path, scratch).await?;
        binaries.push(Binary {
            name: name.clone(),
            init_ms: median(&times[name]),
            files_opened,
            network_calls,
            size_bytes: std::fs::metadata(&path)?.len(),
        });
    }
    Ok(ColdStart { binaries })
}
