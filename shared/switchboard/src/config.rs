//! Configuration, read once at start-up from the environment (README, "Configuration").

use std::collections::{BTreeMap, HashMap};

use crate::apps::{self, Application, Location};

use thiserror::Error;

pub const DEFAULT_REGIONS: &str = "us-east-1,us-west-1,eu-central,local";

/// Upper bound of `SWITCHBOARD_WARM_ROOMS`: a typo must not start a thousand tasks.
pub const MAX_WARM_ROOMS: u32 = 100;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Table names, one variable per table.
#[derive(Clone, Debug)]
pub struct Tables {
    pub rooms: String,
    pub paths: String,
    pub hosts: String,
    pub connections: String,
    pub members: String,
    pub sessions: String,
    pub players: String,
}

impl Tables {
    /// The environment variable that names each table, keyed by its logical id in template.yaml.
    pub const VARIABLES: [(&'static str, &'static str); 7] = [
        ("RoomsTable", "SWITCHBOARD_ROOMS_TABLE"),
        ("PathsTable", "SWITCHBOARD_PATHS_TABLE"),
        ("HostsTable", "SWITCHBOARD_HOSTS_TABLE"),
        ("ConnectionsTable", "SWITCHBOARD_CONNECTIONS_TABLE"),
        ("MembersTable", "SWITCHBOARD_MEMBERS_TABLE"),
        ("SessionsTable", "SWITCHBOARD_SESSIONS_TABLE"),
        ("PlayersTable", "SWITCHBOARD_PLAYERS_TABLE"),
    ];

