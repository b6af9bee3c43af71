//! `switchboard-sfu`: one room's SFU, as an ECS task (or a local-stack task) runs it.
//!
//! Environment: `ROOM_ID`, `SFU_TOKEN`, `SIGNAL_SERVER_URL`, `RTC_CONFIG`; its own address from
//! `TASK_IP` or, on Fargate, the task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`);
//! `SFU_UDP_PORT` (50000); `SFU_PUBLIC_IP` (a public address offered beside the host one). A
//! missing or malformed setting: one line naming it on stderr, exit 78. Exit 0 after SIGTERM/SIGINT, and
//! when the gateway refuses a later identify (the room ended while the socket was away); exit 1
//! when the very first identify is refused (wrong token or unknown room) or the socket cannot
//! be bound. `RUST_LOG` sets the log filter (default `info`).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use switchboard_sfu::config::{self, AddressSource, Config};
use switchboard_sfu::driver::{self, Exit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EX_CONFIG: u8 = 78;

/// GET on the plain-HTTP task metadata endpoint (`http://169.254.170.2/v4/<id>`).
async fn fetch_metadata(uri: &str) -> Result<String, String> {
    let rest = uri.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

async fn own_address(source: &AddressSource) -> Result<IpAddr, String> {
    let uri = match source {
        AddressSource::Given(ip) => return Ok(*ip),
        AddressSource::Metadata(uri) => uri,
    };
    let mut last = String::new();
    for _ in 0..10 {
        match fetch_metadata(uri).await {
            Ok(body) => match config::metadata_address(&body) {
                Some(ip) => return Ok(ip),
                None => last = "no Networks[0].IPv4Addresses[0]".into(),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchboard-sfu: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    // The one TLS provider for wss:// (the signaling socket on API Gateway).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchboard-sfu: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let address = match own_address(&config.address).await {
            Ok(ip) => ip,
            Err(e) => {
                eprintln!(
                    "switchboard-sfu: ECS_CONTAINER_METADATA_URI_V4 gave no task address: {e}"
                );
                return ExitCode::from(EX_CONFIG);
            }
        };
        match driver::run(config, address).await {
            Exit::Signalled => {
                tracing::info!("signalled: every peer connection closed, exiting");
                ExitCode::SUCCESS
            }
            Exit::Refused {
                after_identified: true,
            } => ExitCode::SUCCESS,
            Exit::Refused {
                after_identified: false,
            } => ExitCode::FAILURE,
            Exit::Failed(why) => {
                eprintln!("switchboard-sfu: {why}");
                ExitCode::FAILURE
            }
        }
    })
}
