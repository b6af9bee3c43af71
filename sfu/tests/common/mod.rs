//! The local stack with `switchboard-sfu` as the rooms' task process, and room helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::Clock;
use switchboard_local::{Stack, StackOptions, dynamodb};

pub const OPERATOR_KEY: &str = "operator-key";

pub fn sfu_binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard-sfu")
}

/// Stack options whose tasks run the SFU (stderr of each task goes to the test's stderr).
pub fn options() -> StackOptions {
    let endpoint = dynamodb::for_process().expect("DynamoDB Local starts");
    let mut options = StackOptions::new(endpoint);
    options.table_prefix = format!("sfu{}-", uuid::Uuid::new_v4().simple());
    options.clock = Clock::system();
    options.pages = None;
    options.task_command = Some(format!(
        "RUST_LOG=${{RUST_LOG:-info}} exec {}",
        sfu_binary()
    ));
    options.task_stop_timeout = Duration::from_secs(10);
    for (name, value) in [
        ("SWITCHBOARD_OPERATOR_KEYS", OPERATOR_KEY),
        ("SWITCHBOARD_TURN_SECRET", "turn-secret"),
        ("SWITCHBOARD_STUN_URLS", "stun:127.0.0.1:3478"),
    ] {
        options.vars.insert(name.into(), value.into());
    }
    options
}

pub async fn start(options: StackOptions) -> Stack {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    Stack::start(options).await.expect("local stack starts")
}

pub struct Room {
    pub id: String,
    pub task_arn: String,
}

/// createRoom, then claimRoom once the SFU has identified (the room is warm).
pub async fn create_and_claim(stack: &Stack, path: &str) -> Room {
    let http = reqwest::Client::new();
    let created: Value = http
        .put(format!("{}/createRoom", stack.http_url))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .expect("createRoom")
        .json()
        .await
        .expect("createRoom body");
    let id = created["roomId"].as_str().expect("roomId").to_string();
    let task_arn = created["taskArn"].as_str().expect("taskArn").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let claim = http
            .patch(format!("{}/claimRoom", stack.http_url))
            .json(&json!({ "urlPath": path }))
            .send()
            .await
            .expect("claimRoom");
        if claim.status().as_u16() == 200 {
            let body: Value = claim.json().await.expect("claim body");
            assert_eq!(body["roomId"], id.as_str(), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the SFU never made its room claimable: {}",
            claim.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Room { id, task_arn }
}

/// The task's process id, once it has one.
pub fn task_pid(stack: &Stack, arn: &str) -> Option<u32> {
    stack.tasks().into_iter().find(|t| t.task_arn == arn)?.pid
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).unwrap_or_default().starts_with('Z'))
        .unwrap_or(false)
}
