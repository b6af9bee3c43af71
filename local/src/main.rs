//! `switchboard-local`: the whole of Switchboard on 127.0.0.1 (see the README).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use switchboard::Clock;
use switchboard::config::{APPLICATIONS, ConfigError, LOCATIONS};
use switchboard_local::dynamodb::{self, DynamoDbLocal};
use switchboard_local::{Stack, StackError, StackOptions};
use tokio::signal::unix::{SignalKind, signal};

/// Switchboard on 127.0.0.1, with no AWS account and no Docker: DynamoDB Local, the tables,
/// the HTTP and WebSocket APIs with @connections, ECS and the sweeper, as template.yaml
/// declares them; each function runs its production code with its own environment and IAM
/// policy from the template.
///
/// Configuration is read from the SWITCHBOARD_* variables (README, "Configuration"); keys
/// and the TURN secret it is not given it generates and prints. SIGINT or SIGTERM stops it
/// and everything it started.
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Args {
    /// Port of the HTTP API on 127.0.0.1 (0: any free port).
    #[arg(long, value_name = "N", default_value_t = 3000)]
    http_port: u16,
    /// Port of the WebSocket API and its @connections endpoint (0: any free port).
    #[arg(long, value_name = "N", default_value_t = 3001)]
    ws_port: u16,
    /// Port of the ECS endpoint (0: any free port).
    #[arg(long, value_name = "N", default_value_t = 3002)]
    ecs_port: u16,
    /// Use this DynamoDB instead of starting DynamoDB Local.
    #[arg(long, value_name = "URL")]
    dynamodb_endpoint: Option<String>,
    /// Run for each ECS task through `sh -c`, as a container: the task's container
    /// environment (plus TASK_IP, its own 127.0.0.x), its command override as "$@", in a
    /// process group of its own. Without it, tasks are only recorded.
    #[arg(long, value_name = "CMD")]
    task_command: Option<String>,
    /// Run instead of --task-command for tasks of the SFU task definition: createRoom's
    /// rooms, the warm rooms and the `sfu` application's sessions (same rules).
    #[arg(long, value_name = "CMD")]
    sfu_command: Option<String>,
    /// Running tasks before RunTask reports capacity failures (default: no limit).
    #[arg(long, value_name = "N")]
    ecs_capacity: Option<usize>,
    /// StopTask's SIGTERM to a task's process group becomes SIGKILL after this long.
    #[arg(long, value_name = "N", default_value_t = 10)]
    task_stop_timeout_seconds: u64,
    /// How often the sweeper runs.
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    sweep_interval_seconds: u64,
    /// The sessions API's images (as SWITCHBOARD_APPLICATIONS; default: the application
    /// `sfu`, the SFU task definition).
    #[arg(long, value_name = "JSON")]
    applications: Option<String>,
    /// The sessions API's locations (as SWITCHBOARD_LOCATIONS; default: one location
    /// `local`, pinging at 127.0.0.1).
    #[arg(long, value_name = "JSON")]
    locations: Option<String>,
    /// template.yaml to serve (tables, routes, each function's environment and IAM).
    #[arg(long, value_name = "PATH")]
    template: Option<PathBuf>,
    /// Tables are named <prefix><LogicalId>.
    #[arg(long, value_name = "P", default_value = "")]
    table_prefix: String,
    /// API Gateway closes a socket idle this long with 1001.
    #[arg(long, value_name = "N", default_value_t = switchboard_local::DEFAULT_WS_IDLE_TIMEOUT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    ws_idle_timeout_seconds: u64,
    /// API Gateway closes every socket this long after it connected with 1001.
    #[arg(long, value_name = "N", default_value_t = switchboard_local::DEFAULT_WS_MAX_CONNECTION_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    ws_max_connection_seconds: u64,
    /// Each WebSocket frame's dispatch first sleeps a random 0..=N ms (makes races likely).
    #[arg(long, value_name = "N", default_value_t = 0)]
    ws_frame_jitter_ms: u64,
    /// Do not check functions' calls against their IAM policies (debugging only: deployed,
    /// IAM holds).
    #[arg(long)]
    no_iam: bool,
}

