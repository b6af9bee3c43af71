//! `switchboard-host`: the host agent for native matchmaking hosts. It heartbeats with the host
//! key, reports the host's status, holds the signaling socket (reconnecting when it closes) and
//! relays frames to and from a local process as JSON lines, so a host in any language needs no
//! HTTP or WebSocket code. See the README, "Native hosts: switchboard-host".
//!
//! To the process (one JSON object a line): `{"type":"iceServers","roomId","iceServers"}` once
//! registered (again hourly, with fresh TURN credentials), then every signaling frame but
//! `pong`. From the process: a frame (`{"action":...}`) to send, or
//! `{"control":"status","status":"busy"|"idle"}`. Bad lines are reported on stderr and skipped.
//!
//! Exit 0 after SIGTERM/SIGINT (or, without `--exec`, at the end of stdin); the process's exit
//! code when it exits; 1 when the API refuses the host (wrong key, a room another host holds).

mod api;
mod lines;
mod signaling;

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use api::{Api, ApiError, Registration, Status};

/// The variable the host key is read from (never a flag: flags show in `ps`).
const HOST_KEY_VAR: &str = "SWITCHBOARD_HOST_KEY";
/// Fresh TURN credentials go to the process this often.
const ICE_REFRESH: Duration = Duration::from_secs(3600);
/// How long a stopping process gets after SIGTERM before SIGKILL.
const PROCESS_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames waiting for the socket, and frames waiting for the process.
const QUEUE: usize = 256;

#[derive(Parser)]
#[command(
    version,
    about = "Heartbeats a matchmaking host, holds its signaling socket and relays frames to a local \
             process as JSON lines (stdin/stdout).",
    after_help = "Environment: SWITCHBOARD_HOST_KEY, the host key (bearer of heartbeat and status). \
                  RUST_LOG sets the log filter (default info); logs go to stderr."
)]
struct Args {
    /// The HTTP API's base URL (`http://127.0.0.1:3000` locally).
    #[arg(long, value_name = "URL")]
    api_url: String,
    /// The signaling socket (`ws://` or `wss://`); default: the heartbeat answer's `signalingUrl`.
    #[arg(long, value_name = "URL")]
    signaling_url: Option<String>,
    /// The region the host serves (one the deployment accepts).
    #[arg(long)]
    region: String,
    /// The host's secret id; default: a new random id at each start.
    #[arg(long, env = "SWITCHBOARD_HOST_ID", hide_env_values = true)]
    host_id: Option<String>,
    /// The room viewers reach the host in; default: a new random id at each start.
    #[arg(long, env = "SWITCHBOARD_ROOM_ID")]
    room_id: Option<String>,
    /// The status the host registers with.
    #[arg(long, value_enum, default_value = "idle")]
    status: Status,
    /// Run this command (`sh -c`) as the host process, on its stdin/stdout; without it,
    /// relay on switchboard-host's own stdin/stdout.
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Fatal {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("no signaling URL: the heartbeat answer has no signalingUrl; give --signaling-url")]
    NoSignalingUrl,
    #[error("cannot start the HTTP client: {0}")]
    Client(#[from] std::io::Error),
    #[error("cannot start the host process: {0}")]
    Spawn(std::io::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// Why the agent stops.
enum Stop {
    Signal,
    InputEnded,
    ProcessExited(std::process::ExitStatus),
    Refused(ApiError),
}

async fn run(args: Args) -> Result<ExitCode, Fatal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).map_err(Fatal::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(Fatal::Signals)?;
    let host_id = args
        .host_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let room_id = args
        .room_id
        .unwrap_or_else(|| format!("host-{}", uuid::Uuid::new_v4().simple()));
    let key = std::env::var(HOST_KEY_VAR).ok().filter(|k| !k.is_empty());
    if key.is_none() {
        tracing::warn!("{HOST_KEY_VAR} is not set: heartbeats go without a host key");
    }
    let api = std::sync::Arc::new(Api::new(
        &args.api_url,
        key,
        host_id.clone(),
        room_id.clone(),
        args.region,
    )?);

    let registration = tokio::select! {
        registration = register(&api, args.status) => registration?,
        _ = sigterm.recv() => return Ok(ExitCode::SUCCESS),
        _ = sigint.recv() => return Ok(ExitCode::SUCCESS),
    };
    let signaling_url = args
        .signaling_url
        .or_else(|| registration.signaling_url.clone())
        .ok_or(Fatal::NoSignalingUrl)?;
    tracing::info!(room_id = %room_id, signaling_url = %signaling_url, "registered");

    let mut process = Process::start(args.exec.as_deref(), &room_id)?;
    let (to_process, mut for_process) = mpsc::channel::<Value>(QUEUE);
    let (to_socket, for_socket) = mpsc::channel::<String>(QUEUE);
    let (status_tx, status_rx) = watch::channel(args.status);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (refused_tx, mut refused) = oneshot::channel::<ApiError>();

    let _ = to_process
        .send(ice_servers_event(&room_id, &registration))
        .await;
    let socket = tokio::spawn(signaling::run(
        signaling::Identity {
            url: signaling_url,
            room_id: room_id.clone(),
            host_id,
        },
        to_process.clone(),
        for_socket,
        shutdown_rx,
    ));
    let heartbeats = tokio::spawn(heartbeats(
        api.clone(),
        registration,
        status_rx,
        to_process,
        refused_tx,
    ));
    let mut reader = tokio::spawn(read_requests(process.output(), to_socket, status_tx));

    let mut input_open = true;
    let mut writer_open = true;
    let stop = loop {
        tokio::select! {
            Some(event) = for_process.recv(), if writer_open => {
                if let Err(e) = process.write(&event).await {
                    tracing::warn!(error = %e, "the host process does not read its input");
                    writer_open = false;
                }
            }
            _ = &mut reader, if input_open => {
                input_open = false;
                if process.child.is_none() {
                    break Stop::InputEnded;
                }
            }
            status = process.exited() => break Stop::ProcessExited(status),
            Ok(e) = &mut refused => break Stop::Refused(e),
            _ = sigterm.recv() => break Stop::Signal,
            _ = sigint.recv() => break Stop::Signal,
        }
    };

    // Stop heartbeating first, so nothing refreshes the host after this point; then take it
    // out of matching at once (not only when its entry expires), close the socket, and stop
    // the process.
    heartbeats.abort();
    reader.abort();
    if !matches!(stop, Stop::Refused(_)) {
        match tokio::time::timeout(Duration::from_secs(2), api.status(Status::Busy)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not report busy while stopping"),
            Err(_) => tracing::warn!("could not report busy while stopping: timed out"),
        }
    }
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), socket).await;
    process.stop().await;
    Ok(match stop {
        Stop::Signal | Stop::InputEnded => ExitCode::SUCCESS,
        Stop::ProcessExited(status) => exit_code(status),
        Stop::Refused(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    })
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        _ => ExitCode::from(1),
    }
}

