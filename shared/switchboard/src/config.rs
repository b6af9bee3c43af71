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

impl ConfigError {
    /// The variable the error is about.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Missing(name) | Self::Invalid { name, .. } => name,
        }
    }
}

/// What a function reads from its environment besides its tables, which every function reads.
/// Each function declares its needs (`NEEDS` in its crate); `switchboard::init` reads and
/// checks exactly those variables, and template.yaml gives each function exactly them (a test
/// holds the two together). A variable a function does not need is never read by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// heartbeat and status's bearer keys.
    HostKeys,
    /// The operator key of createRoom, DELETE /rooms and the sessions API.
    OperatorKeys,
    /// Regions heartbeat and find-match accept.
    Regions,
    /// heartbeat's host liveness.
    HostTtl,
    /// find-match's reservation lease.
    MatchLease,
    /// ICE servers with TURN credentials (answers and SFU tasks' `RTC_CONFIG`).
    Ice,
    /// The signaling URL given to clients and to every task.
    SignalingUrl,
    /// Posting to sockets (the management endpoint; a gone serving peer's reconnect grace).
    Sockets,
    /// Running and stopping SFU tasks (createRoom's cluster, task definition and network).
    SfuTasks,
    /// The SFU warm pool's size.
    WarmRooms,
    /// Launching servers: how long one may take to identify.
    StartTimeout,
    /// The sessions API's applications and locations.
    Sessions,
    /// How long POST /session waits for a cold task's address.
    SessionWait,
    /// identify's room size and the SFU token rule.
    Identify,
}

impl Need {
    pub const ALL: [Need; 14] = [
        Need::HostKeys,
        Need::OperatorKeys,
        Need::Regions,
        Need::HostTtl,
        Need::MatchLease,
        Need::Ice,
        Need::SignalingUrl,
        Need::Sockets,
        Need::SfuTasks,
        Need::WarmRooms,
        Need::StartTimeout,
        Need::Sessions,
        Need::SessionWait,
        Need::Identify,
    ];

    /// The variables this need reads.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Need::HostKeys => &["SWITCHBOARD_HOST_KEYS"],
            Need::OperatorKeys => &["SWITCHBOARD_OPERATOR_KEYS"],
            Need::Regions => &["SWITCHBOARD_REGIONS"],
            Need::HostTtl => &["SWITCHBOARD_HOST_TTL_SECONDS"],
            Need::MatchLease => &["SWITCHBOARD_MATCH_LEASE_SECONDS"],
            Need::Ice => &[
                "SWITCHBOARD_TURN_SECRET",
                "SWITCHBOARD_TURN_URLS",
                "SWITCHBOARD_STUN_URLS",
                "SWITCHBOARD_TURN_TTL_SECONDS",
            ],
            Need::SignalingUrl => &["SWITCHBOARD_WS_URL"],
            Need::Sockets => &[
                "SWITCHBOARD_WS_MANAGEMENT_ENDPOINT",
                "SWITCHBOARD_RECONNECT_GRACE_SECONDS",
            ],
            Need::SfuTasks => &[
                "SWITCHBOARD_ECS_CLUSTER",
                "SWITCHBOARD_ECS_TASK_DEFINITION",
                "SWITCHBOARD_ECS_CONTAINER",
                "SWITCHBOARD_ECS_SUBNETS",
                "SWITCHBOARD_ECS_SECURITY_GROUPS",
                "SWITCHBOARD_ECS_ASSIGN_PUBLIC_IP",
            ],
            Need::WarmRooms => &["SWITCHBOARD_WARM_ROOMS"],
            Need::StartTimeout => &["SWITCHBOARD_START_TIMEOUT_SECONDS"],
            Need::Sessions => &[
                "SWITCHBOARD_APPLICATIONS",
                "SWITCHBOARD_LOCATIONS",
                "SWITCHBOARD_SESSION_TASK_FAMILY_PREFIX",
                "SWITCHBOARD_SESSION_CLUSTER_PREFIX",
            ],
            Need::SessionWait => &["SWITCHBOARD_SESSION_WAIT_SECONDS"],
            Need::Identify => &[
                "SWITCHBOARD_MAX_ROOM_MEMBERS",
                "SWITCHBOARD_SFU_TOKEN_OPTIONAL",
            ],
        }
    }
}

