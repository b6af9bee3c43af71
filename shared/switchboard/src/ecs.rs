//! The ECS calls of the server lifecycle: launching a server's task, stopping it, and finding
//! the tasks Switchboard started (for the sweeper's orphan check).

use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, KeyValuePair,
    LaunchType, NetworkConfiguration, TaskOverride,
};
use thiserror::Error;

use crate::config::EcsSettings;
use crate::error::error_chain;

/// ECS's limit on `startedBy`.
pub const MAX_STARTED_BY: usize = 128;
/// DescribeTasks takes at most this many tasks per call.
const DESCRIBE_BATCH: usize = 100;

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("ECS is not configured (SWITCHBOARD_ECS_CLUSTER)")]
    NotConfigured,
    /// The request failed; a task may or may not have started (the sweeper finds out).
    #[error("RunTask failed: {0}")]
    Request(String),
    /// ECS answered that it started nothing (capacity, placement): nothing to clean up.
    #[error("RunTask reported failures: {0}")]
    Failures(String),
    /// ECS refused the request (a client error such as an unknown cluster): nothing started.
    #[error("RunTask was refused: {0}")]
    Refused(String),
    #[error("RunTask returned no task")]
    NoTask,
}

impl LaunchError {
    /// Whether ECS said for certain that no task was started.
    pub fn nothing_started(&self) -> bool {
        matches!(
            self,
            Self::NotConfigured | Self::Failures(_) | Self::Refused(_) | Self::NoTask
        )
    }

    /// "Not now" rather than "not so": ECS out of capacity (every failure a `RESOURCE:*` one,
    /// or Fargate's "Capacity is unavailable"), throttling, or a request that failed on the
    /// way (timeout, 5xx, lost connection). A caller is told to retry (503), not that the
    /// server broke.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Request(_) => true,
            Self::Failures(reasons) => reasons.split("; ").all(|reason| {
                reason.starts_with("RESOURCE") || reason.contains("Capacity is unavailable")
            }),
            Self::Refused(detail) => {
                detail.contains("ThrottlingException") || detail.contains("ServerException")
            }
            Self::NotConfigured | Self::NoTask => false,
        }
    }
}

#[derive(Debug, Error)]
#[error("ECS {operation} failed: {detail}")]
pub struct EcsError {
    pub operation: &'static str,
    pub detail: String,
}

fn ecs_error<E>(operation: &'static str, e: E) -> EcsError
where
    E: std::error::Error + 'static,
{
    EcsError {
        operation,
        detail: error_chain(&e),
    }
}

/// One task launch: the server it is for (`startedBy`) and its container environment. Each
/// launch has its own idempotency token, which the SDK's retries of that one RunTask reuse, so
/// a retried RunTask never starts a second task; a later launch for the same id (a session id
/// a caller reuses after its session ended) is a new request, not a conflicting repeat.
pub struct Launch<'a> {
    pub server_id: &'a str,
    pub environment: &'a [(&'a str, String)],
    /// The container's arguments (`command` override), when given.
    pub command: Option<&'a [String]>,
}

/// Runs one task of the configured definition; returns the task ARN. A non-empty `failures`
/// list is a failure.
pub async fn run_task(
    ecs: &Client,
    settings: Option<&EcsSettings>,
    launch: Launch<'_>,
) -> Result<String, LaunchError> {
    let settings = settings.ok_or(LaunchError::NotConfigured)?;
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(settings.subnets.clone()))
        .set_security_groups(Some(settings.security_groups.clone()))
        .assign_public_ip(if settings.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| LaunchError::Request(e.to_string()))?;
    let container = ContainerOverride::builder()
        .name(&settings.container)
        .set_environment(Some(
            launch
                .environment
                .iter()
                .map(|(name, value)| KeyValuePair::builder().name(*name).value(value).build())
                .collect(),
        ))
        .set_command(launch.command.map(<[String]>::to_vec))
        .build();
    let out = ecs
        .run_task()
        .cluster(&settings.cluster)
        .task_definition(&settings.task_definition)
        .launch_type(LaunchType::Fargate)
        .count(1)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .overrides(
            TaskOverride::builder()
                .container_overrides(container)
                .build(),
        )
        .started_by(launch.server_id)
        .client_token(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .map_err(|e| {
            // A 4xx answer is ECS refusing the request; anything else (a timeout, a 5xx, a
            // lost connection) leaves open whether a task started.
            let refused = e
                .raw_response()
                .is_some_and(|r| r.status().is_client_error());
            if refused {
                LaunchError::Refused(error_chain(&e))
            } else {
                LaunchError::Request(error_chain(&e))
            }
        })?;
    if !out.failures().is_empty() {
        let reasons: Vec<String> = out
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.reason().unwrap_or("?"),
                    f.detail().unwrap_or("")
                )
            })
            .collect();
        return Err(LaunchError::Failures(reasons.join("; ")));
    }
    out.tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(String::from)
        .ok_or(LaunchError::NoTask)
}

/// Stops a task (ECS sends SIGTERM, then SIGKILL after the container's stop timeout).
/// A task ECS no longer knows counts as stopped.
pub async fn stop_task(
    ecs: &Client,
    settings: &EcsSettings,
    task_arn: &str,
    reason: &str,
) -> Result<(), EcsError> {
    let result = ecs
        .stop_task()
        .cluster(&settings.cluster)
        .task(task_arn)
        .reason(reason)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.code() == Some("InvalidParameterException")) =>
        {
            tracing::info!(
                task_arn,
                "StopTask: ECS does not know the task; it is not running"
            );
            Ok(())
        }
        Err(e) => Err(ecs_error("StopTask", e)),
    }
}

