//! `switchboard-local`: the whole of Switchboard on 127.0.0.1 (see the README).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use switchboard::Clock;
use switchboard_local::dynamodb::{self, DynamoDbLocal};
use switchboard_local::{Stack, StackOptions};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: switchboard-local [--http-port N] [--ws-port N] [--ecs-port N] \
[--dynamodb-endpoint URL] [--task-command CMD] [--ecs-capacity N] [--sweep-interval-seconds N] \
[--task-stop-timeout-seconds N] [--applications JSON] [--locations JSON] [--template PATH] [--table-prefix P] \
[--ws-idle-timeout-seconds N] [--ws-max-connection-seconds N] [--ws-frame-jitter-ms N] [--no-iam]";

struct Args {
    http_port: u16,
    ws_port: u16,
    ecs_port: u16,
    dynamodb_endpoint: Option<String>,
    task_command: Option<String>,
    ecs_capacity: Option<usize>,
    sweep_interval_seconds: u64,
    task_stop_timeout_seconds: u64,
    template: Option<PathBuf>,
    table_prefix: String,
    applications: Option<String>,
    locations: Option<String>,
    ws_idle_timeout_seconds: u64,
    ws_max_connection_seconds: u64,
    ws_frame_jitter_ms: u64,
    enforce_iam: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        http_port: 3000,
        ws_port: 3001,
        ecs_port: 3002,
        dynamodb_endpoint: None,
        task_command: None,
        ecs_capacity: None,
        sweep_interval_seconds: 60,
        task_stop_timeout_seconds: 10,
        template: None,
        table_prefix: String::new(),
        applications: None,
        locations: None,
        ws_idle_timeout_seconds: switchboard_local::DEFAULT_WS_IDLE_TIMEOUT_SECONDS,
        ws_max_connection_seconds: switchboard_local::DEFAULT_WS_MAX_CONNECTION_SECONDS,
        ws_frame_jitter_ms: 0,
        enforce_iam: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        if flag == "--no-iam" {
            // Only for finding out whether a failure is an IAM one: deployed, IAM holds.
            args.enforce_iam = false;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0 || flag == "--ws-frame-jitter-ms")
                .ok_or_else(|| format!("{flag}: {v:?} is not a positive number"))
        };
        let port = |v: &str| {
            v.parse::<u16>()
                .map_err(|_| format!("{flag}: {v:?} is not a port"))
        };
        match flag.as_str() {
            "--http-port" => args.http_port = port(&value)?,
            "--ws-port" => args.ws_port = port(&value)?,
            "--ecs-port" => args.ecs_port = port(&value)?,
            "--dynamodb-endpoint" => args.dynamodb_endpoint = Some(value),
            "--task-command" => args.task_command = Some(value),
            "--ecs-capacity" => {
                args.ecs_capacity = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--ecs-capacity: {value:?} is not a number"))?,
                )
            }
            "--sweep-interval-seconds" => {
                args.sweep_interval_seconds =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--sweep-interval-seconds: {value:?} is not a positive number")
                    })?
            }
            "--task-stop-timeout-seconds" => {
                args.task_stop_timeout_seconds = value.parse().map_err(|_| {
                    format!("--task-stop-timeout-seconds: {value:?} is not a number")
                })?
            }
            // The sessions API's images and locations (else SWITCHBOARD_APPLICATIONS and
            // SWITCHBOARD_LOCATIONS, else one location `local` and the application `sfu`).
            "--applications" => args.applications = Some(value),
            "--locations" => args.locations = Some(value),
            "--template" => args.template = Some(PathBuf::from(value)),
            "--table-prefix" => args.table_prefix = value,
            "--ws-idle-timeout-seconds" => args.ws_idle_timeout_seconds = number(&value)?,
            "--ws-max-connection-seconds" => args.ws_max_connection_seconds = number(&value)?,
            "--ws-frame-jitter-ms" => args.ws_frame_jitter_ms = number(&value)?,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn secret() -> String {
    format!("{}", uuid::Uuid::new_v4().simple())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchboard-local: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SWITCHBOARD_"))
        .collect();
    if let Some(applications) = args.applications.clone() {
        vars.insert("SWITCHBOARD_APPLICATIONS".into(), applications);
    }
    if let Some(locations) = args.locations.clone() {
        vars.insert("SWITCHBOARD_LOCATIONS".into(), locations);
    }
    // Secrets it is not given, it makes, and says so.
    for (name, what) in [
        ("SWITCHBOARD_OPERATOR_KEYS", "operator key (createRoom)"),
        ("SWITCHBOARD_HOST_KEYS", "host key (heartbeat, status)"),
        (
            "SWITCHBOARD_TURN_SECRET",
            "TURN secret (coturn static-auth-secret)",
        ),
    ] {
        if vars.get(name).is_none_or(|v| v.trim().is_empty()) {
            let value = secret();
            println!("generated {what}: {name}={value}");
            vars.insert(name.to_string(), value);
        }
    }

    // A missing or malformed setting is reported now, in one line, before anything starts.
    let mut checked = vars.clone();
    for (logical, variable) in switchboard::config::Tables::VARIABLES {
        checked.insert(
            variable.to_string(),
            format!("{}{logical}", args.table_prefix),
        );
    }
    checked
        .entry("SWITCHBOARD_WS_URL".into())
        .or_insert_with(|| format!("ws://127.0.0.1:{}", args.ws_port));
    switchboard::Config::from_vars(&checked).map_err(|e| e.to_string())?;

    let mut owned_dynamodb = None;
    let dynamodb_endpoint = match args.dynamodb_endpoint {
        Some(url) => url,
        None => {
            let jar_dir =
                dynamodb::ensure_installed(&dynamodb::cache_dir()).map_err(|e| e.to_string())?;
            let port = dynamodb::free_port().map_err(|e| e.to_string())?;
            let local = DynamoDbLocal::start(&jar_dir, port).map_err(|e| e.to_string())?;
            local.wait_ready().await.map_err(|e| e.to_string())?;
            let endpoint = local.endpoint.clone();
            owned_dynamodb = Some(local);
            endpoint
        }
    };

    let mut options = StackOptions::new(&dynamodb_endpoint);
    options.http_port = args.http_port;
    options.ws_port = args.ws_port;
    options.ecs_port = args.ecs_port;
    options.vars = vars;
    options.clock = Clock::system();
    options.task_command = args.task_command;
    options.ecs_capacity = args.ecs_capacity;
    options.task_stop_timeout = std::time::Duration::from_secs(args.task_stop_timeout_seconds);
    options.table_prefix = args.table_prefix;
    options.sweep_interval = Some(std::time::Duration::from_secs(args.sweep_interval_seconds));
    options.ws_idle_timeout = std::time::Duration::from_secs(args.ws_idle_timeout_seconds);
    options.ws_max_connection = std::time::Duration::from_secs(args.ws_max_connection_seconds);
    options.ws_frame_jitter_ms = args.ws_frame_jitter_ms;
    options.enforce_iam = args.enforce_iam;
    if let Some(template) = args.template {
        options.template = template;
    }
    let mut stack = Stack::start(options).await.map_err(|e| e.to_string())?;

    println!("demo {}/demo/", stack.http_url);
    if let Some(host_key) = stack.deps.config.host_keys.first() {
        println!(
            "demo host (open in one tab): {}/demo/host.html#hostKey={host_key}",
            stack.http_url
        );
    }
    println!(
        "demo viewer (open in another): {}/demo/viewer.html",
        stack.http_url
    );
    println!(
        "ready http={} ws={} ecs={} dynamodb={dynamodb_endpoint}",
        stack.http_url, stack.ws_url, stack.ecs_url
    );

    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    eprintln!("switchboard-local: stopping");
    stack.stop();
    if let Some(mut local) = owned_dynamodb {
        local.stop();
    }
    Ok(())
}