fn ice_servers_event(room_id: &str, registration: &Registration) -> Value {
    json!({ "type": "iceServers", "roomId": room_id, "iceServers": registration.ice_servers })
}

/// The first heartbeat: retried while the API is unavailable, fatal when it refuses.
async fn register(api: &Api, status: Status) -> Result<Registration, ApiError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match api.heartbeat(status).await {
            Ok(registration) => return Ok(registration),
            Err(e @ ApiError::Refused { .. }) => return Err(e),
            Err(e) => tracing::warn!(error = %e, ?backoff, "heartbeat failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Heartbeats every [`Registration::interval`] with the current status, and reports each status
/// the process sets at once (a heartbeat never turns a busy host idle; only a status call does).
async fn heartbeats(
    api: std::sync::Arc<Api>,
    first: Registration,
    mut status: watch::Receiver<Status>,
    to_process: mpsc::Sender<Value>,
    refused: oneshot::Sender<ApiError>,
) {
    let mut interval = first.interval();
    let mut next = Instant::now() + interval;
    let mut ice_sent = Instant::now();
    let mut backoff = Duration::from_secs(1);
    // A status the API has not taken yet (it was unreachable): tried again after each heartbeat.
    let mut unreported: Option<Status> = None;
    loop {
        let report = tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let current = *status.borrow();
                match api.heartbeat(current).await {
                    Ok(registration) => {
                        interval = registration.interval();
                        next = Instant::now() + interval;
                        backoff = Duration::from_secs(1);
                        if ice_sent.elapsed() >= ICE_REFRESH {
                            ice_sent = Instant::now();
                            let event = ice_servers_event(&api.room_id, &registration);
                            let _ = to_process.send(event).await;
                        }
                    }
                    Err(e @ ApiError::Refused { .. }) => {
                        let _ = refused.send(e);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat failed; retrying");
                        next = Instant::now() + backoff.min(interval);
                        backoff = (backoff * 2).min(interval);
                    }
                }
                unreported.take()
            }
            changed = status.changed() => {
                if changed.is_err() {
                    // The process's input ended; heartbeats go on until the agent stops.
                    std::future::pending::<()>().await;
                }
                Some(*status.borrow_and_update())
            }
        };
        let Some(wanted) = report else { continue };
        match api.status(wanted).await {
            Ok(()) => tracing::info!(status = wanted.as_str(), "status reported"),
            // Not registered (its entry expired): the next heartbeat registers it afresh,
            // with this status.
            Err(ApiError::Refused { status: 404, .. }) => {}
            Err(e @ ApiError::Refused { .. }) => {
                let _ = refused.send(e);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "status report failed; retrying after the next heartbeat");
                unreported = Some(wanted);
            }
        }
    }
}

