//! Warm-path `POST /session` latency through the local stack: servers of an application are
//! kept warm by the sweeper, each one a real process (the example server) identified on the
//! signaling socket; each POST allocates one with one conditional transaction and pushes it its
//! session. Timed from the request to the 201, one at a time.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::Clock;
use switchboard_local::{Stack, StackOptions};

use crate::common::{Env, Error, OPERATOR_KEY, millis, now, quantile};

pub struct WarmSessions {
    pub samples: Vec<f64>,
    /// Sessions that were started cold (their server was not launched by the warm pool).
    pub not_warm: usize,
}

pub async fn warm_path(
    env: &Env,
    example_server: &Path,
    count: usize,
) -> Result<WarmSessions, Error> {
    let mut options = StackOptions::new(env.proxy.url.clone());
    options.table_prefix = format!("b{}-", uuid::Uuid::new_v4().simple());
    options.clock = Clock::manual(now());
    options.pages = None;
    options.task_command = Some(format!("exec {}", example_server.display()));
    options.task_stop_timeout = Duration::from_secs(2);
    options
        .vars
        .insert("SWITCHBOARD_OPERATOR_KEYS".into(), OPERATOR_KEY.into());
    options.vars.insert(
        "SWITCHBOARD_APPLICATIONS".into(),
        json!({ "arena": {
            "taskDefinition": "switchboard-arena", "container": "game",
            "ports": [{ "type": "udp", "container": 7777 }],
            "warm": { "local": count },
        }})
        .to_string(),
    );
    let stack = Stack::start(options).await?;
    let launched: Vec<String> = stack.sweep().await.launched;
    if launched.len() != count {
        return Err(format!("the pool launched {} of {count} servers", launched.len()).into());
    }
    // Every server's process connects and identifies: the pool is ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = 0;
        for id in &launched {
            if stack
                .deps
                .store
                .room(id)
                .await?
                .is_some_and(|r| r.serving_connection.is_some())
            {
                ready += 1;
            }
        }
        if ready == count {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{ready} of {count} warm servers identified within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut samples = Vec::with_capacity(count);
    let mut not_warm = 0;
    for _ in 0..count {
        let started = Instant::now();
        let reply = env
            .http
            .post(format!("{}/session", stack.http_url))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({ "image": "arena", "location": "local", "env": { "MAP": "dust" } }))
            .send()
            .await?;
        let status = reply.status().as_u16();
        let body: serde_json::Value = reply.json().await?;
        samples.push(millis(started.elapsed()));
        if status != 201 {
            return Err(format!("POST /session answered {status}: {body}").into());
        }
        // A warm server was launched by the pool into a slot; a cold start has none.
        let id = body["id"].as_str().unwrap_or_default();
        if stack
            .deps
            .store
            .room(id)
            .await?
            .is_none_or(|r| r.slot.is_none())
        {
            not_warm += 1;
        }
    }
    Ok(WarmSessions { samples, not_warm })
}

pub fn p50_p99(samples: &[f64]) -> (f64, f64) {
    (quantile(samples, 0.5), quantile(samples, 0.99))
}