    /// Tables named `<prefix><LogicalId>`, as the local stack creates them.
    pub fn with_prefix(prefix: &str) -> Self {
        let name = |logical: &str| format!("{prefix}{logical}");
        Self {
            rooms: name("RoomsTable"),
            paths: name("PathsTable"),
            hosts: name("HostsTable"),
            connections: name("ConnectionsTable"),
            members: name("MembersTable"),
            sessions: name("SessionsTable"),
            players: name("PlayersTable"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EcsSettings {
    pub cluster: String,
    pub task_definition: String,
    pub container: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// Its `Debug` output names the secrets' presence only (keys, TURN secret): see below.
#[derive(Clone)]
pub struct Config {
    pub tables: Tables,
    pub regions: Vec<String>,
    pub host_keys: Vec<String>,
    pub operator_keys: Vec<String>,
    pub host_ttl_seconds: i64,
    pub match_lease_seconds: i64,
    pub turn_secret: Option<String>,
    pub turn_urls: Vec<String>,
    pub stun_urls: Vec<String>,
    pub turn_ttl_seconds: i64,
    pub ws_url: Option<String>,
    pub ws_management_endpoint: Option<String>,
    pub ecs: Option<EcsSettings>,
    pub allowed_origins: Vec<String>,
    /// A server that never identified is ended after this (README, "Server lifecycle").
    pub start_timeout_seconds: i64,
    /// A server whose socket is gone may identify again within this and keep its room.
    pub reconnect_grace_seconds: i64,
    /// SFU rooms kept starting or ready and unclaimed.
    pub warm_rooms: u32,
    /// The first identify of a still-`starting` room may omit the token (stock Arbiter SFU).
    pub sfu_token_optional: bool,
    /// Sessions API: images and where they run.
    pub applications: BTreeMap<String, Application>,
    pub locations: BTreeMap<String, Location>,
    /// How long POST /session waits for a cold task's address.
    pub session_wait_seconds: i64,
    /// Identified clients a room holds at most (`SWITCHBOARD_MAX_ROOM_MEMBERS`).
    pub max_room_members: i64,
}

/// Secrets appear in no `Debug` output (nor in any response or log line): keys are counted, the TURN
/// secret is only said to be set.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |keys: &[String]| format!("<{} redacted>", keys.len());
        f.debug_struct("Config")
            .field("tables", &self.tables)
            .field("regions", &self.regions)
            .field("host_keys", &redacted(&self.host_keys))
            .field("operator_keys", &redacted(&self.operator_keys))
            .field("host_ttl_seconds", &self.host_ttl_seconds)
            .field("match_lease_seconds", &self.match_lease_seconds)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("turn_urls", &self.turn_urls)
            .field("stun_urls", &self.stun_urls)
            .field("turn_ttl_seconds", &self.turn_ttl_seconds)
            .field("ws_url", &self.ws_url)
            .field("ws_management_endpoint", &self.ws_management_endpoint)
            .field("ecs", &self.ecs)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_room_members", &self.max_room_members)
            .field("start_timeout_seconds", &self.start_timeout_seconds)
            .field("reconnect_grace_seconds", &self.reconnect_grace_seconds)
            .field("warm_rooms", &self.warm_rooms)
            .field("sfu_token_optional", &self.sfu_token_optional)
            .field(
                "applications",
                &self.applications.keys().collect::<Vec<_>>(),
            )
            .field("locations", &self.locations.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the configuration from a map of variables (the environment, or a test's own).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let list = |name: &str| get(name).map(|v| split_list(&v)).unwrap_or_default();
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let positive =
            |name: &'static str, default: i64, unit: &str| -> Result<i64, ConfigError> {
                match get(name) {
                    None => Ok(default),
                    Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        ConfigError::Invalid {
                            name,
                            reason: format!("{v:?} is not a positive number of {unit}"),
                        }
                    }),
                }
            };
        let seconds = |name: &'static str, default: i64| positive(name, default, "seconds");

        let tables = Tables {
            rooms: required("SWITCHBOARD_ROOMS_TABLE")?,
            paths: required("SWITCHBOARD_PATHS_TABLE")?,
            hosts: required("SWITCHBOARD_HOSTS_TABLE")?,
            connections: required("SWITCHBOARD_CONNECTIONS_TABLE")?,
            members: required("SWITCHBOARD_MEMBERS_TABLE")?,
            sessions: required("SWITCHBOARD_SESSIONS_TABLE")?,
            players: required("SWITCHBOARD_PLAYERS_TABLE")?,
        };
        let regions = match get("SWITCHBOARD_REGIONS") {
            Some(v) => split_list(&v),
            None => split_list(DEFAULT_REGIONS),
        };
        if let Some(bad) = regions.iter().find(|r| !is_region_name(r)) {
            return Err(ConfigError::Invalid {
                name: "SWITCHBOARD_REGIONS",
                reason: format!(
                    "{bad:?} is not a region name (letters, digits, '-' and '_', at most 64)"
                ),
            });
        }
        let urls = |name: &'static str, schemes: &[&str]| -> Result<Vec<String>, ConfigError> {
            let values = list(name);
            match values.iter().find(|u| {
                !schemes
                    .iter()
                    .any(|s| u.starts_with(s) && u.len() > s.len())
            }) {
                None => Ok(values),
                Some(bad) => Err(ConfigError::Invalid {
                    name,
                    reason: format!("{bad:?} does not start with {}", schemes.join(" or ")),
                }),
            }
        };
        let turn_urls = urls("SWITCHBOARD_TURN_URLS", &["turn:", "turns:"])?;
        let stun_urls = urls("SWITCHBOARD_STUN_URLS", &["stun:", "stuns:"])?;
        let turn_secret = get("SWITCHBOARD_TURN_SECRET");
        if !turn_urls.is_empty() && turn_secret.is_none() {
            // TURN servers without credentials would silently be left out of iceServers.
            return Err(ConfigError::Missing("SWITCHBOARD_TURN_SECRET"));
        }
        let ws_url = match get("SWITCHBOARD_WS_URL") {
            Some(url) if !(url.starts_with("ws://") || url.starts_with("wss://")) => {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_WS_URL",
                    reason: format!("{url:?} is not a ws:// or wss:// URL"),
                });
            }
            other => other,
        };
        let ecs = match get("SWITCHBOARD_ECS_CLUSTER") {
            None => None,
            Some(cluster) => Some(EcsSettings {
                cluster,
                task_definition: required("SWITCHBOARD_ECS_TASK_DEFINITION")?,
                container: get("SWITCHBOARD_ECS_CONTAINER").unwrap_or_else(|| "sfu".into()),
                subnets: list("SWITCHBOARD_ECS_SUBNETS"),
                security_groups: list("SWITCHBOARD_ECS_SECURITY_GROUPS"),
                assign_public_ip: match get("SWITCHBOARD_ECS_ASSIGN_PUBLIC_IP").as_deref() {
                    None | Some("ENABLED") => true,
                    Some("DISABLED") => false,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            name: "SWITCHBOARD_ECS_ASSIGN_PUBLIC_IP",
                            reason: format!("{other:?} is neither ENABLED nor DISABLED"),
                        });
                    }
                },
            }),
        };
        let warm_rooms = match get("SWITCHBOARD_WARM_ROOMS") {
            None => 0,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_WARM_ROOMS)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "SWITCHBOARD_WARM_ROOMS",
                    reason: format!("{v:?} is not a number from 0 to {MAX_WARM_ROOMS}"),
                })?,
        };
        let sfu_token_optional = match get("SWITCHBOARD_SFU_TOKEN_OPTIONAL").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_SFU_TOKEN_OPTIONAL",
                    reason: format!("{other:?} is neither true nor false"),
                });
            }
        };
        let locations = match get("SWITCHBOARD_LOCATIONS") {
            Some(raw) => apps::parse_locations(&raw)?,
            None => BTreeMap::new(),
        };
        let applications = match get("SWITCHBOARD_APPLICATIONS") {
            Some(raw) => apps::parse_applications(&raw, &locations)?,
            None => BTreeMap::new(),
        };
        let allowed_origins = match get("SWITCHBOARD_ALLOWED_ORIGINS") {
            Some(v) => split_list(&v),
            None => vec!["*".to_string()],
        };
        if let Some(bad) = allowed_origins
            .iter()
            .find(|o| *o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(ConfigError::Invalid {
                name: "SWITCHBOARD_ALLOWED_ORIGINS",
                reason: format!("{bad:?} is neither * nor an http(s):// origin"),
            });
        }
        Ok(Self {
            tables,
            regions,
            host_keys: list("SWITCHBOARD_HOST_KEYS"),
            operator_keys: list("SWITCHBOARD_OPERATOR_KEYS"),
            host_ttl_seconds: seconds("SWITCHBOARD_HOST_TTL_SECONDS", 30)?,
            match_lease_seconds: seconds("SWITCHBOARD_MATCH_LEASE_SECONDS", 20)?,
            turn_secret,
            turn_urls,
            stun_urls,
            turn_ttl_seconds: seconds("SWITCHBOARD_TURN_TTL_SECONDS", 86_400)?,
            ws_url,
            ws_management_endpoint: get("SWITCHBOARD_WS_MANAGEMENT_ENDPOINT"),
            ecs,
            allowed_origins,
            start_timeout_seconds: seconds("SWITCHBOARD_START_TIMEOUT_SECONDS", 600)?,
            reconnect_grace_seconds: seconds("SWITCHBOARD_RECONNECT_GRACE_SECONDS", 30)?,
            warm_rooms,
            sfu_token_optional,
            applications,
            locations,
            session_wait_seconds: seconds("SWITCHBOARD_SESSION_WAIT_SECONDS", 20)?,
            max_room_members: positive("SWITCHBOARD_MAX_ROOM_MEMBERS", 50, "members")?,
        })
    }
}

