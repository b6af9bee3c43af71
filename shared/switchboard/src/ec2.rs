//! EC2's `DescribeNetworkInterfaces`, the one EC2 call Switchboard makes: a query-protocol
//! request signed with SigV4 by `aws-sigv4` (the SDK's own signer), with the SDK
//! configuration's credentials, and the one field it needs read from the answer.
//!
//! Not through `aws-sdk-ec2`: that crate alone took 180 of the 520 CPU-seconds of building the
//! local stack from a fresh clone (its whole API is generated code), for one action and one
//! field. What the SDK would add here: retries (done below: three attempts on throttling, 5xx
//! and transport errors), endpoint rules (the regional `ec2.<region>.amazonaws.com`, or
//! `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL`, or the endpoint given), and typed errors (the
//! error code and message are read from the answer).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The EC2 API version the query names.
const VERSION: &str = "2016-11-15";
/// One attempt's limit (connect, TLS, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Ec2Error {
    /// EC2 answered with a client error (not throttling): the request or its permissions are
    /// wrong, and trying again will not help.
    #[error("EC2 {action} refused ({status} {code}): {message}")]
    Refused {
        action: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// Throttled, failing on its side, unreachable or too slow, after every attempt.
    #[error("EC2 {action} unavailable: {reason}")]
    Unavailable {
        action: &'static str,
        reason: String,
    },
}

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An EC2 client: the SDK configuration (credentials, default region) and an endpoint that
/// overrides the regional one (the local stack). The HTTPS client is built on first use (as the
/// SDK clients are: nothing at a function's init).
#[derive(Clone)]
pub struct Ec2 {
    sdk: SdkConfig,
    endpoint: Option<String>,
    http: std::sync::Arc<OnceLock<Result<Https, String>>>,
}