/// Every variable a function reads with `needs`: its tables and what its needs read.
pub fn variables_of(needs: &[Need]) -> std::collections::BTreeSet<&'static str> {
    Tables::VARIABLES
        .iter()
        .map(|(_, variable)| *variable)
        .chain(needs.iter().flat_map(|n| n.variables().iter().copied()))
        .collect()
}

/// The HTTP API's CORS origins (`SWITCHBOARD_ALLOWED_ORIGINS`): read by the local stack, which
/// answers CORS as API Gateway does from the template's `CorsConfiguration`; no function reads it.
pub const ALLOWED_ORIGINS: &str = "SWITCHBOARD_ALLOWED_ORIGINS";
pub const APPLICATIONS: &str = "SWITCHBOARD_APPLICATIONS";
pub const LOCATIONS: &str = "SWITCHBOARD_LOCATIONS";

/// `SWITCHBOARD_*` names in `vars` that no function reads (nor the local stack's CORS
/// setting), each with the known name it most likely misspells. A misspelt setting would
/// otherwise be silently ignored.
pub fn unknown_variables<'a>(
    vars: impl IntoIterator<Item = &'a String>,
) -> Vec<(String, Option<&'static str>)> {
    let known = variables_of(&Need::ALL);
    let mut unknown: Vec<(String, Option<&'static str>)> = vars
        .into_iter()
        .filter(|name| name.starts_with("SWITCHBOARD_"))
        .filter(|name| !known.contains(name.as_str()) && name.as_str() != ALLOWED_ORIGINS)
        .map(|name| {
            let closest = known
                .iter()
                .copied()
                .chain([ALLOWED_ORIGINS])
                .map(|k| (edit_distance(name, k), k))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, k)| k);
            (name.clone(), closest)
        })
        .collect();
    unknown.sort();
    unknown
}

