//! Metrics as CloudWatch Embedded Metric Format (EMF) lines: one JSON object per event on
//! stdout, which CloudWatch Logs turns into metrics of the namespace `Switchboard`. No API call
//! is made on a request path; a line costs a write to the log.
//!
//! Dimension values are low-cardinality names (a region, a reason, a dependency), never an id
//! or a secret.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "Switchboard";

/// The metrics, by name (the template's alarms and dashboard name them too).
pub mod name {
    /// find-match reserved a host (dimension `Region`).
    pub const MATCHES: &str = "Matches";
    /// find-match found no host (dimension `Region`: the one asked for, or `any`).
    pub const MISSES: &str = "Misses";
    /// claimRoom gave a urlPath a warm room.
    pub const CLAIMS: &str = "Claims";
    /// A server's task was launched (dimension `Application`).
    pub const SERVERS_LAUNCHED: &str = "ServersLaunched";
    /// A server ended (dimension `Reason`).
    pub const SERVERS_ENDED: &str = "ServersEnded";
    /// POST /session answered (dimension `Start`: `warm`, `cold`, `refused` for a 420).
    pub const SESSIONS: &str = "Sessions";
    /// ECS had no capacity for a launch (RunTask failures of `RESOURCE:*`).
    pub const CAPACITY_REFUSALS: &str = "CapacityRefusals";
    /// A request was answered 503 (dimension `Dependency`: `DynamoDB`, `ECS`, `EC2`).
    pub const UNAVAILABLE: &str = "Unavailable";
    /// A signaling frame was delivered to its receiver.
    pub const FRAMES_RELAYED: &str = "FramesRelayed";
    /// A post answered 410 Gone: the receiver's records were removed.
    pub const GONE_CLEANUPS: &str = "GoneCleanups";
    /// One sweeper run: servers it ended, orphan tasks it stopped, warm slots it refilled.
    pub const SWEEP_ENDED: &str = "SweepEnded";
    pub const ORPHANS_STOPPED: &str = "OrphansStopped";
    pub const REFILLS: &str = "Refills";
}

/// Where EMF lines go instead of stdout (the local stack, which collects them).
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

tokio::task_local! {
    static SINK: Sink;
}

/// Runs `invocation` with its metric lines going to `sink` (as Lambda's log capture would
/// take them from stdout).
pub async fn captured<F: Future>(sink: Sink, invocation: F) -> F::Output {
    SINK.scope(sink, invocation).await
}

/// The EMF line for `value` of `metric` (unit Count) with `dimensions`.
pub fn line(metric: &str, value: u64, dimensions: &[(&str, &str)], timestamp_ms: i64) -> String {
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": [{ "Name": metric, "Unit": "Count" }],
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), Value::String((*value).into()));
    }
    root.insert(metric.into(), json!(value));
    Value::Object(root).to_string()
}

/// Counts `value` events of `metric`.
pub fn count(metric: &str, value: u64, dimensions: &[(&str, &str)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let line = line(metric, value, dimensions, now);
    if SINK.try_with(|sink| sink(&line)).is_err() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Counts one event of `metric`.
pub fn one(metric: &str, dimensions: &[(&str, &str)]) {
    count(metric, 1, dimensions);
}

/// One metric value read back from an EMF line: its name, its dimensions, its value.
pub type MetricEvent = (String, Vec<(String, String)>, f64);

/// A metric event read back from an EMF line: each metric of its directives with its value
/// and dimensions. `None` for a line that is not EMF.
pub fn parse(line: &str) -> Option<Vec<MetricEvent>> {
    let root: Value = serde_json::from_str(line.trim()).ok()?;
    let directives = root.pointer("/_aws/CloudWatchMetrics")?.as_array()?;
    let mut events = Vec::new();
    for directive in directives {
        let dimension_sets = directive.get("Dimensions")?.as_array()?;
        for metric in directive.get("Metrics")?.as_array()? {
            let name = metric.get("Name")?.as_str()?;
            let value = root.get(name)?.as_f64()?;
            for set in dimension_sets {
                let dimensions = set
                    .as_array()?
                    .iter()
                    .map(|d| {
                        let d = d.as_str()?;
                        Some((d.to_string(), root.get(d)?.as_str()?.to_string()))
                    })
                    .collect::<Option<Vec<_>>>()?;
                events.push((name.to_string(), dimensions, value));
            }
        }
    }
    Some(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_emf_and_reads_back() {
        let line = line(
            name::MATCHES,
            1,
            &[("Region", "eu-central")],
            1_700_000_000_000,
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            NAMESPACE
        );
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Region"]])
        );
        assert_eq!(value["Region"], "eu-central");
        assert_eq!(
            parse(&line),
            Some(vec![(
                "Matches".to_string(),
                vec![("Region".to_string(), "eu-central".to_string())],
                1.0
            )])
        );
        assert_eq!(parse(r#"{"level":"INFO","message":"hello"}"#), None);
    }
}
