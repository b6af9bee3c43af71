//! What a handler needs, built once per process.

use std::collections::HashMap;

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
    /// ECS clients for the sessions API's locations, by AWS region.
    ecs_by_region: HashMap<String, aws_sdk_ecs::Client>,
    /// The region the functions run in (the SFU cluster's).
    pub home_region: String,
    pub sockets: Sockets,
}

impl Deps {
    pub fn new(config: Config, clock: Clock, sdk: &SdkConfig, endpoints: Endpoints) -> Self {
        let mut dynamo = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &endpoints.dynamodb {
            dynamo = dynamo.endpoint_url(url);
        }
        let ecs_in = |region: Option<&str>| {
            let mut ecs = aws_sdk_ecs::config::Builder::from(sdk);
            if let Some(url) = &endpoints.ecs {
                ecs = ecs.endpoint_url(url);
            }
            if let Some(region) = region {
                ecs = ecs.region(aws_config::Region::new(region.to_string()));
            }
            aws_sdk_ecs::Client::from_conf(ecs.build())
        };
        let ecs_by_region = config
            .locations
            .values()
            .map(|l| (l.region.clone(), ecs_in(Some(&l.region))))
            .collect();
        Self {
            store: Store::new(
                aws_sdk_dynamodb::Client::from_conf(dynamo.build()),
                config.tables.clone(),
                clock,
            ),
            ecs: ecs_in(None),
            ecs_by_region,
            home_region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            sockets: Sockets::new(
                sdk,
                endpoints.management,
                config.ws_management_endpoint.clone(),
            ),
            config,
        }
    }

    /// The ECS client for a location's region (RunTask goes to that region's cluster).
    pub fn ecs_in(&self, region: &str) -> &aws_sdk_ecs::Client {
        self.ecs_by_region.get(region).unwrap_or(&self.ecs)
    }

    /// As deployed: configuration and endpoints from the environment, the system clock.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws_config::load_from_env().await;
        Ok(Self::new(
            config,
            Clock::system(),
            &sdk,
            Endpoints::default(),
        ))
    }
}
