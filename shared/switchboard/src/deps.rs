//! What a handler needs, built once per process.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, Need};
use crate::model::Store;
use crate::sockets::Sockets;

/// Service endpoints that override the SDK's own resolution (the local stack and tests, which
/// may run several stacks in one process). `None` leaves the SDK to its environment
/// (`AWS_ENDPOINT_URL_*`) and defaults, as deployed.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub ecs: Option<String>,
    /// EC2 (DescribeNetworkInterfaces), used only with the `public-addresses` feature.
    pub ec2: Option<String>,
    pub management: Option<String>,
}

/// ECS clients, one per region, each built the first time it is needed.
#[derive(Clone, Debug)]
struct EcsClients {
    sdk: SdkConfig,
    endpoint: Option<String>,
    home: Arc<OnceLock<aws_sdk_ecs::Client>>,
    regions: HashMap<String, Arc<OnceLock<aws_sdk_ecs::Client>>>,
}

impl EcsClients {
    fn new(sdk: &SdkConfig, endpoint: Option<String>, config: &Config) -> Self {
        Self {
            sdk: sdk.clone(),
            endpoint,
            home: Arc::default(),
            regions: config
                .locations
                .values()
                .map(|l| (l.region.clone(), Arc::default()))
                .collect(),
        }
    }

    fn build(&self, region: Option<&str>) -> aws_sdk_ecs::Client {
        let mut ecs = aws_sdk_ecs::config::Builder::from(&self.sdk);
        if let Some(url) = &self.endpoint {
            ecs = ecs.endpoint_url(url);
        }
        if let Some(region) = region {
            ecs = ecs.region(aws_config::Region::new(region.to_string()));
        }
        aws_sdk_ecs::Client::from_conf(ecs.build())
    }
}

#[derive(Clone, Debug)]
pub struct Deps {
    pub config: Config,
    pub store: Store,
    /// ECS clients, built on first use: most functions never call ECS, and a client costs
    /// time at init.
    ecs: EcsClients,
    #[cfg(feature = "public-addresses")]
    ec2: crate::ec2::Ec2,
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
        let ecs = EcsClients::new(sdk, endpoints.ecs.clone(), &config);
        Self {
            store: Store::new(
                aws_sdk_dynamodb::Client::from_conf(dynamo.build()),
                config.tables.clone(),
                clock,
            ),
            ecs,
            #[cfg(feature = "public-addresses")]
            ec2: crate::ec2::Ec2::new(sdk, endpoints.ec2.clone()),
            home_region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            sockets: Sockets::new(
                sdk,
                endpoints.management,
                config.ws_management_endpoint.clone(),
            ),
            config,
        }
    }

    /// The ECS client of the functions' own region (the SFU cluster's).
    pub fn ecs(&self) -> &aws_sdk_ecs::Client {
        self.ecs.home.get_or_init(|| self.ecs.build(None))
    }

    /// The ECS client for a location's region (RunTask goes to that region's cluster).
    pub fn ecs_in(&self, region: &str) -> &aws_sdk_ecs::Client {
        match self.ecs.regions.get(region) {
            Some(client) => client.get_or_init(|| self.ecs.build(Some(region))),
            None => self.ecs(),
        }
    }

    /// The EC2 client (a task's network interface is in its task's region, which each call
    /// names).
    #[cfg(feature = "public-addresses")]
    pub fn ec2(&self) -> &crate::ec2::Ec2 {
        &self.ec2
    }

    /// As deployed: the configuration `needs` read and endpoints from the environment, the
    /// system clock.
    pub async fn from_env(needs: &[Need]) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let config = Config::from_vars(&vars, needs)?;
        for (name, closest) in crate::config::unknown_variables(vars.keys()) {
            tracing::warn!(
                "{}",
                crate::config::unknown_variable_warning(&name, closest)
            );
        }
        // Compiled-in roots instead of the system's CA store, read and parsed at init.
        let http = match crate::tls::https_client(crate::tls::trust_store(
            crate::tls::aws_endpoints_only(&vars),
        )) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(error = %e, "using the SDK's default HTTPS client");
                None
            }
        };
        let sdk = match (lambda_environment(&vars), http) {
            (Some((region, credentials)), Some(http)) => SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(region)
                .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                    credentials,
                ))
                .http_client(http)
                .build(),
            (_, http) => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(http) = http {
                    loader = loader.http_client(http);
                }
                loader.load().await
            }
        };
        Ok(Self::new(
            config,
            Clock::system(),
            &sdk,
            Endpoints::default(),
        ))
    }
}

