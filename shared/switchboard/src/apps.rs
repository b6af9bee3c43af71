//! The sessions API's applications and locations (`SWITCHBOARD_APPLICATIONS`,
//! `SWITCHBOARD_LOCATIONS`): JSON read once at start, each entry validated on its own so an
//! error names the entry and the field.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ConfigError, EcsSettings};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(rename = "type")]
    pub protocol: Protocol,
    pub container: u16,
}

/// An image a session can run.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    pub task_definition: String,
    pub container: String,
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Tag → task definition, picked by a session's `version`.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Location → servers kept running, identified and unallocated.
    #[serde(default)]
    pub warm: BTreeMap<String, u32>,
    /// Where it may run; absent: every location.
    #[serde(default)]
    pub locations: Option<Vec<String>>,
    /// Whether a session may start a task when no warm server is ready (default true).
    #[serde(default = "yes")]
    pub cold: bool,
}

fn yes() -> bool {
    true
}

impl Application {
    pub fn runs_in(&self, location: &str) -> bool {
        self.locations
            .as_ref()
            .is_none_or(|l| l.iter().any(|x| x == location))
    }
}

/// Where sessions run: an AWS region, its cluster and network, and the IPs clients ping.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Location {
    pub region: String,
    pub cluster: String,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub ips: Vec<Ipv4Addr>,
    #[serde(default = "yes")]
    pub assign_public_ip: bool,
}

impl Location {
    /// RunTask settings for `application` (at `task_definition`) in this location.
    pub fn ecs_settings(&self, application: &Application, task_definition: &str) -> EcsSettings {
        EcsSettings {
            cluster: self.cluster.clone(),
            task_definition: task_definition.to_string(),
            container: application.container.clone(),
            subnets: self.subnets.clone(),
            security_groups: self.security_groups.clone(),
            assign_public_ip: self.assign_public_ip,
        }
    }
}

/// Upper bound of one warm count: a typo must not start a thousand tasks.
pub const MAX_WARM_PER_LOCATION: u32 = 100;

fn invalid(name: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { name, reason }
}

fn entries(name: &'static str, raw: &str) -> Result<serde_json::Map<String, Value>, ConfigError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(name, "must be a JSON object".into())),
        Err(e) => Err(invalid(name, format!("is not valid JSON: {e}"))),
    }
}

fn identifier(name: &'static str, what: &str, key: &str) -> Result<(), ConfigError> {
    if key.is_empty() || key.len() > 128 || key.chars().any(|c| c.is_control() || c == '#') {
        return Err(invalid(
            name,
            format!("{what} {key:?} must be 1-128 printable characters without '#'"),
        ));
    }
    Ok(())
}

/// What the functions' IAM policies let them run sessions on (template parameters
/// `SessionTaskFamilyPrefix`, `SessionClusterPrefix`): a task definition or cluster outside them
/// would be refused by IAM at every RunTask. `None`: no restriction is known.
#[derive(Clone, Debug, Default)]
pub struct Prefixes {
    pub task_family: Option<String>,
    pub cluster: Option<String>,
}

/// `family` of `family`, `family:3` or a task definition ARN.
pub fn task_family(definition: &str) -> &str {
    let name = definition.rsplit('/').next().unwrap_or(definition);
    name.split(':').next().unwrap_or(name)
}

/// The name of a cluster given by name or ARN.
pub fn cluster_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

pub fn parse_locations(
    raw: &str,
    prefixes: &Prefixes,
) -> Result<BTreeMap<String, Location>, ConfigError> {
    const NAME: &str = "SWITCHBOARD_LOCATIONS";
    let mut locations = BTreeMap::new();
    for (key, value) in entries(NAME, raw)? {
        identifier(NAME, "location", &key)?;
        let location: Location = serde_json::from_value(value)
            .map_err(|e| invalid(NAME, format!("location {key:?}: {e}")))?;
        if location.region.trim().is_empty() || location.cluster.trim().is_empty() {
            return Err(invalid(
                NAME,
                format!("location {key:?}: region and cluster must not be empty"),
            ));
        }
        // Fargate's awsvpc tasks need both: without them every RunTask there is refused.
        for (field, values) in [
            ("subnets", &location.subnets),
            ("securityGroups", &location.security_groups),
        ] {
            if values.iter().all(|v| v.trim().is_empty()) {
                return Err(invalid(
                    NAME,
                    format!(
                        "location {key:?}: {field} must name at least one (RunTask needs a network configuration)"
                    ),
                ));
            }
        }
        if let Some(prefix) = &prefixes.cluster
            && !cluster_name(&location.cluster).starts_with(prefix.as_str())
        {
            return Err(invalid(
                NAME,
                format!(
                    "location {key:?}: cluster {:?} does not start with {prefix:?} (SWITCHBOARD_SESSION_CLUSTER_PREFIX), so IAM refuses tasks there",
                    location.cluster
                ),
            ));
        }
        locations.insert(key, location);
    }
    Ok(locations)
}

