//! The functions' metrics, collected as CloudWatch Logs collects them: each handler's EMF
//! lines (`switchboard::metrics`) are read back, and every metric value is added to a total
//! per name and dimensions. `GET /__local/metrics` serves the totals.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// How many raw lines are kept for tests to read (the oldest go first).
const KEPT_LINES: usize = 10_000;

type Key = (String, Vec<(String, String)>);

#[derive(Default)]
pub struct Collector {
    totals: Mutex<BTreeMap<Key, f64>>,
    lines: Mutex<VecDeque<String>>,
}

impl Collector {
    /// Where the stack's handlers write their metric lines.
    pub fn sink(self: &Arc<Self>) -> switchboard::metrics::Sink {
        let collector = Arc::clone(self);
        Arc::new(move |line: &str| collector.take(line))
    }

    fn take(&self, line: &str) {
        {
            let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
        let Some(events) = switchboard::metrics::parse(line) else {
            tracing::warn!(line, "a handler wrote a metric line that is not EMF");
            return;
        };
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for (name, mut dimensions, value) in events {
            dimensions.sort();
            *totals.entry((name, dimensions)).or_default() += value;
        }
    }

    /// The raw EMF lines the handlers wrote (the last 10,000).
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }

    /// `{"namespace", "metrics": [{"name", "dimensions": {..}, "value"}]}`, sorted by name and
    /// dimensions.
    pub fn totals(&self) -> Value {
        let totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let metrics: Vec<Value> = totals
            .iter()
            .map(|((name, dimensions), value)| {
                let dimensions: serde_json::Map<String, Value> = dimensions
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!({ "name": name, "dimensions": dimensions, "value": value })
            })
            .collect();
        json!({ "namespace": switchboard::metrics::NAMESPACE, "metrics": metrics })
    }
}