/// Variables of the repository's scripts and tests, not settings: not reported as unknown.
const TOOL_VARIABLES: [&str; 6] = [
    "SWITCHBOARD_CACHE_DIR",
    "SWITCHBOARD_TURN_PORT",
    "SWITCHBOARD_TEST_LOG",
    "SWITCHBOARD_TEST_DYNAMODB",
    "SWITCHBOARD_LOCAL_BIN",
    "SWITCHBOARD_PIE",
];

fn secret() -> String {
    format!("{}", uuid::Uuid::new_v4().simple())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchboard-local: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A configuration error in one line, naming the flag when a flag gave the setting.
fn describe(error: StackError, args: &Args) -> String {
    let flag_of = |error: &ConfigError| match error.variable() {
        APPLICATIONS if args.applications.is_some() => Some("--applications"),
        LOCATIONS if args.locations.is_some() => Some("--locations"),
        _ => None,
    };
    match &error {
        StackError::Function {
            error: config @ ConfigError::Invalid { reason, .. },
            ..
        }
        | StackError::Config(config @ ConfigError::Invalid { reason, .. }) => match flag_of(config)
        {
            Some(flag) => format!("{flag} is not valid: {reason}"),
            None => error.to_string(),
        },
        _ => error.to_string(),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SWITCHBOARD_"))
        .filter(|(k, _)| !TOOL_VARIABLES.contains(&k.as_str()))
        .collect();
    // A misspelt setting would be silently ignored: say so.
    for (name, closest) in switchboard::config::unknown_variables(vars.keys()) {
        eprintln!(
            "switchboard-local: warning: {}",
            switchboard::config::unknown_variable_warning(&name, closest)
        );
    }
    if let Some(applications) = args.applications.clone() {
        vars.insert(APPLICATIONS.into(), applications);
    }
    if let Some(locations) = args.locations.clone() {
        vars.insert(LOCATIONS.into(), locations);
    }
    // Secrets it is not given, it makes, and says so.
    for (name, what) in [
        (
            "SWITCHBOARD_OPERATOR_KEYS",
            "operator key (createRoom, DELETE /rooms, sessions API)",
        ),
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

    let mut options = StackOptions::new("");
    options.http_port = args.http_port;
    options.ws_port = args.ws_port;
    options.ecs_port = args.ecs_port;
    options.vars = vars;
    options.clock = Clock::system();
    options.task_command = args.task_command.clone();
    options.sfu_command = args.sfu_command.clone();
    options.ecs_capacity = args.ecs_capacity;
    options.task_stop_timeout = std::time::Duration::from_secs(args.task_stop_timeout_seconds);
    options.table_prefix = args.table_prefix.clone();
    options.sweep_interval = Some(std::time::Duration::from_secs(args.sweep_interval_seconds));
    options.ws_idle_timeout = std::time::Duration::from_secs(args.ws_idle_timeout_seconds);
    options.ws_max_connection = std::time::Duration::from_secs(args.ws_max_connection_seconds);
    options.ws_frame_jitter_ms = args.ws_frame_jitter_ms;
    // Only for finding out whether a failure is an IAM one: deployed, IAM holds.
    options.enforce_iam = !args.no_iam;
    if let Some(template) = args.template.clone() {
        options.template = template;
    }

    // A missing or malformed setting is reported now, in one line, before anything starts:
    // every function is configured as the stack will configure it.
    switchboard_local::check_configuration(&options).map_err(|e| describe(e, &args))?;

    let mut owned_dynamodb = None;
    let dynamodb_endpoint = match args.dynamodb_endpoint.clone() {
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
    options.dynamodb_endpoint = dynamodb_endpoint.clone();
    let mut stack = Stack::start(options)
        .await
        .map_err(|e| describe(e, &args))?;

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
