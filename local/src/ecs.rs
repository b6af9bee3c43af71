//! The ECS endpoint (AWS JSON 1.1: RunTask, StopTask, DescribeTasks). Each task is recorded
//! with its container environment and, given `--task-command`, runs that command through
//! `sh -c` with the environment set, as the SFU container would start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";

#[derive(Clone, Debug)]
pub struct TaskRecord {
    pub task_arn: String,
    pub environment: HashMap<String, String>,
    pub stopped: bool,
}

struct Task {
    record: TaskRecord,
    container: String,
    started_by: Option<String>,
    created_at: f64,
    process: Option<tokio::process::Child>,
    exit_code: Option<i32>,
    stopped_reason: Option<String>,
}

impl Task {
    fn refresh(&mut self) {
        if let Some(child) = &mut self.process
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit_code = status.code();
            self.record.stopped = true;
            self.stopped_reason
                .get_or_insert_with(|| "Essential container in task exited".into());
            self.process = None;
        }
    }

    fn status(&self) -> &'static str {
        if self.record.stopped {
            "STOPPED"
        } else {
            "RUNNING"
        }
    }

    fn to_json(&self, cluster_arn: &str, definition_arn: &str) -> Value {
        let environment: Vec<Value> = self
            .record
            .environment
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        json!({
            "taskArn": self.record.task_arn,
            "clusterArn": cluster_arn,
            "taskDefinitionArn": definition_arn,
            "lastStatus": self.status(),
            "desiredStatus": if self.record.stopped { "STOPPED" } else { "RUNNING" },
            "launchType": "FARGATE",
            "startedBy": self.started_by,
            "createdAt": self.created_at,
            "stoppedReason": self.stopped_reason,
            "overrides": { "containerOverrides": [{ "name": self.container, "environment": environment }] },
            "containers": [{ "name": self.container, "lastStatus": self.status(), "exitCode": self.exit_code }],
        })
    }

    fn stop(&mut self, reason: &str) {
        if let Some(child) = &mut self.process
            && let Some(pid) = child.id()
        {
            // The command runs in its own process group: stop all of it.
            // SAFETY: plain kill(2) on a process group this stack created.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGTERM);
            }
        }
        self.process = None;
        self.record.stopped = true;
        self.stopped_reason = Some(reason.to_string());
    }
}

pub struct EcsState {
    cluster: String,
    task_definition: String,
    task_command: Option<String>,
    capacity: Option<usize>,
    gate: Option<crate::LaunchGate>,
    tasks: Mutex<Vec<Task>>,
}

impl EcsState {
    pub fn new(
        cluster: &str,
        task_definition: &str,
        task_command: Option<String>,
        capacity: Option<usize>,
        gate: Option<crate::LaunchGate>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cluster: cluster.to_string(),
            task_definition: task_definition.to_string(),
            task_command,
            capacity,
            gate,
            tasks: Mutex::default(),
        })
    }

    fn cluster_arn(&self) -> String {
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{}", self.cluster)
    }

    fn definition_arn(&self) -> String {
        let family = self.task_definition.split(':').next().unwrap_or_default();
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1")
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
        let family = |s: &str| -> String {
            let s = s.rsplit('/').next().unwrap_or(s);
            s.split(':').next().unwrap_or(s).to_string()
        };
        family(requested) == family(&self.task_definition)
    }

    pub fn tasks(&self) -> Vec<TaskRecord> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.iter_mut().for_each(Task::refresh);
        tasks.iter().map(|t| t.record.clone()).collect()
    }

    pub fn stop_all(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for task in tasks.iter_mut().filter(|t| !t.record.stopped) {
            task.stop("Local stack stopped");
        }
    }

    fn run_task(&self, request: &Value) -> Result<Value, EcsError> {
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

        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.iter_mut().for_each(Task::refresh);
        let running = tasks.iter().filter(|t| !t.record.stopped).count();
        if self.capacity.is_some_and(|cap| running >= cap) {
            return Ok(json!({
                "tasks": [],
                "failures": [{
                    "arn": self.definition_arn(),
                    "reason": "RESOURCE:FARGATE",
                    "detail": format!("the local stack's capacity of {} running tasks is reached", self.capacity.unwrap_or_default()),
                }],
            }));
        }
        let task_arn = format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{}",
            self.cluster,
            uuid::Uuid::new_v4().simple()
        );
        let process =
            match &self.task_command {
                None => None,
                Some(command) => {
                    let mut cmd = tokio::process::Command::new("sh");
                    cmd.arg("-c")
                        .arg(command)
                        .envs(&environment)
                        .process_group(0)
                        .kill_on_drop(true);
                    Some(cmd.spawn().map_err(|e| {
                        EcsError::new("ServerException", &format!("task command: {e}"))
                    })?)
                }
            };
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let task = Task {
            record: TaskRecord {
                task_arn,
                environment,
                stopped: false,
            },
            container,
            started_by: request
                .get("startedBy")
                .and_then(Value::as_str)
                .map(String::from),
            created_at,
            process,
            exit_code: None,
            stopped_reason: None,
        };
        let body = json!({ "tasks": [task.to_json(&self.cluster_arn(), &self.definition_arn())], "failures": [] });
        tracing::info!(task = task.record.task_arn, "ECS task started");
        tasks.push(task);
        Ok(body)
    }

    fn stop_task(&self, request: &Value) -> Result<Value, EcsError> {
        self.require_cluster(request)?;
        let arn = request
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = request
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("Task stopped by StopTask");
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let task = tasks
            .iter_mut()
            .find(|t| t.record.task_arn == arn || t.record.task_arn.ends_with(&format!("/{arn}")))
            .ok_or_else(|| {
                EcsError::new(
                    "InvalidParameterException",
                    "The referenced task was not found.",
                )
            })?;
        task.refresh();
        if !task.record.stopped {
            task.stop(reason);
        }
        Ok(json!({ "task": task.to_json(&self.cluster_arn(), &self.definition_arn()) }))
    }

    fn describe_tasks(&self, request: &Value) -> Result<Value, EcsError> {
        self.require_cluster(request)?;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.iter_mut().for_each(Task::refresh);
        let (mut found, mut failures) = (Vec::new(), Vec::new());
        for wanted in request
            .get("tasks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match tasks.iter().find(|t| t.record.task_arn == wanted) {
                Some(task) => found.push(task.to_json(&self.cluster_arn(), &self.definition_arn())),
                None => failures.push(json!({ "arn": wanted, "reason": "MISSING" })),
            }
        }
        Ok(json!({ "tasks": found, "failures": failures }))
    }
}

struct EcsError {
    kind: &'static str,
    message: String,
}

impl EcsError {
    fn new(kind: &'static str, message: &str) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }
}

impl IntoResponse for EcsError {
    fn into_response(self) -> Response {
        let status = if self.kind == "ServerException" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        (
            status,
            [
                ("x-amzn-errortype", self.kind),
                ("content-type", "application/x-amz-json-1.1"),
            ],
            json!({ "__type": self.kind, "message": self.message }).to_string(),
        )
            .into_response()
    }
}

pub async fn endpoint(
    State(state): State<Arc<EcsState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
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
            let result = state.run_task(&request);
            if let (Ok(_), Some(gate)) = (&result, &state.gate)
                && let Some(record) = state.tasks().pop()
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
