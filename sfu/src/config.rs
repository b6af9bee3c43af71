//! The SFU's settings, read once from the task's environment. A setting that is missing or
//! malformed is an error naming it; `main` prints that one line and exits 78 (EX_CONFIG).

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

/// Where the SFU's own address comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum AddressSource {
    /// `TASK_IP` (the local stack gives every task one).
    Given(IpAddr),
    /// The ECS task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`) on Fargate.
    Metadata(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub room_id: String,
    pub token: String,
    pub signal_url: String,
    /// `stun:` servers of `RTC_CONFIG`, as `host:port`.
    pub stun_servers: Vec<String>,
    pub address: AddressSource,
    pub udp_port: u16,
    pub public_ip: Option<IpAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{0} is malformed: {1}")]
    Malformed(&'static str, String),
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            vars.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let need = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let room_id = need("ROOM_ID")?;
        let token = need("SFU_TOKEN")?;
        let signal_url = need("SIGNAL_SERVER_URL")?;
        if !(signal_url.starts_with("ws://") || signal_url.starts_with("wss://")) {
            return Err(ConfigError::Malformed(
                "SIGNAL_SERVER_URL",
                "not a ws:// or wss:// URL".into(),
            ));
        }
        let stun_servers = stun_servers(&need("RTC_CONFIG")?)?;
        let address = match (get("TASK_IP"), get("ECS_CONTAINER_METADATA_URI_V4")) {
            (Some(ip), _) => AddressSource::Given(
                ip.parse()
                    .map_err(|_| ConfigError::Malformed("TASK_IP", format!("{ip:?}")))?,
            ),
            (None, Some(uri)) if uri.starts_with("http://") => AddressSource::Metadata(uri),
            (None, Some(uri)) => {
                return Err(ConfigError::Malformed(
                    "ECS_CONTAINER_METADATA_URI_V4",
                    format!("{uri:?} is not an http:// URL"),
                ));
            }
            (None, None) => return Err(ConfigError::Missing("TASK_IP")),
        };
        let udp_port = match get("SFU_UDP_PORT") {
            None => 50000,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ConfigError::Malformed("SFU_UDP_PORT", format!("{port:?}")))?,
        };
        let public_ip = get("SFU_PUBLIC_IP")
            .map(|ip| {
                ip.parse()
                    .map_err(|_| ConfigError::Malformed("SFU_PUBLIC_IP", format!("{ip:?}")))
            })
            .transpose()?;
        Ok(Self {
            room_id,
            token,
            signal_url,
            stun_servers,
            address,
            udp_port,
            public_ip,
        })
    }
}

/// The `stun:` URLs of an RTCConfiguration (`{"iceServers":[{"urls":...}]}`), as `host:port`.
fn stun_servers(rtc_config: &str) -> Result<Vec<String>, ConfigError> {
    let bad = |why: &str| ConfigError::Malformed("RTC_CONFIG", why.to_string());
    let config: Value = serde_json::from_str(rtc_config).map_err(|e| bad(&e.to_string()))?;
    let servers = config
        .get("iceServers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no iceServers array"))?;
    let mut stun = Vec::new();
    for server in servers {
        let urls = match server.get("urls").or_else(|| server.get("url")) {
            Some(Value::String(url)) => vec![url.as_str()],
            Some(Value::Array(urls)) => urls.iter().filter_map(Value::as_str).collect(),
            _ => return Err(bad("an ice server without urls")),
        };
        for url in urls {
            let Some(rest) = url.strip_prefix("stun:") else {
                continue;
            };
            let host = rest.split('?').next().unwrap_or(rest);
            if host.is_empty() {
                return Err(bad(&format!("{url:?} names no host")));
            }
            let has_port = if host.starts_with('[') {
                host.contains("]:")
            } else {
                host.contains(':')
            };
            stun.push(if has_port {
                host.to_string()
            } else {
                format!("{host}:3478")
            });
        }
    }
    Ok(stun)
}

/// The first IPv4 address of the task's first network in an ECS task metadata v4 container
/// response.
pub fn metadata_address(body: &str) -> Option<IpAddr> {
    let value: Value = serde_json::from_str(body).ok()?;
    value
        .pointer("/Networks/0/IPv4Addresses/0")?
        .as_str()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ROOM_ID", "r1"),
            ("SFU_TOKEN", "t"),
            ("SIGNAL_SERVER_URL", "ws://127.0.0.1:3001"),
            (
                "RTC_CONFIG",
                r#"{"iceServers":[{"urls":["stun:127.0.0.1:3478","turn:127.0.0.1:3478"]},{"urls":"stun:stun.example.com"}]}"#,
            ),
            ("TASK_IP", "127.0.0.2"),
        ]
    }

    #[test]
    fn reads_every_setting() {
        let config = Config::from_vars(&vars(&base())).unwrap();
        assert_eq!(config.room_id, "r1");
        assert_eq!(
            config.stun_servers,
            vec!["127.0.0.1:3478", "stun.example.com:3478"]
        );
        assert_eq!(
            config.address,
            AddressSource::Given("127.0.0.2".parse().unwrap())
        );
        assert_eq!(config.udp_port, 50000);
        assert_eq!(config.public_ip, None);
    }

    #[test]
    fn names_the_setting_that_is_missing_or_malformed() {
        for name in [
            "ROOM_ID",
            "SFU_TOKEN",
            "SIGNAL_SERVER_URL",
            "RTC_CONFIG",
            "TASK_IP",
        ] {
            let without: Vec<_> = base().into_iter().filter(|(k, _)| *k != name).collect();
            assert_eq!(
                Config::from_vars(&vars(&without)),
                Err(ConfigError::Missing(name))
            );
        }
        for (name, value) in [
            ("RTC_CONFIG", "{"),
            ("RTC_CONFIG", r#"{"iceServers":3}"#),
            ("TASK_IP", "nope"),
            ("SFU_UDP_PORT", "70000"),
            ("SFU_PUBLIC_IP", "1.2.3"),
            ("SIGNAL_SERVER_URL", "http://x"),
        ] {
            let mut with = vars(&base());
            with.insert(name.into(), value.into());
            let error = Config::from_vars(&with).unwrap_err();
            assert!(error.to_string().starts_with(name), "{error}");
        }
    }

    #[test]
    fn reads_the_address_from_task_metadata() {
        let body = r#"{"Networks":[{"NetworkMode":"awsvpc","IPv4Addresses":["10.0.1.7"]}]}"#;
        assert_eq!(metadata_address(body), Some("10.0.1.7".parse().unwrap()));
        assert_eq!(metadata_address("{}"), None);
    }
}
