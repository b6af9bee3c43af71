//! The address clients reach a task at: the public IPv4 of its network interface when it has
//! one, else its private address. ECS reports only the private address (the task's
//! `ElasticNetworkInterface` attachment); the public one is the interface's association in EC2
//! (`DescribeNetworkInterfaces`). Only the functions that report session addresses build with
//! this (the `public-addresses` feature), and only they are granted the EC2 call.

use aws_sdk_ec2::error::ProvideErrorMetadata;

use crate::deps::Deps;
use crate::ecs::TaskInfo;
use crate::error::{ApiError, error_chain};

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
    let answer = deps
        .ec2_in(region)
        .describe_network_interfaces()
        .network_interface_ids(interface)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let detail = format!("EC2 DescribeNetworkInterfaces failed: {}", error_chain(&e));
            let refused = e
                .raw_response()
                .is_some_and(|r| r.status().is_client_error())
                && !matches!(e.code(), Some(code) if code.contains("Throttl") || code == "RequestLimitExceeded");
            return Err(if refused {
                ApiError::Internal(detail)
            } else {
                ApiError::Unavailable(detail)
            });
        }
    };
    let public = out
        .network_interfaces()
        .iter()
        .filter_map(|ni| ni.association())
        .find_map(|a| a.public_ip())
        .map(String::from);
    Ok(public.or_else(|| task.address.clone()))
}