/// The warning for an unknown `SWITCHBOARD_*` name, in one line.
pub fn unknown_variable_warning(name: &str, closest: Option<&str>) -> String {
    match closest {
        Some(known) => {
            format!("{name} is not a Switchboard setting and is ignored (did you mean {known}?)")
        }
        None => format!("{name} is not a Switchboard setting and is ignored"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// Parses `SWITCHBOARD_ALLOWED_ORIGINS` (absent: `*`).
pub fn parse_allowed_origins(value: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let origins = match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => split_list(v),
        None => vec!["*".to_string()],
    };
    if let Some(bad) = origins
        .iter()
        .find(|o| *o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
    {
        return Err(ConfigError::Invalid {
            name: ALLOWED_ORIGINS,
            reason: format!("{bad:?} is neither * nor an http(s):// origin"),
        });
    }
    Ok(origins)
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
    /// A function's configuration from its environment: exactly what `needs` read.
    pub fn from_env(needs: &[Need]) -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect(), needs)
    }

    /// Reads the configuration from a map of variables (the environment, or a test's own):
    /// the tables and the variables of `needs`, each checked; every other variable is left
    /// unread, and what it would set keeps its default (empty, none, or the documented value).
    pub fn from_vars(vars: &HashMap<String, String>, needs: &[Need]) -> Result<Self, ConfigError> {
        let needed = variables_of(needs);
        let get = |name: &str| {
            debug_assert!(needed.contains(name), "{name} read without its need");
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let needs = |need: Need| needs.contains(&need);
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
        // A setting its function does not need: its default, unread.
        let seconds_if = |need: Need, name: &'static str, default: i64| {
            if needs(need) {
                seconds(name, default)
            } else {
                Ok(default)
            }
        };

        let tables = Tables {
            rooms: required("SWITCHBOARD_ROOMS_TABLE")?,
            paths: required("SWITCHBOARD_PATHS_TABLE")?,
            hosts: required("SWITCHBOARD_HOSTS_TABLE")?,
            connections: required("SWITCHBOARD_CONNECTIONS_TABLE")?,
            members: required("SWITCHBOARD_MEMBERS_TABLE")?,
            sessions: required("SWITCHBOARD_SESSIONS_TABLE")?,
            players: required("SWITCHBOARD_PLAYERS_TABLE")?,
        };
        let regions = match needs(Need::Regions)
            .then(|| get("SWITCHBOARD_REGIONS"))
            .flatten()
        {
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
        let (turn_urls, stun_urls, turn_secret) = if needs(Need::Ice) {
            let turn_urls = urls("SWITCHBOARD_TURN_URLS", &["turn:", "turns:"])?;
            let stun_urls = urls("SWITCHBOARD_STUN_URLS", &["stun:", "stuns:"])?;
            let turn_secret = get("SWITCHBOARD_TURN_SECRET");
            if !turn_urls.is_empty() && turn_secret.is_none() {
                // TURN servers without credentials would silently be left out of iceServers.
                return Err(ConfigError::Missing("SWITCHBOARD_TURN_SECRET"));
            }
            (turn_urls, stun_urls, turn_secret)
        } else {
            Default::default()
        };
        let ws_url = if needs(Need::SignalingUrl) {
            // Every answer and task of a function that needs it carries it: without it they
            // would fail at request time.
            let url = required("SWITCHBOARD_WS_URL")?;
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_WS_URL",
                    reason: format!("{url:?} is not a ws:// or wss:// URL"),
                });
            }
            Some(url)
        } else {
            None
        };
        let ws_management_endpoint = if needs(Need::Sockets) {
            let url = required("SWITCHBOARD_WS_MANAGEMENT_ENDPOINT")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_WS_MANAGEMENT_ENDPOINT",
                    reason: format!("{url:?} is not an http(s):// URL"),
                });
            }
            Some(url)
        } else {
            None
        };
        let warm_rooms = match needs(Need::WarmRooms)
            .then(|| get("SWITCHBOARD_WARM_ROOMS"))
            .flatten()
        {
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
        let ecs = if needs(Need::SfuTasks) {
            let cluster = match get("SWITCHBOARD_ECS_CLUSTER") {
                Some(cluster) => cluster,
                None if warm_rooms > 0 => {
                    return Err(ConfigError::Invalid {
                        name: "SWITCHBOARD_WARM_ROOMS",
                        reason: format!(
                            "is {warm_rooms}, but SWITCHBOARD_ECS_CLUSTER is not set: there is nowhere to launch warm rooms"
                        ),
                    });
                }
                None => return Err(ConfigError::Missing("SWITCHBOARD_ECS_CLUSTER")),
            };
            let non_empty = |name: &'static str| -> Result<Vec<String>, ConfigError> {
                let values = list(name);
                if values.is_empty() {
                    // RunTask of an awsvpc task without them fails, at every launch.
                    return Err(ConfigError::Missing(name));
                }
                Ok(values)
            };
            Some(EcsSettings {
                cluster,
                task_definition: required("SWITCHBOARD_ECS_TASK_DEFINITION")?,
                container: get("SWITCHBOARD_ECS_CONTAINER").unwrap_or_else(|| "sfu".into()),
                subnets: non_empty("SWITCHBOARD_ECS_SUBNETS")?,
                security_groups: non_empty("SWITCHBOARD_ECS_SECURITY_GROUPS")?,
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
            })
        } else {
            None
        };
        let sfu_token_optional = match needs(Need::Identify)
            .then(|| get("SWITCHBOARD_SFU_TOKEN_OPTIONAL"))
            .flatten()
            .as_deref()
        {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_SFU_TOKEN_OPTIONAL",
                    reason: format!("{other:?} is neither true nor false"),
                });
            }
        };
        let (applications, locations) = if needs(Need::Sessions) {
            let prefixes = apps::Prefixes {
                task_family: get("SWITCHBOARD_SESSION_TASK_FAMILY_PREFIX"),
                cluster: get("SWITCHBOARD_SESSION_CLUSTER_PREFIX"),
            };
            let locations = match get("SWITCHBOARD_LOCATIONS") {
                Some(raw) => apps::parse_locations(&raw, &prefixes)?,
                None => BTreeMap::new(),
            };
            let applications = match get("SWITCHBOARD_APPLICATIONS") {
                Some(raw) => apps::parse_applications(&raw, &locations, &prefixes)?,
                None => BTreeMap::new(),
            };
            (applications, locations)
        } else {
            Default::default()
        };
        Ok(Self {
            tables,
            regions,
            host_keys: if needs(Need::HostKeys) {
                list("SWITCHBOARD_HOST_KEYS")
            } else {
                Vec::new()
            },
            operator_keys: if needs(Need::OperatorKeys) {
                list("SWITCHBOARD_OPERATOR_KEYS")
            } else {
                Vec::new()
            },
            host_ttl_seconds: seconds_if(Need::HostTtl, "SWITCHBOARD_HOST_TTL_SECONDS", 30)?,
            match_lease_seconds: seconds_if(
                Need::MatchLease,
                "SWITCHBOARD_MATCH_LEASE_SECONDS",
                20,
            )?,
            turn_secret,
            turn_urls,
            stun_urls,
            turn_ttl_seconds: seconds_if(Need::Ice, "SWITCHBOARD_TURN_TTL_SECONDS", 86_400)?,
            ws_url,
            ws_management_endpoint,
            ecs,
            start_timeout_seconds: seconds_if(
                Need::StartTimeout,
                "SWITCHBOARD_START_TIMEOUT_SECONDS",
                600,
            )?,
            reconnect_grace_seconds: seconds_if(
                Need::Sockets,
                "SWITCHBOARD_RECONNECT_GRACE_SECONDS",
                30,
            )?,
            warm_rooms,
            sfu_token_optional,
            applications,
            locations,
            session_wait_seconds: seconds_if(
                Need::SessionWait,
                "SWITCHBOARD_SESSION_WAIT_SECONDS",
                20,
            )?,
            max_room_members: if needs(Need::Identify) {
                positive("SWITCHBOARD_MAX_ROOM_MEMBERS", 50, "members")?
            } else {
                50
            },
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

    /// Every need but the ones that require settings (ECS, the URLs).
    const OPTIONAL: &[Need] = &[
        Need::HostKeys,
        Need::OperatorKeys,
        Need::Regions,
        Need::HostTtl,
        Need::MatchLease,
        Need::Ice,
        Need::WarmRooms,
        Need::StartTimeout,
        Need::Sessions,
        Need::SessionWait,
        Need::Identify,
    ];

    #[test]
    fn defaults_follow_the_spec() {
        let config = Config::from_vars(&vars(&[]), OPTIONAL).unwrap();
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
        assert_eq!(parse_allowed_origins(None).unwrap(), ["*"]);
        assert_eq!(config.max_room_members, 50);
        assert!(
            config.operator_keys.is_empty() && config.host_keys.is_empty() && config.ecs.is_none()
        );
    }

    #[test]
    fn debug_output_has_no_keys_or_turn_secret() {
        let config = Config::from_vars(
            &vars(&[
                (
                    "SWITCHBOARD_HOST_KEYS",
                    "host-key-secret-1,host-key-secret-2",
                ),
                ("SWITCHBOARD_OPERATOR_KEYS", "operator-key-secret"),
                ("SWITCHBOARD_TURN_SECRET", "turn-secret-value"),
            ]),
            OPTIONAL,
        )
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

    const ECS: [(&str, &str); 4] = [
        ("SWITCHBOARD_ECS_CLUSTER", "c"),
        ("SWITCHBOARD_ECS_TASK_DEFINITION", "td"),
        ("SWITCHBOARD_ECS_SUBNETS", "s1,s2"),
        ("SWITCHBOARD_ECS_SECURITY_GROUPS", "g"),
    ];

    #[test]
    fn lists_and_numbers_are_parsed_and_checked() {
        let mut extra = vec![
            ("SWITCHBOARD_HOST_KEYS", " a, b ,,"),
            ("SWITCHBOARD_MATCH_LEASE_SECONDS", "5"),
            ("SWITCHBOARD_ECS_ASSIGN_PUBLIC_IP", "DISABLED"),
        ];
        extra.extend(ECS);
        let mut needs = OPTIONAL.to_vec();
        needs.push(Need::SfuTasks);
        let config = Config::from_vars(&vars(&extra), &needs).unwrap();
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

        let config = |extra: &[(&str, &str)]| Config::from_vars(&vars(extra), OPTIONAL);
        assert_eq!(
            config(&[("SWITCHBOARD_MAX_ROOM_MEMBERS", "8")])
                .unwrap()
                .max_room_members,
            8
        );
        for bad in ["0", "-1", "many"] {
            let error = config(&[("SWITCHBOARD_MAX_ROOM_MEMBERS", bad)]).unwrap_err();
            assert!(
                error.to_string().contains("SWITCHBOARD_MAX_ROOM_MEMBERS"),
                "{error}"
            );
        }
        let error = config(&[("SWITCHBOARD_HOST_TTL_SECONDS", "soon")]).unwrap_err();
        assert!(
            error.to_string().contains("SWITCHBOARD_HOST_TTL_SECONDS"),
            "{error}"
        );
        let mut missing = vars(&[]);
        missing.remove("SWITCHBOARD_HOSTS_TABLE");
        assert!(
            Config::from_vars(&missing, &[])
                .unwrap_err()
                .to_string()
                .contains("SWITCHBOARD_HOSTS_TABLE")
        );
        for (name, bad) in [
            ("SWITCHBOARD_REGIONS", "local,us east"),
            ("SWITCHBOARD_TURN_URLS", "127.0.0.1:3478"),
            ("SWITCHBOARD_STUN_URLS", "turn:x"),
            ("SWITCHBOARD_TURN_TTL_SECONDS", "1e3"),
        ] {
            let error = config(&[(name, bad)]).unwrap_err();
            assert!(error.to_string().contains(name), "{name}={bad}: {error}");
            assert_eq!(error.to_string().lines().count(), 1, "{error}");
        }
        let error = Config::from_vars(
            &vars(&[("SWITCHBOARD_WS_URL", "http://127.0.0.1:3001")]),
            &[Need::SignalingUrl],
        )
        .unwrap_err();
        assert!(error.to_string().contains("SWITCHBOARD_WS_URL"), "{error}");
        let error = parse_allowed_origins(Some("example.com")).unwrap_err();
        assert!(error.to_string().contains(ALLOWED_ORIGINS), "{error}");
        let error = config(&[("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478")]).unwrap_err();
        assert!(
            error.to_string().contains("SWITCHBOARD_TURN_SECRET"),
            "TURN URLs need the secret: {error}"
        );
    }

    /// A function reads what it needs and nothing else: a setting it does not need, however
    /// malformed, neither fails it nor configures it.
    #[test]
    fn a_function_reads_only_its_needs() {
        let stray = vars(&[
            ("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478"),
            ("SWITCHBOARD_HOST_TTL_SECONDS", "soon"),
            ("SWITCHBOARD_OPERATOR_KEYS", "k"),
        ]);
        let config = Config::from_vars(&stray, &[Need::HostKeys]).unwrap();
        assert!(config.turn_urls.is_empty() && config.operator_keys.is_empty());
        assert_eq!(config.host_ttl_seconds, 30);
        assert!(Config::from_vars(&stray, &[Need::HostTtl]).is_err());
    }

    /// What would fail at request time fails the start instead, naming the setting.
    #[test]
    fn settings_a_need_cannot_do_without_are_required() {
        for (needs, extra, named) in [
            (&[Need::SignalingUrl][..], vec![], "SWITCHBOARD_WS_URL"),
            (
                &[Need::Sockets],
                vec![],
                "SWITCHBOARD_WS_MANAGEMENT_ENDPOINT",
            ),
            (&[Need::SfuTasks], vec![], "SWITCHBOARD_ECS_CLUSTER"),
            (
                &[Need::SfuTasks, Need::WarmRooms],
                vec![("SWITCHBOARD_WARM_ROOMS", "2")],
                "SWITCHBOARD_WARM_ROOMS",
            ),
            (
                &[Need::SfuTasks],
                ECS.iter()
                    .copied()
                    .filter(|(n, _)| *n != "SWITCHBOARD_ECS_SUBNETS")
                    .collect(),
                "SWITCHBOARD_ECS_SUBNETS",
            ),
            (
                &[Need::SfuTasks],
                ECS.iter()
                    .copied()
                    .filter(|(n, _)| *n != "SWITCHBOARD_ECS_SECURITY_GROUPS")
                    .collect(),
                "SWITCHBOARD_ECS_SECURITY_GROUPS",
            ),
            (
                &[Need::SfuTasks],
                vec![("SWITCHBOARD_ECS_CLUSTER", "c")],
                "SWITCHBOARD_ECS_TASK_DEFINITION",
            ),
        ] {
            let error = Config::from_vars(&vars(&extra), needs).unwrap_err();
            assert_eq!(error.variable(), named, "{error}");
            assert_eq!(error.to_string().lines().count(), 1, "{error}");
        }
    }

    #[test]
    fn misspelt_settings_are_found_with_their_likely_name() {
        let names: Vec<String> = [
            "SWITCHBOARD_TURN_URL",
            "SWITCHBOARD_TURN_URLS",
            "SWITCHBOARD_ALLOWED_ORIGINS",
            "SWITCHBOARD_SOMETHING_ELSE_ENTIRELY",
            "PATH",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            unknown_variables(&names),
            [
                ("SWITCHBOARD_SOMETHING_ELSE_ENTIRELY".to_string(), None),
                (
                    "SWITCHBOARD_TURN_URL".to_string(),
                    Some("SWITCHBOARD_TURN_URLS")
                ),
            ]
        );
    }
}