/// Variables Lambda itself sets, which the SDK's configuration loader does not act on beyond
/// region and credentials.
const LAMBDA_VARIABLES: [&str; 5] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// As Lambda starts a function: region and the execution role's credentials in the
/// environment, and nothing else for the SDK's loader to resolve (no endpoint overrides,
/// profiles, retry or FIPS settings, container credentials). Then the SDK configuration is
/// built directly from them, without the loader's provider chains and profile files (a third
/// of a function's init). `None` otherwise: the full loader runs.
fn lambda_environment(
    vars: &HashMap<String, String>,
) -> Option<(aws_config::Region, aws_sdk_dynamodb::config::Credentials)> {
    let region = vars.get("AWS_REGION").filter(|r| !r.is_empty())?;
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        vars.get("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty())?,
        vars.get("AWS_SECRET_ACCESS_KEY")
            .filter(|v| !v.is_empty())?,
        vars.get("AWS_SESSION_TOKEN").cloned(),
        None,
        "Environment",
    );
    let only_lambdas = vars.keys().filter(|k| k.starts_with("AWS_")).all(|k| {
        LAMBDA_VARIABLES.contains(&k.as_str())
            || k.starts_with("AWS_LAMBDA_")
            || k.starts_with("AWS_XRAY_")
            || k == "AWS_EXECUTION_ENV"
    });
    only_lambdas.then(|| (aws_config::Region::new(region.clone()), credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_vars as vars;

    const LAMBDA: [(&str, &str); 6] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
        ("AWS_LAMBDA_FUNCTION_NAME", "find-match"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_rust"),
    ];

    #[test]
    fn lambdas_environment_is_read_directly() {
        let (region, credentials) = lambda_environment(&vars(&LAMBDA)).expect("direct");
        assert_eq!(region.as_ref(), "eu-west-1");
        assert_eq!(credentials.access_key_id(), "AKID");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("token"));
    }

    /// The directly built configuration signs and sends requests (here to a listener that
    /// records the first one).
    #[tokio::test]
    async fn the_direct_configuration_signs_requests() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (region, credentials) = lambda_environment(&vars(&LAMBDA)).unwrap();
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(url)
                .build(),
        );
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let read = stream.read(&mut request).await.unwrap();
            let body = "{}";
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..read]).to_lowercase()
        });
        let _ = client.list_tables().send().await;
        let request = server.await.unwrap();
        assert!(
            request.contains("authorization: aws4-hmac-sha256 credential=akid/"),
            "{request}"
        );
        assert!(request.contains("x-amz-security-token: token"), "{request}");
        assert!(request.contains("/eu-west-1/dynamodb/"), "{request}");
    }

    #[test]
    fn anything_else_for_the_sdk_takes_the_full_loader() {
        for extra in [
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_PROFILE", "dev"),
            ("AWS_MAX_ATTEMPTS", "5"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1/creds",
            ),
        ] {
            let mut env = vars(&LAMBDA);
            env.insert(extra.0.into(), extra.1.into());
            assert!(lambda_environment(&env).is_none(), "{extra:?}");
        }
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let mut env = vars(&LAMBDA);
            env.remove(missing);
            assert!(lambda_environment(&env).is_none(), "{missing}");
        }
    }
}