/// A region as `SWITCHBOARD_REGIONS` names it (`us-east-1`, `eu-central`, `local`).
fn is_region_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = Tables::VARIABLES
            .iter()
            .map(|(logical, variable)| (variable.to_string(), logical.to_string()))
            .collect();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(
            config.regions,
            ["us-east-1", "us-west-1", "eu-central", "local"]
        );
        assert_eq!(
            (
                config.host_ttl_seconds,
                config.match_lease_seconds,
                config.turn_ttl_seconds
            ),
            (30, 20, 86_400)
        );
        assert_eq!(config.allowed_origins, ["*"]);
        assert_eq!(config.max_room_members, 50);
        assert!(
            config.operator_keys.is_empty() && config.host_keys.is_empty() && config.ecs.is_none()
        );
    }

    #[test]
    fn debug_output_has_no_keys_or_turn_secret() {
        let config = Config::from_vars(&vars(&[
            (
                "SWITCHBOARD_HOST_KEYS",
                "host-key-secret-1,host-key-secret-2",
            ),
            ("SWITCHBOARD_OPERATOR_KEYS", "operator-key-secret"),
            ("SWITCHBOARD_TURN_SECRET", "turn-secret-value"),
        ]))
        .unwrap();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let deps = crate::Deps::new(
            config.clone(),
            crate::Clock::system(),
            &sdk,
            crate::Endpoints::default(),
        );
        for debug in [format!("{config:?}"), format!("{deps:?}")] {
            assert!(debug.contains("RoomsTable"), "{debug}");
            for secret in [
                "host-key-secret",
                "operator-key-secret",
                "turn-secret-value",
            ] {
                assert!(!debug.contains(secret), "{secret} in {debug}");
            }
        }
    }

    #[test]
    fn lists_and_numbers_are_parsed_and_checked() {
        let config = Config::from_vars(&vars(&[
            ("SWITCHBOARD_HOST_KEYS", " a, b ,,"),
            ("SWITCHBOARD_MATCH_LEASE_SECONDS", "5"),
            ("SWITCHBOARD_ECS_CLUSTER", "c"),
            ("SWITCHBOARD_ECS_TASK_DEFINITION", "td"),
            ("SWITCHBOARD_ECS_SUBNETS", "s1,s2"),
            ("SWITCHBOARD_ECS_ASSIGN_PUBLIC_IP", "DISABLED"),
        ]))
        .unwrap();
        assert_eq!(config.host_keys, ["a", "b"]);
        assert_eq!(config.match_lease_seconds, 5);
        let ecs = config.ecs.unwrap();
        assert_eq!(
            (
                ecs.subnets.len(),
                ecs.assign_public_ip,
                ecs.container.as_str()
            ),
            (2, false, "sfu")
        );

        assert_eq!(
            Config::from_vars(&vars(&[("SWITCHBOARD_MAX_ROOM_MEMBERS", "8")]))
                .unwrap()
                .max_room_members,
            8
        );
        for bad in ["0", "-1", "many"] {
            let error =
                Config::from_vars(&vars(&[("SWITCHBOARD_MAX_ROOM_MEMBERS", bad)])).unwrap_err();
            assert!(
                error.to_string().contains("SWITCHBOARD_MAX_ROOM_MEMBERS"),
                "{error}"
            );
        }
        let error =
            Config::from_vars(&vars(&[("SWITCHBOARD_HOST_TTL_SECONDS", "soon")])).unwrap_err();
        assert!(
            error.to_string().contains("SWITCHBOARD_HOST_TTL_SECONDS"),
            "{error}"
        );
        let mut missing = vars(&[]);
        missing.remove("SWITCHBOARD_HOSTS_TABLE");
        assert!(
            Config::from_vars(&missing)
                .unwrap_err()
                .to_string()
                .contains("SWITCHBOARD_HOSTS_TABLE")
        );
        for (name, bad) in [
            ("SWITCHBOARD_REGIONS", "local,us east"),
            ("SWITCHBOARD_TURN_URLS", "127.0.0.1:3478"),
            ("SWITCHBOARD_STUN_URLS", "turn:x"),
            ("SWITCHBOARD_WS_URL", "http://127.0.0.1:3001"),
            ("SWITCHBOARD_ALLOWED_ORIGINS", "example.com"),
            ("SWITCHBOARD_TURN_TTL_SECONDS", "1e3"),
        ] {
            let error = Config::from_vars(&vars(&[(name, bad)])).unwrap_err();
            assert!(error.to_string().contains(name), "{name}={bad}: {error}");
            assert_eq!(error.to_string().lines().count(), 1, "{error}");
        }
        let error = Config::from_vars(&vars(&[("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478")]))
            .unwrap_err();
        assert!(
            error.to_string().contains("SWITCHBOARD_TURN_SECRET"),
            "TURN URLs need the secret: {error}"
        );
        let error = Config::from_vars(&vars(&[("SWITCHBOARD_ECS_CLUSTER", "c")])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("SWITCHBOARD_ECS_TASK_DEFINITION"),
            "{error}"
        );
    }
}
