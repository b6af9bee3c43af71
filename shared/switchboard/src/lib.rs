//! Switchboard's shared library: everything two functions need lives here once.

pub mod apps;
pub mod clock;
pub mod config;
pub mod deps;
pub mod ecs;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod model;
pub mod sessions;
pub mod signaling;
pub mod sockets;
pub mod tls;
pub mod turn;
pub mod validate;

pub use clock::Clock;
pub use config::Config;
pub use deps::{Deps, Endpoints};
pub use error::ApiError;

/// Start-up shared by every function's `main`: tracing, then configuration and clients, once.
/// A missing or malformed setting ends the process here, before the runtime asks for its
/// first event, with one line naming the setting (Lambda reports the init failure with it).
pub async fn init() -> Result<Deps, lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    match Deps::from_env().await {
        Ok(deps) => Ok(deps),
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::exit(78); // EX_CONFIG
        }
    }
}
