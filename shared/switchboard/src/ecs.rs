//! createRoom's launch of an SFU task on ECS Fargate.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, TaskOverride,
};
use thiserror::Error;

use crate::config::EcsSettings;
use crate::error::error_chain;

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("ECS is not configured (SWITCHBOARD_ECS_CLUSTER)")]
    NotConfigured,
    #[error("RunTask failed: {0}")]
    Request(String),
    #[error("RunTask reported failures: {0}")]
    Failures(String),
    #[error("RunTask returned no task")]
    NoTask,
}

/// Runs one task of the configured definition with `environment` set on its container;
/// returns the task ARN. A non-empty `failures` list is a failure.
pub async fn run_task(
    ecs: &Client,
    settings: Option<&EcsSettings>,
    environment: &[(&str, String)],
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
            environment
                .iter()
                .map(|(name, value)| KeyValuePair::builder().name(*name).value(value).build())
                .collect(),
        ))
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
        .started_by("switchboard")
        .send()
        .await
        .map_err(|e| LaunchError::Request(error_chain(&e)))?;
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