/// Reads the process's lines until its output ends: frames go to the socket, status controls
/// to the heartbeat loop; a bad line is reported and skipped.
async fn read_requests(
    reader: Box<dyn AsyncRead + Unpin + Send>,
    to_socket: mpsc::Sender<String>,
    status: watch::Sender<Status>,
) {
    let mut reader = BufReader::new(reader);
    let mut number = 0u64;
    loop {
        let line = match lines::next_line(&mut reader, lines::MAX_LINE_BYTES).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading the host process's output failed");
                return;
            }
        };
        number += 1;
        let parsed = match line {
            Ok(line) => lines::parse(&line),
            Err(length) => Err(lines::BadLine::TooBig(length)),
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(lines::Request::Frame(frame))) => {
                if to_socket.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(Some(lines::Request::Status(wanted))) => {
                status.send_replace(wanted);
            }
            Err(bad) => tracing::warn!("line {number} skipped: {bad}"),
        }
    }
}

/// The host process: a child on pipes (`--exec`), or the agent's own stdin/stdout.
struct Process {
    child: Option<tokio::process::Child>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    reader: Option<Box<dyn AsyncRead + Unpin + Send>>,
}

/// Reads nothing: what `output` gives after the first call.
struct Nothing;

impl AsyncRead for Nothing {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Process {
    fn start(command: Option<&str>, room_id: &str) -> Result<Self, Fatal> {
        let Some(command) = command else {
            return Ok(Self {
                child: None,
                writer: Box::new(tokio::io::stdout()),
                reader: Some(Box::new(tokio::io::stdin())),
            });
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env_remove(HOST_KEY_VAR)
            .env_remove("SWITCHBOARD_HOST_ID")
            .env("SWITCHBOARD_ROOM_ID", room_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own group: a terminal's Ctrl-C reaches the agent, which stops it in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(Fatal::Spawn)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Fatal::Spawn(std::io::Error::other("no pipes")));
        };
        Ok(Self {
            child: Some(child),
            writer: Box::new(stdin),
            reader: Some(Box::new(stdout)),
        })
    }

    /// The process's output (its lines to the agent).
    fn output(&mut self) -> Box<dyn AsyncRead + Unpin + Send> {
        self.reader.take().unwrap_or_else(|| Box::new(Nothing))
    }

    async fn write(&mut self, event: &Value) -> std::io::Result<()> {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        self.writer.flush().await
    }

    /// Resolves when the child exits; never without one.
    async fn exited(&mut self) -> std::process::ExitStatus {
        match &mut self.child {
            Some(child) => match child.wait().await {
                Ok(status) => status,
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Closes the child's input, sends its group SIGTERM, and SIGKILL after the timeout.
    async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(self.writer);
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let group = child.id().and_then(|pid| i32::try_from(pid).ok());
        if let Some(group) = group {
            // SAFETY: kill(2) on the child's own process group; no memory is involved.
            unsafe { libc::kill(-group, libc::SIGTERM) };
        }
        if tokio::time::timeout(PROCESS_STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            tracing::warn!("the host process ignored SIGTERM; killing it");
            if let Some(group) = group {
                // SAFETY: as above.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            let _ = child.wait().await;
        }
    }
}
