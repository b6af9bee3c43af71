//! The local ECS endpoint as the AWS SDK's ECS client sees it: RunTask (startedBy, clientToken,
//! overrides, capacity), the task's own address, status progression, StopTask's SIGTERM then
//! SIGKILL, DescribeTasks, ListTasks; and the example server as a room's real SFU process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType, NetworkConfiguration,
    TaskOverride,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::Clock;
use switchboard_local::dynamodb;
use switchboard_local::{DEFAULT_CLUSTER, DEFAULT_TASK_DEFINITION, Stack, StackOptions};
use tokio_tungstenite::tungstenite::Message;

const OPERATOR_KEY: &str = "operator-key";

/// One DynamoDB Local for this test binary (or `SWITCHBOARD_TEST_DYNAMODB`).
fn dynamodb_endpoint() -> String {
    dynamodb::for_process().expect("DynamoDB Local starts")
}

fn options(task_command: Option<String>) -> StackOptions {
    let mut options = StackOptions::new(dynamodb_endpoint());
    options.table_prefix = format!("e{}-", uuid::Uuid::new_v4().simple());
    options.clock = Clock::system();
    options.task_command = task_command;
    options.pages = None;
    for (name, value) in [
        ("SWITCHBOARD_OPERATOR_KEYS", OPERATOR_KEY),
        ("SWITCHBOARD_TURN_SECRET", "turn-secret"),
    ] {
        options.vars.insert(name.into(), value.into());
    }
    options
}

async fn start(options: StackOptions) -> (Stack, Client) {
    // A request that fails says why in the test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let stack = Stack::start(options).await.expect("local stack starts");
    let sdk = switchboard_local::local_sdk_config().await;
    let config = aws_sdk_ecs::config::Builder::from(&sdk)
        .endpoint_url(&stack.ecs_url)
        .build();
    (stack, Client::from_conf(config))
}

/// A scratch directory for task commands to write into.
fn scratch() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("switchboard-ecs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_task(ecs: &Client) -> aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder {
    let vpc = AwsVpcConfiguration::builder()
        .subnets("subnet-local")
        .build()
        .unwrap();
    ecs.run_task()
        .cluster(DEFAULT_CLUSTER)
        .task_definition(DEFAULT_TASK_DEFINITION)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
}

fn overrides(env: &[(&str, &str)], command: &[&str]) -> TaskOverride {
    let mut container = ContainerOverride::builder().name("game");
    for (name, value) in env {
        container =
            container.environment(KeyValuePair::builder().name(*name).value(*value).build());
    }
    for arg in command {
        container = container.command(*arg);
    }
    TaskOverride::builder()
        .container_overrides(container.build())
        .build()
}

async fn describe(ecs: &Client, task: &str) -> aws_sdk_ecs::types::Task {
    let out = ecs
        .describe_tasks()
        .cluster(DEFAULT_CLUSTER)
        .tasks(task)
        .send()
        .await
        .expect("DescribeTasks");
    out.tasks().first().cloned().expect("the task is described")
}

