//! Switchboard's shared library: everything two functions need lives here once.

#[cfg(feature = "public-addresses")]
pub mod addresses;
pub mod apps;
pub mod clock;
pub mod config;
pub mod deps;
#[cfg(feature = "public-addresses")]
pub mod ec2;
pub mod ecs;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod sessions;
pub mod signaling;
pub mod sockets;
pub mod tls;
pub mod turn;
pub mod validate;

pub use clock::Clock;
pub use config::{Config, Need};
pub use deps::{Deps, Endpoints};
pub use error::ApiError;

/// Start-up shared by every function's `main`: tracing, then configuration (exactly what the
/// function `needs`, its crate's `NEEDS`) and clients, once. A missing or malformed setting
/// ends the process here, before the runtime asks for its first event, with one line naming
/// the setting (Lambda reports the init failure with it). A `SWITCHBOARD_*` name no function
/// reads is logged as a warning (a misspelt setting would otherwise be silently ignored).
pub async fn init(needs: &[Need]) -> Result<Deps, lambda_runtime::Error> {
    init_logging();
    match Deps::from_env(needs).await {
        Ok(deps) => Ok(deps),
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::exit(78); // EX_CONFIG
        }
    }
}

/// Log lines to stdout (CloudWatch) at the level `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` names
/// (`info` by default). A plain level filter, not the runtime's `EnvFilter`: compiling that
/// filter's directives was half of a function's start-up beyond a hello world's (the cold-start
/// benchmark). Per-target directives (`info,aws_config=warn`) are not read; a value that is not
/// a level means `info`. With Lambda's JSON log format (`AWS_LAMBDA_LOG_FORMAT=JSON`, which the
/// template's `LoggingConfig` sets), each line is one JSON object (see `json_logs`).
fn init_logging() {
    use tracing::level_filters::LevelFilter;
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .and_then(|value| value.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let _ = tracing::subscriber::set_global_default(json_logs(level, std::io::stdout));
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .try_init();
}

/// The functions' JSON log lines: one object per event with `timestamp`, `level`, `message`,
/// the event's fields (ids, outcome) and the request's span (`route`, and `connection` on the
/// signaling socket). Tests capture them with their own writer.
pub fn json_logs<W>(
    level: tracing::level_filters::LevelFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(level)
        .with_writer(writer)
        .finish()
}

/// An environment for unit tests, from name-value pairs.
#[cfg(test)]
pub(crate) fn test_vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
