//! The ECS endpoint (AWS JSON 1.1, as the AWS SDK sends it): RunTask, StopTask, DescribeTasks,
//! ListTasks. Each task is recorded with its container overrides and, given `--task-command`,
//! runs that command through `sh -c` in a process group of its own, as a Fargate container
//! (tasks of the SFU task definition run `--sfu-command` instead, when it is given):
//!
//! - each task has its own private loopback address (127.0.0.2 upward, reused once a task is
//!   STOPPED) and, when RunTask asks for a public IP (`assignPublicIp` ENABLED), a public one
//!   (127.1.0.x for 127.0.0.x), which the EC2 endpoint (`ec2.rs`, on this listener) reports as
//!   its network interface's association, as EC2 reports a Fargate task's public IPv4;
//! - the container environment override is its environment, with `TASK_IP` set to the address
//!   clients reach it at (its public address if it has one, else its private one): a task
//!   binds that address, standing in for a container that listens on every interface;
//! - the container `command` override (the container's args) is its positional parameters
//!   (`$1`, `$2`, ... or `"$@"` in the command);
//! - DescribeTasks reports the address as Fargate reports a task's address: in the
//!   `ElasticNetworkInterface` attachment's `privateIPv4Address` detail and in
//!   `containers[].networkInterfaces[].privateIpv4Address`;
//! - StopTask sends SIGTERM to the process group, then SIGKILL after the stop timeout; when the
//!   command's main process exits, the rest of its group is killed (a container ends with its
//!   main process), and the task is STOPPED with the container's exit code (128 + signal for a
//!   process killed by a signal, as Docker reports it).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";
/// ECS's limits on `startedBy` and on RunTask's `clientToken`.
const STARTED_BY_MAX: usize = 128;
const CLIENT_TOKEN_MAX: usize = 64;

/// A task as tests see it.
#[derive(Clone, Debug)]
pub struct TaskRecord {
    pub task_arn: String,
    /// The container's environment override (without `TASK_IP`).
    pub environment: HashMap<String, String>,
    /// lastStatus is STOPPED: the task's process, if it had one, is gone.
    pub stopped: bool,
    /// The address the task's command listens on, given to it as `TASK_IP`: its public
    /// address if it has one, else its private one.
    pub address: Ipv4Addr,
    /// Its private address (what DescribeTasks reports).
    pub private_address: Ipv4Addr,
    /// Its network interface's public address (what EC2 DescribeNetworkInterfaces reports).
    pub public_address: Option<Ipv4Addr>,
    /// Its network interface's id (`eni-...`).
    pub network_interface: String,
    pub started_by: Option<String>,
    /// The region the RunTask request was signed for (from its SigV4 credential scope).
    pub region: Option<String>,
    /// The container's `command` override, given to the task command as `$1`, `$2`, ...
    pub command: Vec<String>,
    /// The task command's process id (and process group id), once spawned.
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub last_status: &'static str,
    pub desired_status: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Status {
    Provisioning,
    Running,
    Stopped,
}

struct Task {
    arn: String,
    /// The region the RunTask call was signed for (a session location's region).
    region: Option<String>,
    container: String,
    environment: HashMap<String, String>,
    command: Vec<String>,
    started_by: Option<String>,
    /// The private address.
    address: Ipv4Addr,
    /// The network interface's public address (RunTask's `assignPublicIp` ENABLED).
    public_address: Option<Ipv4Addr>,
    pid: Option<u32>,
    last: Status,
    desired_stopped: bool,
    exit_code: Option<i32>,
    stop_code: Option<&'static str>,
    stopped_reason: Option<String>,
    created_at: f64,
    started_at: Option<f64>,
    stopping_at: Option<f64>,
    stopped_at: Option<f64>,
    version: i64,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: plain kill(2) on a process group this stack created; its leader is not
        // reaped before the task is marked stopped, so the id cannot have been reused.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Removes `null` members, which ECS never sends.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

impl Task {
    fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or_default()
    }

    fn matches(&self, wanted: &str) -> bool {
        self.arn == wanted || self.id() == wanted
    }