pub fn parse_applications(
    raw: &str,
    locations: &BTreeMap<String, Location>,
    prefixes: &Prefixes,
) -> Result<BTreeMap<String, Application>, ConfigError> {
    const NAME: &str = "SWITCHBOARD_APPLICATIONS";
    let mut applications = BTreeMap::new();
    for (key, value) in entries(NAME, raw)? {
        identifier(NAME, "application", &key)?;
        let application: Application = serde_json::from_value(value)
            .map_err(|e| invalid(NAME, format!("application {key:?}: {e}")))?;
        let named = application
            .warm
            .keys()
            .chain(application.locations.iter().flatten());
        for location in named {
            if !locations.contains_key(location) {
                return Err(invalid(
                    NAME,
                    format!("application {key:?}: unknown location {location:?}"),
                ));
            }
        }
        if let Some(location) = application
            .warm
            .keys()
            .find(|location| !application.runs_in(location))
        {
            return Err(invalid(
                NAME,
                format!(
                    "application {key:?}: warm servers in {location:?}, which is not one of its locations"
                ),
            ));
        }
        if let Some(prefix) = &prefixes.task_family
            && let Some(definition) = std::iter::once(&application.task_definition)
                .chain(application.versions.values())
                .find(|d| !task_family(d).starts_with(prefix.as_str()))
        {
            return Err(invalid(
                NAME,
                format!(
                    "application {key:?}: task definition {definition:?} does not start with {prefix:?} (SWITCHBOARD_SESSION_TASK_FAMILY_PREFIX), so IAM refuses to run it"
                ),
            ));
        }
        if application.task_definition.trim().is_empty() || application.container.trim().is_empty()
        {
            return Err(invalid(
                NAME,
                format!("application {key:?}: taskDefinition and container must not be empty"),
            ));
        }
        if let Some((location, count)) = application
            .warm
            .iter()
            .find(|(_, n)| **n > MAX_WARM_PER_LOCATION)
        {
            return Err(invalid(
                NAME,
                format!(
                    "application {key:?}: warm {count} in {location:?} exceeds {MAX_WARM_PER_LOCATION}"
                ),
            ));
        }
        applications.insert(key, application);
    }
    Ok(applications)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_the_entry() {
        let none = Prefixes::default();
        let locations = parse_locations(
            r#"{"eu": {"region": "eu-central-1", "cluster": "c", "ips": ["10.0.0.1"], "subnets": ["s"], "securityGroups": ["g"]}}"#,
            &none,
        )
        .unwrap();
        assert_eq!(locations["eu"].ips, [Ipv4Addr::new(10, 0, 0, 1)]);
        let error = parse_locations(r#"{"eu": {"region": "eu-central-1"}}"#, &none).unwrap_err();
        assert!(
            error.to_string().contains("SWITCHBOARD_LOCATIONS")
                && error.to_string().contains("\"eu\""),
            "{error}"
        );
        let error = parse_applications(
            r#"{"game": {"taskDefinition": "td", "container": "c", "warm": {"mars": 1}}}"#,
            &locations,
            &none,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown location \"mars\""),
            "{error}"
        );
        let error = parse_applications(r#"{"game": {"taskDefinition": 5}}"#, &locations, &none)
            .unwrap_err();
        assert!(
            error.to_string().contains("application \"game\""),
            "{error}"
        );
        assert!(parse_applications("[1]", &locations, &none).is_err());
        let apps = parse_applications(
            r#"{"game": {"taskDefinition": "td", "container": "c", "ports": [{"type": "udp", "container": 7777}]}}"#,
            &locations,
            &none,
        )
        .unwrap();
        assert!(apps["game"].cold && apps["game"].runs_in("eu"));
    }

    /// What would fail at every request instead stops the start, naming the entry.
    #[test]
    fn what_ecs_or_iam_would_refuse_is_refused_at_start() {
        let none = Prefixes::default();
        for (location, field) in [
            (
                r#"{"region": "r", "cluster": "c", "securityGroups": ["g"]}"#,
                "subnets",
            ),
            (
                r#"{"region": "r", "cluster": "c", "subnets": ["s"]}"#,
                "securityGroups",
            ),
            (
                r#"{"region": "r", "cluster": "c", "subnets": [], "securityGroups": ["g"]}"#,
                "subnets",
            ),
        ] {
            let error = parse_locations(&format!(r#"{{"eu": {location}}}"#), &none).unwrap_err();
            assert!(
                error.to_string().contains("location \"eu\"") && error.to_string().contains(field),
                "{error}"
            );
        }
        let prefixes = Prefixes {
            task_family: Some("switchboard-".into()),
            cluster: Some("switchboard-".into()),
        };
        let located = r#"{"eu": {"region": "r", "cluster": "arn:aws:ecs:r:1:cluster/switchboard-eu", "subnets": ["s"], "securityGroups": ["g"]}}"#;
        let locations = parse_locations(located, &prefixes).unwrap();
        let error = parse_locations(&located.replace("switchboard-eu", "games"), &prefixes)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("location \"eu\"")
                && error.contains("SWITCHBOARD_SESSION_CLUSTER_PREFIX"),
            "{error}"
        );
        for (definition, fine) in [
            ("switchboard-arena", true),
            ("switchboard-arena:3", true),
            ("arn:aws:ecs:r:1:task-definition/switchboard-arena:3", true),
            ("arena", false),
            ("arn:aws:ecs:r:1:task-definition/arena:3", false),
        ] {
            let raw =
                format!(r#"{{"game": {{"taskDefinition": "{definition}", "container": "c"}}}}"#);
            let parsed = parse_applications(&raw, &locations, &prefixes);
            assert_eq!(parsed.is_ok(), fine, "{definition}: {parsed:?}");
            if let Err(e) = parsed {
                assert!(
                    e.to_string().contains("application \"game\"")
                        && e.to_string()
                            .contains("SWITCHBOARD_SESSION_TASK_FAMILY_PREFIX"),
                    "{e}"
                );
            }
        }
        let error = parse_applications(
            r#"{"game": {"taskDefinition": "switchboard-a", "container": "c", "versions": {"v2": "other"}}}"#,
            &locations,
            &prefixes,
        )
        .unwrap_err();
        assert!(error.to_string().contains("\"other\""), "{error}");
        let error = parse_applications(
            r#"{"game": {"taskDefinition": "switchboard-a", "container": "c", "locations": [], "warm": {"eu": 1}}}"#,
            &locations,
            &prefixes,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("not one of its locations"),
            "{error}"
        );
    }
}