impl std::fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Ec2 {
    /// `endpoint` overrides where requests go; without it, `AWS_ENDPOINT_URL_EC2`, then
    /// `AWS_ENDPOINT_URL`, then `https://ec2.<region>.amazonaws.com`.
    pub fn new(sdk: &SdkConfig, endpoint: Option<String>) -> Self {
        let from_env = || {
            ["AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            sdk: sdk.clone(),
            endpoint: endpoint.or_else(from_env),
            http: std::sync::Arc::default(),
        }
    }

    fn url(&self, region: &str) -> String {
        match &self.endpoint {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if region.starts_with("cn-") => format!("https://ec2.{region}.amazonaws.com.cn"),
            None => format!("https://ec2.{region}.amazonaws.com"),
        }
    }

    fn http(&self) -> Result<&Https, String> {
        self.http
            .get_or_init(|| {
                let provider = rustls::crypto::aws_lc_rs::default_provider();
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(provider)
                    .map_err(|e| format!("no TLS roots: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(Client::builder(TokioExecutor::new()).build(connector))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `DescribeNetworkInterfaces` for `interfaces` in `region` (empty: the configuration's
    /// region): the public IPv4 of each interface's association, in the order EC2 lists them
    /// (an interface without one gives none).
    pub async fn public_ips(
        &self,
        region: &str,
        interfaces: &[&str],
    ) -> Result<Vec<String>, Ec2Error> {
        const ACTION: &str = "DescribeNetworkInterfaces";
        // Built in its own scope: the serializer is not `Send`, the future must be.
        let body = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query
                .append_pair("Action", ACTION)
                .append_pair("Version", VERSION);
            for (i, id) in interfaces.iter().enumerate() {
                query.append_pair(&format!("NetworkInterfaceId.{}", i + 1), id);
            }
            query.finish()
        };
        let region = if region.is_empty() {
            self.sdk.region().map(|r| r.to_string()).unwrap_or_default()
        } else {
            region.to_string()
        };
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, self.call(&region, &body)).await;
            let (status, text) = match outcome {
                Ok(Ok(answer)) => answer,
                Ok(Err(reason)) => {
                    last = reason;
                    continue;
                }
                Err(_) => {
                    last = format!("no answer within {ATTEMPT_TIMEOUT:?}");
                    continue;
                }
            };
            if (200..300).contains(&status) {
                return Ok(public_ips(&text));
            }
            let code = elements(&text, "Code")
                .into_iter()
                .next()
                .unwrap_or_default();
            let message = elements(&text, "Message")
                .into_iter()
                .next()
                .unwrap_or_else(|| text.chars().take(200).collect());
            let throttled = code.contains("Throttl") || code == "RequestLimitExceeded";
            if (400..500).contains(&status) && !throttled {
                return Err(Ec2Error::Refused {
                    action: ACTION,
                    status,
                    code,
                    message,
                });
            }
            last = format!("{status} {code}: {message}");
        }
        Err(Ec2Error::Unavailable {
            action: ACTION,
            reason: last,
        })
    }

    /// One signed POST: the status and the body, or why there is none.
    async fn call(&self, region: &str, body: &str) -> Result<(u16, String), String> {
        let credentials = self
            .sdk
            .credentials_provider()
            .ok_or("no credentials provider")?
            .provide_credentials()
            .await
            .map_err(|e| format!("no credentials: {e}"))?;
        let identity = credentials.into();
        let url = format!("{}/", self.url(region));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("cannot sign: {e}"))?
            .into();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signable = SignableRequest::new(
            "POST",
            &url,
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| format!("cannot sign: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("cannot sign: {e}"))?
            .into_parts();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("bad request to {url}: {e}"))?;
        instructions.apply_to_request_http1x(&mut request);
        let response = self
            .http()?
            .request(request)
            .await
            .map_err(|e| format!("{url}: {}", crate::error::error_chain(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: the answer broke off: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// The public IPv4 of each interface of a `DescribeNetworkInterfaces` answer that has one: the
/// first `publicIp` after each `networkInterfaceId` (EC2 repeats the association under the
/// interface's `privateIpAddressesSet`).
fn public_ips(xml: &str) -> Vec<String> {
    xml.split("<networkInterfaceId>")
        .skip(1)
        .filter_map(|interface| elements(interface, "publicIp").into_iter().next())
        .collect()
}

/// The text of every `<name>…</name>` element of an EC2 answer, unescaped. EC2's query answers
/// are flat XML without attributes on these elements or CDATA, so a scan finds them.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(unescape(after[..end].trim()));
        rest = &after[end + close.len()..];
    }
    found
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_ips_and_the_error_code_are_read_from_the_answer() {
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>1</requestId>
  <networkInterfaceSet>
    <item><networkInterfaceId>eni-1</networkInterfaceId><privateIpAddress>10.0.0.5</privateIpAddress>
      <association><ipOwnerId>amazon</ipOwnerId><publicIp>203.0.113.7</publicIp></association>
      <privateIpAddressesSet><item><privateIpAddress>10.0.0.5</privateIpAddress><primary>true</primary>
      <association><ipOwnerId>amazon</ipOwnerId><publicIp>203.0.113.7</publicIp></association></item></privateIpAddressesSet></item>
    <item><networkInterfaceId>eni-2</networkInterfaceId><privateIpAddress>10.0.0.6</privateIpAddress></item>
  </networkInterfaceSet>
</DescribeNetworkInterfacesResponse>"#;
        assert_eq!(public_ips(answer), ["203.0.113.7"]);
        assert_eq!(
            elements(answer, "privateIpAddress"),
            ["10.0.0.5", "10.0.0.5", "10.0.0.6"]
        );
        let error = "<Response><Errors><Error><Code>InvalidNetworkInterfaceID.NotFound</Code>\
                     <Message>The networkInterface ID 'eni-x' does not exist &amp; never did</Message>\
                     </Error></Errors><RequestID>2</RequestID></Response>";
        assert_eq!(
            elements(error, "Code"),
            ["InvalidNetworkInterfaceID.NotFound"]
        );
        assert_eq!(
            elements(error, "Message"),
            ["The networkInterface ID 'eni-x' does not exist & never did"]
        );
        assert!(elements("<publicIp>1.2.3.4", "publicIp").is_empty());
    }

    #[test]
    fn the_endpoint_is_the_given_one_else_the_regions() {
        let sdk = SdkConfig::builder().build();
        let given = Ec2::new(&sdk, Some("http://127.0.0.1:3002/".into()));
        assert_eq!(given.url("eu-west-1"), "http://127.0.0.1:3002");
        let regional = Ec2 {
            endpoint: None,
            ..given.clone()
        };
        assert_eq!(
            regional.url("eu-west-1"),
            "https://ec2.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional.url("cn-north-1"),
            "https://ec2.cn-north-1.amazonaws.com.cn"
        );
    }
}