/// Polls DescribeTasks until the task's lastStatus is `status`.
async fn wait_status(
    ecs: &Client,
    task: &str,
    status: &str,
    limit: Duration,
) -> aws_sdk_ecs::types::Task {
    let deadline = Instant::now() + limit;
    loop {
        let described = describe(ecs, task).await;
        if described.last_status() == Some(status) {
            return described;
        }
        assert!(
            Instant::now() < deadline,
            "{task} is not {status} within {limit:?}: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_file(path: &Path, containing: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(containing) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {containing:?}: {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).unwrap_or_default().starts_with('Z'))
        .unwrap_or(false)
}

/// The address Fargate reports for a task, where Switchboard reads it.
fn address(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.containers()
        .first()?
        .network_interfaces()
        .first()?
        .private_ipv4_address()
        .map(String::from)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_token_runs_one_task_and_refuses_another_request() {
    let dir = scratch();
    let command = format!("echo $$ >> {}/runs; exec sleep 60", dir.display());
    let (stack, ecs) = start(options(Some(command))).await;

    let first = run_task(&ecs)
        .started_by("room-1")
        .client_token("token-1")
        .send()
        .await
        .expect("RunTask");
    let again = run_task(&ecs)
        .started_by("room-1")
        .client_token("token-1")
        .send()
        .await
        .expect("RunTask again");
    let arn = first.tasks()[0].task_arn().unwrap();
    assert_eq!(again.tasks()[0].task_arn(), Some(arn), "the same task");
    assert_eq!(stack.tasks().len(), 1);
    wait_for_file(&dir.join("runs"), "\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = std::fs::read_to_string(dir.join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "one process: {runs:?}");

    let conflict = run_task(&ecs)
        .started_by("room-2")
        .client_token("token-1")
        .send()
        .await
        .expect_err("another request with the same token");
    let conflict = conflict.into_service_error();
    assert!(conflict.is_conflict_exception(), "{conflict:?}");
    assert_eq!(stack.tasks().len(), 1);

    // Without a token of its own, the SDK makes one per call: two calls, two tasks.
    run_task(&ecs).send().await.expect("RunTask");
    run_task(&ecs).send().await.expect("RunTask");
    assert_eq!(stack.tasks().len(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn started_by_is_at_most_128_characters() {
    let (stack, ecs) = start(options(None)).await;
    let refused = run_task(&ecs)
        .started_by("a".repeat(129))
        .send()
        .await
        .expect_err("startedBy of 129 characters")
        .into_service_error();
    assert!(refused.is_invalid_parameter_exception(), "{refused:?}");
    assert!(stack.tasks().is_empty());

    let out = run_task(&ecs)
        .started_by("a".repeat(128))
        .send()
        .await
        .expect("128 characters are fine");
    assert_eq!(out.tasks()[0].started_by(), Some("a".repeat(128).as_str()));
    assert_eq!(stack.tasks()[0].started_by, Some("a".repeat(128)));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_tasks_filters_by_started_by_and_status_and_pages() {
    let (_stack, ecs) = start(options(None)).await;
    let mut arns = Vec::new();
    for started_by in ["switchboard-a", "switchboard-a", "switchboard-b"] {
        let out = run_task(&ecs).started_by(started_by).send().await.unwrap();
        arns.push(out.tasks()[0].task_arn().unwrap().to_string());
    }
    let list = |started_by: Option<&str>, status: Option<aws_sdk_ecs::types::DesiredStatus>| {
        ecs.list_tasks()
            .cluster(DEFAULT_CLUSTER)
            .set_started_by(started_by.map(String::from))
            .set_desired_status(status)
    };
    let a = list(Some("switchboard-a"), None).send().await.unwrap();
    assert_eq!(a.task_arns(), &arns[..2]);
    assert_eq!(a.next_token(), None);
    let all = list(None, None).send().await.unwrap();
    assert_eq!(all.task_arns(), &arns[..]);

    // One page at a time.
    let mut paged = Vec::new();
    let mut token = None;
    for _ in 0..10 {
        let page = list(None, None)
            .max_results(1)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert!(page.task_arns().len() <= 1);
        paged.extend(page.task_arns().iter().cloned());
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, arns);
    let refused = list(None, None).max_results(101).send().await.unwrap_err();
    assert!(
        refused
            .into_service_error()
            .is_invalid_parameter_exception()
    );

    // A stopped task leaves RUNNING for STOPPED.
    ecs.stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(&arns[0])
        .send()
        .await
        .unwrap();
    let running = list(Some("switchboard-a"), None).send().await.unwrap();
    assert_eq!(running.task_arns(), &arns[1..2]);
    let stopped = list(None, Some(aws_sdk_ecs::types::DesiredStatus::Stopped))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.task_arns(), &arns[..1]);
    let family = ecs
        .list_tasks()
        .cluster(DEFAULT_CLUSTER)
        .family("another-family")
        .send()
        .await
        .unwrap();
    assert!(family.task_arns().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_tasks_reports_running_with_the_address_then_stopped_with_the_exit_code() {
    let dir = scratch();
    let command = format!(
        "printf '%s %s|%s\\n' \"$TASK_IP\" \"$GREETING\" \"$*\" > {}/env; exec sleep 60",
        dir.display()
    );
    let (stack, ecs) = start(options(Some(command))).await;
    let out = run_task(&ecs)
        .started_by("room-1")
        .overrides(overrides(&[("GREETING", "hello")], &["--map", "de dust"]))
        .send()
        .await
        .unwrap();
    let placed = &out.tasks()[0];
    assert!(
        matches!(placed.last_status(), Some("PROVISIONING" | "PENDING")),
        "{placed:?}"
    );
    assert_eq!(placed.desired_status(), Some("RUNNING"));
    let arn = placed.task_arn().unwrap().to_string();

    let running = wait_status(&ecs, &arn, "RUNNING", Duration::from_secs(5)).await;
    let ip = address(&running).expect("the task's address");
    assert!(
        ip.starts_with("127.0.0.") && ip != "127.0.0.1",
        "a loopback address of its own: {ip}"
    );
    let eni = &running.attachments()[0];
    assert_eq!(eni.r#type(), Some("ElasticNetworkInterface"));
    assert!(
        eni.details()
            .iter()
            .any(|d| d.name() == Some("privateIPv4Address") && d.value() == Some(ip.as_str()))
    );
    let record = stack.tasks().remove(0);
    assert_eq!(record.address.to_string(), ip);
    assert_eq!(record.command, ["--map", "de dust"]);
    let env = wait_for_file(&dir.join("env"), "\n").await;
    assert_eq!(
        env,
        format!("{ip} hello|--map de dust\n"),
        "TASK_IP, env and args"
    );

    // By task id too; unknown tasks are MISSING.
    let id = arn.rsplit('/').next().unwrap();
    let both = ecs
        .describe_tasks()
        .cluster(DEFAULT_CLUSTER)
        .tasks(id)
        .tasks("no-such-task")
        .send()
        .await
        .unwrap();
    assert_eq!(both.tasks()[0].task_arn(), Some(arn.as_str()));
    assert_eq!(both.failures()[0].reason(), Some("MISSING"));
    assert_eq!(both.failures()[0].arn(), Some("no-such-task"));

    let stopping = ecs
        .stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(&arn)
        .reason("Room ended")
        .send()
        .await
        .unwrap();
    assert_eq!(stopping.task().unwrap().desired_status(), Some("STOPPED"));
    let stopped = wait_status(&ecs, &arn, "STOPPED", Duration::from_secs(5)).await;
    assert_eq!(stopped.stopped_reason(), Some("Room ended"));
    assert_eq!(
        stopped.stop_code(),
        Some(&aws_sdk_ecs::types::TaskStopCode::UserInitiated)
    );
    assert_eq!(
        stopped.containers()[0].exit_code(),
        Some(143),
        "sleep got SIGTERM"
    );
    assert!(!alive(record.pid.unwrap()));

    // Stopping it again returns it; an unknown task is an invalid parameter.
    let again = ecs
        .stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(again.task().unwrap().last_status(), Some("STOPPED"));
    let unknown = ecs
        .stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task("no-such-task")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(unknown.is_invalid_parameter_exception(), "{unknown:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let dir = scratch();
    let command = format!(
        "trap '' TERM; echo trapped > {}/ready; sleep 60",
        dir.display()
    );
    let mut options = options(Some(command));
    options.task_stop_timeout = Duration::from_secs(1);
    let (stack, ecs) = start(options).await;
    let out = run_task(&ecs).send().await.unwrap();
    let arn = out.tasks()[0].task_arn().unwrap().to_string();
    wait_for_file(&dir.join("ready"), "trapped").await;
    let pid = stack.tasks()[0].pid.expect("a process");

    let asked = Instant::now();
    ecs.stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(&arn)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = describe(&ecs, &arn).await;
    assert_eq!(stopping.desired_status(), Some("STOPPED"));
    assert_eq!(
        stopping.last_status(),
        Some("RUNNING"),
        "SIGTERM is ignored"
    );
    assert!(alive(pid));
    let stopped = wait_status(&ecs, &arn, "STOPPED", Duration::from_secs(5)).await;
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "not before the timeout"
    );
    assert_eq!(stopped.containers()[0].exit_code(), Some(137), "SIGKILL");
    assert!(!alive(pid));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_get_their_own_addresses_and_bind_the_same_port() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let command = format!("exec {}", env!("CARGO_BIN_EXE_switchboard-example-server"));
    let (stack, ecs) = start(options(Some(command))).await;
    let mut arns = Vec::new();
    for id in ["server-1", "server-2"] {
        let env = [("SERVER_ID", id), ("GAME_PORT", port.as_str())];
        let out = run_task(&ecs)
            .overrides(overrides(&env, &[]))
            .send()
            .await
            .unwrap();
        arns.push(out.tasks()[0].task_arn().unwrap().to_string());
    }
    let mut addresses = Vec::new();
    for (arn, id) in arns.iter().zip(["server-1", "server-2"]) {
        let task = wait_status(&ecs, arn, "RUNNING", Duration::from_secs(5)).await;
        let ip = address(&task).unwrap();
        assert_eq!(ping(&ip, &port).await, format!("pong {id}"));
        addresses.push(ip);
    }
    assert_ne!(addresses[0], addresses[1], "each task has its own address");

    // A stopped task's address is free again; the next task gets one no running task holds.
    ecs.stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(&arns[0])
        .send()
        .await
        .unwrap();
    wait_status(&ecs, &arns[0], "STOPPED", Duration::from_secs(5)).await;
    let env = [("SERVER_ID", "server-3"), ("GAME_PORT", port.as_str())];
    let out = run_task(&ecs)
        .overrides(overrides(&env, &[]))
        .send()
        .await
        .unwrap();
    let third = wait_status(
        &ecs,
        out.tasks()[0].task_arn().unwrap(),
        "RUNNING",
        Duration::from_secs(5),
    )
    .await;
    let third_ip = address(&third).expect("an address");
    assert_ne!(third_ip, addresses[1], "not the running task's");
    assert_eq!(ping(&third_ip, &port).await, "pong server-3");
    assert_eq!(stack.tasks().iter().filter(|t| !t.stopped).count(), 2);
}

/// Sends `ping` to ip:port over UDP until a reply comes (the server may still be binding).
async fn ping(ip: &str, port: &str) -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..50 {
        socket
            .send_to(b"ping", format!("{ip}:{port}"))
            .await
            .unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    panic!("no pong from {ip}:{port}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_task_fails_for_capacity_beyond_the_running_tasks_allowed() {
    let mut options = options(Some("exec sleep 60".into()));
    options.ecs_capacity = Some(1);
    let (_stack, ecs) = start(options).await;
    let first = run_task(&ecs).send().await.unwrap();
    assert!(first.failures().is_empty());
    let full = run_task(&ecs).send().await.unwrap();
    assert!(full.tasks().is_empty());
    assert_eq!(full.failures()[0].reason(), Some("RESOURCE:FARGATE"));

    let arn = first.tasks()[0].task_arn().unwrap();
    ecs.stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(arn)
        .send()
        .await
        .unwrap();
    wait_status(&ecs, arn, "STOPPED", Duration::from_secs(5)).await;
    let again = run_task(&ecs).send().await.unwrap();
    assert_eq!(again.tasks().len(), 1, "room again once the first stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_stack_leaves_no_task_process() {
    let dir = scratch();
    // The task's main process and a child of it both ignore SIGTERM.
    let command = format!(
        "trap '' TERM; sleep 60 & echo $! > {}/$ROLE.pid; wait",
        dir.display()
    );
    let mut options = options(Some(command));
    options.task_stop_timeout = Duration::from_secs(1);
    let (mut stack, ecs) = start(options).await;
    for role in ["stubborn", "other"] {
        run_task(&ecs)
            .overrides(overrides(&[("ROLE", role)], &[]))
            .send()
            .await
            .unwrap();
    }
    let mut pids: Vec<u32> = stack.tasks().iter().map(|t| t.pid.unwrap()).collect();
    for role in ["stubborn", "other"] {
        let child = wait_for_file(&dir.join(format!("{role}.pid")), "\n").await;
        pids.push(child.trim().parse().unwrap());
    }
    stack.stop();
    // SIGKILL to the group is delivered at once; a killed process is gone a moment later.
    for pid in pids {
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "process {pid} outlived the stack");
    }
    assert!(stack.tasks().iter().all(|t| t.stopped));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_server_serves_its_room_and_stops_on_sigterm() {
    let dir = scratch();
    let command = format!(
        "EXAMPLE_SERVER_EVENTS={}/$ROOM_ID.events exec {}",
        dir.display(),
        env!("CARGO_BIN_EXE_switchboard-example-server")
    );
    let (stack, ecs) = start(options(Some(command))).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .put(format!("{}/createRoom", stack.http_url))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = created["roomId"].as_str().expect("roomId").to_string();
    let events = dir.join(format!("{room}.events"));
    wait_for_file(&events, "identified").await;

    // Its identify made the room claimable.
    let claim = http
        .patch(format!("{}/claimRoom", stack.http_url))
        .json(&json!({ "urlPath": "/x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status().as_u16(), 200);

    // A client's offer gets the server's answer.
    let (mut client, _) = tokio_tungstenite::connect_async(&stack.ws_url)
        .await
        .unwrap();
    let send = |action: &str, data: Value| {
        Message::Text(json!({ "action": action, "data": data }).to_string().into())
    };
    client
        .send(send(
            "identify",
            json!({ "id": "viewer", "type": "client", "roomId": room }),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["type"], "identified");
    let offer = json!({ "type": "consumer", "description": { "type": "offer", "sdp": "v=0" } });
    client.send(send("handshake", offer)).await.unwrap();
    let answer = next_json(&mut client).await;
    assert_eq!(answer["description"]["type"], "answer", "{answer}");
    assert_eq!(answer["description"]["sdp"], format!("answer-from-{room}"));
    assert_eq!(answer["sender"], room.as_str());

    // Its socket dropped (as API Gateway drops sockets at 2 h), it reconnects and identifies
    // again. (Whether the gateway accepts that identify for a claimed room is the server
    // lifecycle's business, tested with it.)
    let room_record = stack
        .deps
        .store
        .room(&room)
        .await
        .unwrap()
        .expect("the room");
    let connection = room_record
        .serving_connection
        .expect("the SFU's connection");
    let sdk = switchboard_local::local_sdk_config().await;
    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(stack.ws_url.replacen("ws://", "http://", 1))
            .build(),
    );
    management
        .delete_connection()
        .connection_id(&connection)
        .send()
        .await
        .expect("the gateway drops the socket");
    // Within the reconnect grace its identify is accepted again: it keeps its room.
    wait_for_file(&events, "identified\nreconnecting\nidentified\n").await;

    // StopTask: SIGTERM, a clean exit.
    let arn = created["taskArn"].as_str().expect("taskArn");
    ecs.stop_task()
        .cluster(DEFAULT_CLUSTER)
        .task(arn)
        .send()
        .await
        .unwrap();
    let stopped = wait_status(&ecs, arn, "STOPPED", Duration::from_secs(3)).await;
    assert_eq!(stopped.containers()[0].exit_code(), Some(0));
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(
        text.ends_with("reconnecting\nidentified\nsigterm\nexit\n"),
        "{text:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no frame: {other:?}"),
        }
    }
}

/// `--sfu-command` runs the SFU task definition's tasks (a createRoom room, a warm room, a
/// session of the `sfu` application); `--task-command` runs every other application's.
#[tokio::test(flavor = "multi_thread")]
async fn the_sfu_command_runs_rooms_and_the_task_command_runs_other_applications() {
    let dir = scratch();
    let record = |what: &str| {
        format!(
            r#"echo {what} > {}/"${{ROOM_ID:-$SERVER_ID}}"; exec sleep 60"#,
            dir.display()
        )
    };
    let mut options = options(Some(record("task")));
    options.sfu_command = Some(record("sfu"));
    options.task_stop_timeout = Duration::from_secs(1);
    options.vars.insert(
        "SWITCHBOARD_APPLICATIONS".into(),
        json!({
            "sfu": { "taskDefinition": DEFAULT_TASK_DEFINITION, "container": "sfu" },
            "arena": { "taskDefinition": "switchboard-arena", "container": "game" },
        })
        .to_string(),
    );
    options
        .vars
        .insert("SWITCHBOARD_WARM_ROOMS".into(), "1".into());
    options
        .vars
        .insert("SWITCHBOARD_SESSION_WAIT_SECONDS".into(), "1".into());
    let (stack, _) = start(options).await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{}{path}", stack.http_url))
            .bearer_auth(OPERATOR_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let reply = request.send().await.expect("the stack answers");
            let status = reply.status().as_u16();
            (status, reply.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let id = |body: &Value, field: &str| body[field].as_str().expect(field).to_string();

    let (status, room) = call(reqwest::Method::PUT, "/createRoom", None).await;
    assert_eq!(status, 200, "{room}");
    let room = id(&room, "roomId");
    let warm = stack.sweep().await.launched;
    assert_eq!(warm.len(), 1, "one warm room");
    let mut sessions = Vec::new();
    for image in ["sfu", "arena"] {
        let (status, session) = call(
            reqwest::Method::POST,
            "/session",
            Some(json!({ "image": image, "location": "local" })),
        )
        .await;
        assert_eq!(status, 201, "{image}: {session}");
        let server = stack
            .tasks()
            .into_iter()
            .filter_map(|t| {
                t.environment
                    .get("SESSION_ID")
                    .cloned()
                    .zip(t.environment.get("SERVER_ID").cloned())
            })
            .find(|(session_id, _)| *session_id == id(&session, "id"))
            .map(|(_, server)| server)
            .expect("the session's task");
        sessions.push(server);
    }
    for (server, ran) in [
        (&room, "sfu"),
        (&warm[0], "sfu"),
        (&sessions[0], "sfu"),
        (&sessions[1], "task"),
    ] {
        assert_eq!(
            wait_for_file(&dir.join(server), ran).await.trim(),
            ran,
            "{server}"
        );
    }
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}