    fn last_status(&self) -> &'static str {
        match self.last {
            Status::Provisioning => "PROVISIONING",
            Status::Running => "RUNNING",
            Status::Stopped => "STOPPED",
        }
    }

    fn desired_status(&self) -> &'static str {
        if self.desired_stopped {
            "STOPPED"
        } else {
            "RUNNING"
        }
    }

    /// Its network interface's id.
    pub(crate) fn network_interface(&self) -> String {
        format!("eni-{}", &self.id()[..self.id().len().min(17)])
    }

    /// The address its command listens on (`TASK_IP`).
    fn listening_address(&self) -> Ipv4Addr {
        self.public_address.unwrap_or(self.address)
    }

    fn record(&self) -> TaskRecord {
        TaskRecord {
            task_arn: self.arn.clone(),
            environment: self.environment.clone(),
            stopped: self.last == Status::Stopped,
            address: self.listening_address(),
            private_address: self.address,
            public_address: self.public_address,
            network_interface: self.network_interface(),
            started_by: self.started_by.clone(),
            region: self.region.clone(),
            command: self.command.clone(),
            pid: self.pid,
            exit_code: self.exit_code,
            last_status: self.last_status(),
            desired_status: self.desired_status(),
        }
    }

    fn to_json(&self, cluster_arn: &str, definition_arn: &str, family: &str) -> Value {
        let environment: Vec<Value> = self
            .environment
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        let attachment = format!("{}-eni", self.id());
        let eni = self.network_interface();
        let ip = self.address.to_string();
        let detail = |name: &str, value: &str| json!({ "name": name, "value": value });
        let (attachment_status, container_status) = match self.last {
            Status::Provisioning => ("PRECREATED", "PENDING"),
            Status::Running => ("ATTACHED", "RUNNING"),
            Status::Stopped => ("DELETED", "STOPPED"),
        };
        let mut task = json!({
            "taskArn": self.arn,
            "clusterArn": cluster_arn,
            "taskDefinitionArn": definition_arn,
            "group": format!("family:{family}"),
            "lastStatus": self.last_status(),
            "desiredStatus": self.desired_status(),
            "launchType": "FARGATE",
            "platformVersion": "1.4.0",
            "platformFamily": "Linux",
            "availabilityZone": format!("{REGION}a"),
            "connectivity": "CONNECTED",
            "startedBy": self.started_by,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "stoppingAt": self.stopping_at,
            "stoppedAt": self.stopped_at,
            "stoppedReason": self.stopped_reason,
            "stopCode": self.stop_code,
            "version": self.version,
            "overrides": { "containerOverrides": [{
                "name": self.container,
                "environment": environment,
                "command": if self.command.is_empty() { None } else { Some(&self.command) },
            }] },
            "attachments": [{
                "id": attachment,
                "type": "ElasticNetworkInterface",
                "status": attachment_status,
                "details": [
                    detail("subnetId", "subnet-local"),
                    detail("networkInterfaceId", &eni),
                    detail("privateDnsName", &format!("ip-{}.ec2.internal", ip.replace('.', "-"))),
                    detail("privateIPv4Address", &ip),
                ],
            }],
            "containers": [{
                "containerArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container/{}/{}", self.id(), self.container),
                "taskArn": self.arn,
                "name": self.container,
                "lastStatus": container_status,
                "exitCode": self.exit_code,
                "networkInterfaces": [{ "attachmentId": attachment, "privateIpv4Address": ip }],
            }],
        });
        strip_nulls(&mut task);
        task
    }
}

#[derive(Default)]
struct Tasks {
    /// Every task of the stack's life, in launch order (indexes are stable).
    all: Vec<Task>,
    /// RunTask client tokens: the request (without its token) and the tasks it started.
    tokens: HashMap<String, (Value, Vec<usize>)>,
}

/// `family` of `family`, `family:3` or a task definition ARN.
fn family_of(definition: &str) -> String {
    let name = definition.rsplit('/').next().unwrap_or(definition);
    name.split(':').next().unwrap_or(name).to_string()
}