/// A task as the sweeper and the sessions API need it.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    pub task_arn: String,
    pub started_by: Option<String>,
    pub running: bool,
    /// Whether ECS reports it RUNNING (not only meant to run).
    pub up: bool,
    /// Its private address on its network interface (awsvpc), once it has one.
    pub address: Option<String>,
    /// Its network interface (the `ElasticNetworkInterface` attachment's `networkInterfaceId`),
    /// whose association holds the public address, if it has one.
    pub network_interface: Option<String>,
}

/// Every task of the cluster that is meant to run (`desiredStatus` RUNNING), all pages, at
/// most `limit` of them.
pub async fn running_tasks(
    ecs: &Client,
    settings: &EcsSettings,
    limit: usize,
) -> Result<Vec<TaskInfo>, EcsError> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = ecs
            .list_tasks()
            .cluster(&settings.cluster)
            .desired_status(DesiredStatus::Running)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| ecs_error("ListTasks", e))?;
        arns.extend(out.task_arns().iter().cloned());
        token = out.next_token().map(String::from);
        if token.is_none() || arns.len() >= limit {
            break;
        }
    }
    arns.truncate(limit);
    describe(ecs, settings, &arns).await
}

/// The tasks with these ARNs; one ECS no longer knows is reported as not running.
pub async fn describe(
    ecs: &Client,
    settings: &EcsSettings,
    task_arns: &[String],
) -> Result<Vec<TaskInfo>, EcsError> {
    let mut tasks = Vec::new();
    for batch in task_arns.chunks(DESCRIBE_BATCH) {
        let out = ecs
            .describe_tasks()
            .cluster(&settings.cluster)
            .set_tasks(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| ecs_error("DescribeTasks", e))?;
        for task in out.tasks() {
            let Some(arn) = task.task_arn() else { continue };
            let address = task
                .containers()
                .iter()
                .flat_map(|c| c.network_interfaces())
                .find_map(|ni| ni.private_ipv4_address())
                .map(String::from);
            let network_interface = task
                .attachments()
                .iter()
                .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
                .flat_map(|a| a.details())
                .find(|d| d.name() == Some("networkInterfaceId"))
                .and_then(|d| d.value())
                .map(String::from);
            tasks.push(TaskInfo {
                task_arn: arn.to_string(),
                started_by: task.started_by().map(String::from),
                running: task.desired_status() != Some("STOPPED")
                    && task.last_status() != Some("STOPPED"),
                up: task.last_status() == Some("RUNNING"),
                address,
                network_interface,
            });
        }
        for failure in out.failures() {
            if let Some(arn) = failure.arn() {
                tasks.push(TaskInfo {
                    task_arn: arn.to_string(),
                    started_by: None,
                    running: false,
                    up: false,
                    address: None,
                    network_interface: None,
                });
            }
        }
    }
    Ok(tasks)
}

/// Tasks of the cluster started for `server_id` (its `startedBy`) that are meant to run.
pub async fn tasks_started_by(
    ecs: &Client,
    settings: &EcsSettings,
    server_id: &str,
) -> Result<Vec<String>, EcsError> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = ecs
            .list_tasks()
            .cluster(&settings.cluster)
            .started_by(server_id)
            .desired_status(DesiredStatus::Running)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| ecs_error("ListTasks", e))?;
        arns.extend(out.task_arns().iter().cloned());
        token = out.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    Ok(arns)
}

/// Why a task stopped by itself (its essential container exited, or it never started): `None`
/// while it runs or is still starting, and for a task stopped through StopTask (a DELETE, a
/// `ttl`, the sweeper: an ending Switchboard asked for). A task ECS no longer knows is gone.
pub async fn stopped_by_itself(
    ecs: &Client,
    settings: &EcsSettings,
    task_arn: &str,
) -> Result<Option<String>, EcsError> {
    let out = ecs
        .describe_tasks()
        .cluster(&settings.cluster)
        .tasks(task_arn)
        .send()
        .await
        .map_err(|e| ecs_error("DescribeTasks", e))?;
    let Some(task) = out.tasks().iter().find(|t| t.task_arn() == Some(task_arn)) else {
        return Ok(out
            .failures()
            .iter()
            .find(|f| f.arn() == Some(task_arn))
            .map(|f| format!("its task is gone ({})", f.reason().unwrap_or("MISSING"))));
    };
    // Fargate takes a while from an exited container to a task STOPPED (deprovisioning): a
    // task meant to stop whose container exited, or whose stop code says why, has stopped.
    let exit = task.containers().iter().find_map(|c| c.exit_code());
    let stopping =
        task.last_status() == Some("STOPPED") || task.desired_status() == Some("STOPPED");
    if !stopping
        || task.stop_code() == Some(&aws_sdk_ecs::types::TaskStopCode::UserInitiated)
        || (task.last_status() != Some("STOPPED") && task.stop_code().is_none() && exit.is_none())
    {
        return Ok(None);
    }
    Ok(Some(match (exit, task.stopped_reason()) {
        (Some(code), Some(reason)) => format!("exit code {code} ({reason})"),
        (Some(code), None) => format!("exit code {code}"),
        (None, Some(reason)) => reason.to_string(),
        (None, None) => "its task stopped".to_string(),
    }))
}
