//! The EC2 endpoint (the EC2 query protocol, as the AWS SDK sends it), on the ECS endpoint's
//! listener: `DescribeNetworkInterfaces` for the network interfaces of the local tasks, each
//! with its private address and, for a task launched with a public IP, the interface's
//! association with its public address. That is how a function finds a task's public IPv4 on
//! AWS (ECS reports only the private one). Calls are judged by `iam::ecs_guard` like ECS's.

use std::net::Ipv4Addr;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ecs::EcsState;

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Whether a request to the ECS listener is an EC2 query request (a form body, no JSON target).
pub fn is_ec2(headers: &HeaderMap) -> bool {
    headers.get("x-amz-target").is_none()
        && headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The query's parameters, in order.
pub fn parameters(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// The query's `Action`.
pub fn action(parameters: &[(String, String)]) -> &str {
    parameters
        .iter()
        .find(|(k, _)| k == "Action")
        .map_or("", |(_, v)| v.as_str())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An EC2 error answer: `<Response><Errors><Error>`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>"#,
        escape(code),
        escape(message),
        uuid::Uuid::new_v4()
    );
    (status, [("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

fn interface_xml(id: &str, private: Ipv4Addr, public: Option<Ipv4Addr>) -> String {
    let association = public.map_or(String::new(), |ip| {
        format!("<association><ipOwnerId>amazon</ipOwnerId><publicIp>{ip}</publicIp></association>")
    });
    format!(
        "<item><networkInterfaceId>{id}</networkInterfaceId><subnetId>subnet-local</subnetId>\
         <interfaceType>interface</interfaceType><status>in-use</status>\
         <privateIpAddress>{private}</privateIpAddress>{association}\
         <privateIpAddressesSet><item><privateIpAddress>{private}</privateIpAddress>\
         <primary>true</primary>{association}</item></privateIpAddressesSet></item>"
    )
}

/// Answers one EC2 request.
pub fn endpoint(state: &EcsState, body: &[u8]) -> Response {
    let parameters = parameters(body);
    match action(&parameters) {
        "DescribeNetworkInterfaces" => describe_network_interfaces(state, &parameters),
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("The action {other} is not valid for this web service."),
        ),
    }
}

fn describe_network_interfaces(state: &EcsState, parameters: &[(String, String)]) -> Response {
    let wanted: Vec<&str> = parameters
        .iter()
        .filter(|(k, _)| k.starts_with("NetworkInterfaceId."))
        .map(|(_, v)| v.as_str())
        .collect();
    if parameters.iter().any(|(k, _)| k.starts_with("Filter.")) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "The local EC2 endpoint takes NetworkInterfaceId.N, not filters.",
        );
    }
    let interfaces = state.interfaces();
    let mut items = String::new();
    for id in &wanted {
        match interfaces.iter().find(|(eni, _, _)| eni == id) {
            Some((eni, private, public)) => items.push_str(&interface_xml(eni, *private, *public)),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidNetworkInterfaceID.NotFound",
                    &format!("The networkInterface ID '{id}' does not exist"),
                );
            }
        }
    }
    if wanted.is_empty() {
        for (eni, private, public) in &interfaces {
            items.push_str(&interface_xml(eni, *private, *public));
        }
    }
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><DescribeNetworkInterfacesResponse xmlns="{XMLNS}"><requestId>{}</requestId><networkInterfaceSet>{items}</networkInterfaceSet></DescribeNetworkInterfacesResponse>"#,
        uuid::Uuid::new_v4()
    );
    ([("content-type", "text/xml;charset=UTF-8")], body).into_response()
}