pub struct EcsState {
    cluster: String,
    task_definition: String,
    /// Families RunTask accepts besides `task_definition`'s (the sessions API's applications).
    other_families: Vec<String>,
    task_command: Option<String>,
    /// The command of the SFU task definition's tasks (else `task_command`).
    sfu_command: Option<String>,
    capacity: Option<usize>,
    gate: Option<crate::LaunchGate>,
    stop_timeout: Duration,
    tasks: Mutex<Tasks>,
    /// Notified whenever a task reaches STOPPED.
    stopped: Condvar,
}

impl EcsState {
    pub fn new(
        cluster: &str,
        task_definition: &str,
        task_command: Option<String>,
        sfu_command: Option<String>,
        capacity: Option<usize>,
        gate: Option<crate::LaunchGate>,
        stop_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            cluster: cluster.to_string(),
            task_definition: task_definition.to_string(),
            other_families: Vec::new(),
            task_command,
            sfu_command,
            capacity,
            gate,
            stop_timeout,
            tasks: Mutex::default(),
            stopped: Condvar::new(),
        })
    }

    /// Also accept RunTask of these task definitions (families or ARNs).
    pub fn with_task_definitions(mut self: Arc<Self>, definitions: Vec<String>) -> Arc<Self> {
        if let Some(state) = Arc::get_mut(&mut self) {
            state.other_families = definitions.iter().map(|d| family_of(d)).collect();
        }
        self
    }

    fn lock(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cluster_arn(&self) -> String {
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{}", self.cluster)
    }

    fn family(&self) -> &str {
        let name = self.task_definition.rsplit('/').next().unwrap_or_default();
        name.split(':').next().unwrap_or_default()
    }

    fn definition_arn(&self) -> String {
        format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{}:1",
            self.family()
        )
    }

    fn describe(&self, task: &Task) -> Value {
        task.to_json(&self.cluster_arn(), &self.definition_arn(), self.family())
    }

    /// The request's cluster (ECS's `default` when none is named) must be this one.
    fn require_cluster(&self, request: &Value) -> Result<(), EcsError> {
        let requested = request
            .get("cluster")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if requested == self.cluster || requested == self.cluster_arn() {
            Ok(())
        } else {
            Err(EcsError::new(
                "ClusterNotFoundException",
                "Cluster not found.",
            ))
        }
    }

    fn known_definition(&self, requested: &str) -> bool {
        let requested = family_of(requested);
        requested == self.family() || self.other_families.contains(&requested)
    }

    /// The network interfaces of the tasks that are not stopped (a stopped task's interface is
    /// deleted): id, private address, public address.
    pub(crate) fn interfaces(&self) -> Vec<(String, Ipv4Addr, Option<Ipv4Addr>)> {
        self.lock()
            .all
            .iter()
            .filter(|t| t.last != Status::Stopped)
            .map(|t| (t.network_interface(), t.address, t.public_address))
            .collect()
    }

    pub fn tasks(&self) -> Vec<TaskRecord> {
        self.lock().all.iter().map(Task::record).collect()
    }

    /// Stops every task and waits until their processes are gone: SIGTERM, then SIGKILL
    /// after the stop timeout.
    pub fn stop_all(&self) {
        let mut tasks = self.lock();
        for task in tasks.all.iter_mut() {
            Self::stop(task, "Local stack stopped", "TerminationNotice");
        }
        let running = |t: &mut Tasks| t.all.iter().any(|t| t.last != Status::Stopped);
        let (tasks, _) = self
            .stopped
            .wait_timeout_while(tasks, self.stop_timeout, running)
            .unwrap_or_else(|p| p.into_inner());
        for task in tasks.all.iter().filter(|t| t.last != Status::Stopped) {
            if let Some(pid) = task.pid {
                signal_group(pid, libc::SIGKILL);
            }
        }
        // SIGKILL cannot be ignored; wait (briefly) for the task threads to record the exits.
        let _ = self
            .stopped
            .wait_timeout_while(tasks, Duration::from_secs(5), running);
    }

    /// Marks a task to stop and sends its process group SIGTERM. A task without a process
    /// stops at once. Returns whether a process was signalled.
    fn stop(task: &mut Task, reason: &str, code: &'static str) -> bool {
        if task.last == Status::Stopped || task.desired_stopped {
            return false;
        }
        task.desired_stopped = true;
        task.stopping_at = Some(now());
        task.stopped_reason = Some(reason.to_string());
        task.stop_code = Some(code);
        task.version += 1;
        match task.pid {
            Some(pid) => {
                signal_group(pid, libc::SIGTERM);
                true
            }
            None => {
                task.last = Status::Stopped;
                task.stopped_at = task.stopping_at;
                false
            }
        }
    }

    /// SIGKILL for the task's process group if it is still there after the stop timeout.
    fn escalate(self: &Arc<Self>, index: usize) {
        let state = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ecs-stop".into())
            .spawn(move || {
                let tasks = state.lock();
                let (tasks, _) = state
                    .stopped
                    .wait_timeout_while(tasks, state.stop_timeout, |t| {
                        t.all[index].last != Status::Stopped
                    })
                    .unwrap_or_else(|p| p.into_inner());
                let task = &tasks.all[index];
                if task.last != Status::Stopped
                    && let Some(pid) = task.pid
                {
                    tracing::info!(task = task.arn, "ECS task ignored SIGTERM: SIGKILL");
                    signal_group(pid, libc::SIGKILL);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch a stopping task");
        }
    }

    /// Runs the task command for task `index` on a thread of its own, which waits for it.
    /// Returns the process id (its process group id too).
    fn spawn(self: &Arc<Self>, index: usize, command: &str, task: &Task) -> std::io::Result<u32> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .arg("sh")
            .args(&task.command)
            .stdin(Stdio::null())
            .process_group(0);
        // A container has its own environment, not the stack's configuration or credentials.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("SWITCHBOARD_") || name.starts_with("AWS_") {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.envs(&task.environment)
            .env("TASK_IP", task.listening_address().to_string());
        // SAFETY: prctl is async-signal-safe and touches only the child being created. The
        // spawning thread lives as long as the child, so this fires only if the stack dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let (spawned, pid) = std::sync::mpsc::channel();
        let state = Arc::clone(self);
        std::thread::Builder::new()
            .name("ecs-task".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = spawned.send(Err(e));
                        return;
                    }
                };
                let pid = child.id();
                let _ = spawned.send(Ok(pid));
                let exit_code = wait_without_reaping(pid);
                // A container ends with its main process: nothing of its group outlives it.
                signal_group(pid, libc::SIGKILL);
                state.exited(index, exit_code);
                let _ = child.wait();
            })?;
        pid.recv()
            .map_err(|_| std::io::Error::other("the task thread ended"))?
    }

    fn exited(&self, index: usize, exit_code: Option<i32>) {
        let mut tasks = self.lock();
        let task = &mut tasks.all[index];
        task.last = Status::Stopped;
        task.exit_code = exit_code;
        task.stopped_at = Some(now());
        task.stopping_at.get_or_insert(now());
        task.desired_stopped = true;
        task.stop_code.get_or_insert("EssentialContainerExited");
        task.stopped_reason
            .get_or_insert_with(|| "Essential container in task exited".into());
        task.version += 1;
        tracing::info!(task = task.arn, exit_code, "ECS task stopped");
        self.stopped.notify_all();
    }

    /// A 127.0.0.x (x ≥ 2) no unstopped task holds, taken round-robin from a counter shared
    /// by every stack in the process, so that stacks running side by side (tests) rarely hand
    /// out the same address while both tasks run.
    fn free_address(tasks: &Tasks) -> Option<Ipv4Addr> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (0..253u32)
            .map(|i| Ipv4Addr::new(127, 0, 0, 2 + ((start + i) % 253) as u8))
            .find(|a| {
                !tasks
                    .all
                    .iter()
                    .any(|t| t.last != Status::Stopped && t.address == *a)
            })
    }

    fn run_task(self: &Arc<Self>, request: &Value) -> Result<Value, EcsError> {
        self.require_cluster(request)?;
        let definition = request
            .get("taskDefinition")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.known_definition(definition) {
            return Err(EcsError::new(
                "ClientException",
                "TaskDefinition not found.",
            ));
        }
        let public_ip = request
            .pointer("/networkConfiguration/awsvpcConfiguration/assignPublicIp")
            .and_then(Value::as_str)
            == Some("ENABLED");
        let subnets = request
            .pointer("/networkConfiguration/awsvpcConfiguration/subnets")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if subnets == 0 {
            return Err(EcsError::new(
                "InvalidParameterException",
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        }
        let started_by = request
            .get("startedBy")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(s) = &started_by
            && (s.len() > STARTED_BY_MAX
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/')))
        {
            return Err(EcsError::new(
                "InvalidParameterException",
                "startedBy may contain up to 128 letters, numbers, hyphens, forward slashes and underscores.",
            ));
        }
        let count = request.get("count").and_then(Value::as_i64).unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(EcsError::new(
                "InvalidParameterException",
                "count must be between 1 and 10.",
            ));
        }
        let token = request.get("clientToken").and_then(Value::as_str);
        if let Some(token) = token
            && (token.is_empty()
                || token.len() > CLIENT_TOKEN_MAX
                || !token.bytes().all(|b| (33..=126).contains(&b)))
        {
            return Err(EcsError::new(
                "InvalidParameterException",
                "clientToken may contain up to 64 ASCII characters in the range 33-126.",
            ));
        }
        let container_override = request.pointer("/overrides/containerOverrides/0");
        let container = container_override
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("sfu")
            .to_string();
        let environment: HashMap<String, String> = container_override
            .and_then(|c| c.get("environment"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|kv| {
                Some((
                    kv.get("name")?.as_str()?.to_string(),
                    kv.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect();
        let command: Vec<String> = container_override
            .and_then(|c| c.get("command"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|arg| arg.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                EcsError::new(
                    "InvalidParameterException",
                    "containerOverrides.command must be a list of strings.",
                )
            })?;

        let mut tasks = self.lock();
        // The same token with the same request (ECS scopes tokens to a cluster: this one)
        // answers with the same tasks; with another request, it is a conflict.
        let mut fingerprint = request.clone();
        if let Some(map) = fingerprint.as_object_mut() {
            map.remove("clientToken");
        }
        if let Some(token) = token
            && let Some((previous, started)) = tasks.tokens.get(token)
        {
            let arns: Vec<String> = started.iter().map(|&i| tasks.all[i].arn.clone()).collect();
            if *previous != fingerprint {
                return Err(EcsError::new(
                    "ConflictException",
                    "The specified client token has already been used in a different request.",
                )
                .with_resources(arns));
            }
            let described: Vec<Value> = started
                .iter()
                .map(|&i| self.describe(&tasks.all[i]))
                .collect();
            return Ok(json!({ "tasks": described, "failures": [] }));
        }

        let (mut described, mut failures, mut started) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..count {
            let running = tasks
                .all
                .iter()
                .filter(|t| t.last != Status::Stopped)
                .count();
            let address = Self::free_address(&tasks);
            let failure = match (self.capacity, address) {
                (Some(cap), _) if running >= cap => Some((
                    "RESOURCE:FARGATE",
                    format!("the local stack's capacity of {cap} running tasks is reached"),
                )),
                (_, None) => Some((
                    "RESOURCE:ENI",
                    "no free loopback address (127.0.0.2-254)".to_string(),
                )),
                _ => None,
            };
            if let Some((reason, detail)) = failure {
                failures.push(
                    json!({ "arn": self.definition_arn(), "reason": reason, "detail": detail }),
                );
                continue;
            }
            let Some(address) = address else { continue };
            let index = tasks.all.len();
            let mut task = Task {
                region: request
                    .get(SIGNED_REGION)
                    .and_then(Value::as_str)
                    .map(String::from),
                arn: format!(
                    "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{}",
                    self.cluster,
                    uuid::Uuid::new_v4().simple()
                ),
                container: container.clone(),
                environment: environment.clone(),
                command: command.clone(),
                started_by: started_by.clone(),
                address,
                public_address: public_ip.then(|| public_address(address)),
                pid: None,
                last: Status::Provisioning,
                desired_stopped: false,
                exit_code: None,
                stop_code: None,
                stopped_reason: None,
                created_at: now(),
                started_at: None,
                stopping_at: None,
                stopped_at: None,
                version: 1,
            };
            // RunTask answers with the task as it was placed, before it runs.
            described.push(self.describe(&task));
            // The SFU task definition's tasks run the SFU command, when there is one.
            let command = if family_of(definition) == self.family() {
                self.sfu_command.as_deref().or(self.task_command.as_deref())
            } else {
                self.task_command.as_deref()
            };
            match command.map(|c| self.spawn(index, c, &task)) {
                Some(Err(e)) => {
                    task.last = Status::Stopped;
                    task.desired_stopped = true;
                    task.stop_code = Some("TaskFailedToStart");
                    task.stopped_reason = Some(format!("CannotStartContainerError: {e}"));
                    task.stopped_at = Some(now());
                }
                spawned => {
                    task.pid = spawned.and_then(Result::ok);
                    task.last = Status::Running;
                    task.started_at = Some(now());
                }
            }
            task.version += 1;
            tracing::info!(task = task.arn, %address, "ECS task started");
            tasks.all.push(task);
            started.push(index);
        }
        if let Some(token) = token
            && !started.is_empty()
        {
            tasks
                .tokens
                .insert(token.to_string(), (fingerprint, started));
        }
        Ok(json!({ "tasks": described, "failures": failures }))
    }

    fn stop_task(self: &Arc<Self>, request: &Value) -> Result<Value, EcsError> {
        self.require_cluster(request)?;
        let wanted = request
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = request
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("Task stopped by user");
        let mut tasks = self.lock();
        let index = tasks
            .all
            .iter()
            .position(|t| t.matches(wanted))
            .ok_or_else(|| {
                EcsError::new(
                    "InvalidParameterException",
                    "The referenced task was not found.",
                )
            })?;
        if Self::stop(&mut tasks.all[index], reason, "UserInitiated") {
            self.escalate(index);
        }
        Ok(json!({ "task": self.describe(&tasks.all[index]) }))
    }

    fn describe_tasks(&self, request: &Value) -> Result<Value, EcsError> {
        self.require_cluster(request)?;
        let wanted: Vec<&str> = request
            .get("tasks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if wanted.is_empty() || wanted.len() > 100 {
            return Err(EcsError::new(
                "InvalidParameterException",
                "tasks must name between 1 and 100 tasks.",
            ));
        }
        let tasks = self.lock();
        let (mut found, mut failures) = (Vec::new(), Vec::new());
        for wanted in wanted {
            match tasks.all.iter().find(|t| t.matches(wanted)) {
                Some(task) => found.push(self.describe(task)),
                None => failures.push(json!({ "arn": wanted, "reason": "MISSING" })),
            }
        }
        Ok(json!({ "tasks": found, "failures": failures }))
    }

    fn list_tasks(&self, request: &Value) -> Result<Value, EcsError> {
        self.require_cluster(request)?;
        let invalid = |message: &str| EcsError::new("InvalidParameterException", message);
        let max_results = match request.get("maxResults").and_then(Value::as_i64) {
            None => 100,
            Some(n @ 1..=100) => n as usize,
            Some(_) => return Err(invalid("maxResults must be between 1 and 100.")),
        };
        let desired = request
            .get("desiredStatus")
            .and_then(Value::as_str)
            .unwrap_or("RUNNING");
        if !matches!(desired, "RUNNING" | "PENDING" | "STOPPED") {
            return Err(invalid(
                "desiredStatus must be RUNNING, PENDING or STOPPED.",
            ));
        }
        let start = match request.get("nextToken").and_then(Value::as_str) {
            None => 0,
            Some(token) => token
                .strip_prefix("local-")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| invalid("Invalid token"))?,
        };
        let text = |name: &str| request.get(name).and_then(Value::as_str);
        let started_by = text("startedBy");
        let family = text("family");
        // Tasks of a service, a container instance or another launch type: none here.
        let elsewhere = text("serviceName").is_some()
            || text("containerInstance").is_some()
            || text("launchType").is_some_and(|l| l != "FARGATE");
        let tasks = self.lock();
        let mut matching = tasks.all.iter().enumerate().skip(start).filter(|(_, t)| {
            !elsewhere
                && t.desired_status() == desired
                && started_by.is_none_or(|s| t.started_by.as_deref() == Some(s))
                && family.is_none_or(|f| f == self.family())
        });
        let page: Vec<String> = matching
            .by_ref()
            .take(max_results)
            .map(|(_, t)| t.arn.clone())
            .collect();
        let next = matching.next().map(|(i, _)| format!("local-{i}"));
        let mut body = json!({ "taskArns": page, "nextToken": next });
        strip_nulls(&mut body);
        Ok(body)
    }
}

/// A task's public address: 127.1.0.x for its private 127.0.0.x (both loopback, so both reach
/// this machine; the task listens on the public one).
fn public_address(private: Ipv4Addr) -> Ipv4Addr {
    let [_, _, _, host] = private.octets();
    Ipv4Addr::new(127, 1, 0, host)
}

/// Waits for process `pid` (a child of this thread's process) to exit, leaving it a zombie so
/// that its id, and its process group's, stay reserved; returns its exit code, 128 + signal
/// for a process killed by a signal.
fn wait_without_reaping(pid: u32) -> Option<i32> {
    let id = libc::id_t::try_from(pid).ok()?;
    loop {
        // SAFETY: waitid(2) with WNOWAIT writes only into `info`, which lives on this stack.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let result =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if result == 0 {
            // SAFETY: for a WEXITED waitid, the SIGCHLD fields of `info` are set.
            let status = unsafe { info.si_status() };
            return Some(if info.si_code == libc::CLD_EXITED {
                status
            } else {
                128 + status
            });
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

struct EcsError {
    kind: &'static str,
    message: String,
    resource_ids: Vec<String>,
}

impl EcsError {
    fn new(kind: &'static str, message: &str) -> Self {
        Self {
            kind,
            message: message.to_string(),
            resource_ids: Vec::new(),
        }
    }

    fn with_resources(mut self, ids: Vec<String>) -> Self {
        self.resource_ids = ids;
        self
    }
}

impl IntoResponse for EcsError {
    fn into_response(self) -> Response {
        let status = if self.kind == "ServerException" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut body = json!({ "__type": self.kind, "message": self.message });
        if !self.resource_ids.is_empty() {
            body["resourceIds"] = json!(self.resource_ids);
        }
        (
            status,
            [
                ("x-amzn-errortype", self.kind),
                ("content-type", "application/x-amz-json-1.1"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

/// Where `endpoint` passes the signing region of a RunTask on to `run_task`.
const SIGNED_REGION: &str = "__signedRegion";

/// The region of a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/20260101/eu-central-1/ecs/aws4_request`).
fn signed_region(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let scope = authorization
        .split("Credential=")
        .nth(1)?
        .split(',')
        .next()?;
    scope.split('/').nth(2).map(String::from)
}

pub async fn endpoint(
    State(state): State<Arc<EcsState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if crate::ec2::is_ec2(&headers) {
        return crate::ec2::endpoint(&state, &body);
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let operation = target.rsplit('.').next().unwrap_or_default();
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return EcsError::new("SerializationException", "Request body is not JSON").into_response();
    };
    let result = match operation {
        "RunTask" => {
            let mut request = request;
            if let Some(region) = signed_region(&headers) {
                request[SIGNED_REGION] = Value::String(region);
            }
            let result = state.run_task(&request);
            let launched = result
                .as_ref()
                .ok()
                .and_then(|body| body.pointer("/tasks/0/taskArn"))
                .and_then(Value::as_str);
            if let (Some(arn), Some(gate)) = (launched, &state.gate)
                && let Some(record) = state.tasks().into_iter().find(|t| t.task_arn == arn)
            {
                let (release, released) = tokio::sync::oneshot::channel();
                if gate.send((record, release)).is_ok() {
                    let _ = released.await;
                }
            }
            result
        }
        "StopTask" => state.stop_task(&request),
        "DescribeTasks" => state.describe_tasks(&request),
        "ListTasks" => state.list_tasks(&request),
        other => Err(EcsError::new(
            "UnknownOperationException",
            &format!("{other} is not served locally"),
        )),
    };
    match result {
        Ok(body) => ([("content-type", "application/x-amz-json-1.1")], Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}
