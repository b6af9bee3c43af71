//! The address clients reach a task at: the public IPv4 of its network interface when it has
//! one, else its private address. ECS reports only the private address (the task's
//! `ElasticNetworkInterface` attachment); the public one is the interface's association in EC2
//! (`DescribeNetworkInterfaces`). Only the functions that report session addresses build with
//! this (the `public-addresses` feature), and only they are granted the EC2 call.

use crate::deps::Deps;
use crate::ec2::Ec2Error;
use crate::ecs::TaskInfo;
use crate::error::ApiError;

/// The task's reachable address, `None` while it has no address at all. A failed EC2 call is a
/// 503 when it is throttling, failing on its side or unreachable, else a 500.
pub async fn reachable(
    deps: &Deps,
    region: &str,
    task: &TaskInfo,
) -> Result<Option<String>, ApiError> {
    let Some(interface) = &task.network_interface else {
        return Ok(task.address.clone());
    };
    let public = deps
        .ec2()
        .public_ips(region, &[interface.as_str()])
        .await
        .map_err(|e| match e {
            Ec2Error::Refused { .. } => ApiError::Internal(e.to_string()),
            Ec2Error::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
        })?
        .into_iter()
        .next();
    Ok(public.or_else(|| task.address.clone()))
}
