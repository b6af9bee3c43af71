//! What a handler needs, built once per process.

use aws_config::SdkConfig;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::model::Store;
use crate::sockets::Sockets;

/// Service endpoints that override the SDK's own resolution (the local stack and tests, which
/// may run several stacks in one process). `None` leaves the SDK to its environment
/// (`AWS_ENDPOINT_URL_*`) and defaults, as deployed.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub ecs: Option<String>,
    pub management: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Deps {
    pub config: Config,
    pub store: Store,
    pub ecs: aws_sdk_ecs::Client,
    pub sockets: Sockets,
}

impl Deps {
    pub fn new(config: Config, clock: Clock, sdk: &SdkConfig, endpoints: Endpoints) -> Self {
        let mut dynamo = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &endpoints.dynamodb {
            dynamo = dynamo.endpoint_url(url);
        }
        let mut ecs = aws_sdk_ecs::config::Builder::from(sdk);
        if let Some(url) = &endpoints.ecs {
            ecs = ecs.endpoint_url(url);
        }
        Self {
            store: Store::new(
                aws_sdk_dynamodb::Client::from_conf(dynamo.build()),
                config.tables.clone(),
                clock,
            ),
            ecs: aws_sdk_ecs::Client::from_conf(ecs.build()),
            sockets: Sockets::new(
                sdk,
                endpoints.management,
                config.ws_management_endpoint.clone(),
            ),
            config,
        }
    }

    /// As deployed: configuration and endpoints from the environment, the system clock.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
        let config = Config::from_vars(&vars)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        // Compiled-in roots instead of the system's CA store, read and parsed at init.
        match crate::tls::https_client(crate::tls::trust_store(
            crate::tls::aws_endpoints_only(&vars),
        )) {
            Ok(client) => loader = loader.http_client(client),
            Err(e) => tracing::warn!(error = %e, "using the SDK's default HTTPS client"),
        }
        let sdk = loader.load().await;
        Ok(Self::new(
            config,
            Clock::system(),
            &sdk,
            Endpoints::default(),
        ))
    }
}
