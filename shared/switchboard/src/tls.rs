//! The HTTPS client a deployed function talks to AWS with.
//!
//! The SDK's default client loads the machine's whole CA store (every file of the system's
//! certificate directory) and parses it once per SDK client, at init: most of a function's
//! cold start beyond the Lambda runtime's own (`scripts/bench.sh`, BENCHMARKS.md). Every AWS
//! service endpoint Switchboard calls (DynamoDB, ECS, the API Gateway Management API on
//! `execute-api`) presents a certificate of Amazon Trust Services, so a function that only
//! talks to AWS endpoints trusts exactly those roots, compiled in: no file is read and five
//! certificates are parsed. When an endpoint is overridden (`AWS_ENDPOINT_URL*`, or a
//! management endpoint that is not on `amazonaws.com`), the system's roots are trusted too.

use std::collections::HashMap;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Amazon Root CA 1–4 and Starfield Services Root Certificate Authority G2 (which
/// cross-signs them): the roots of every AWS service endpoint's certificate.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// Whether every endpoint the functions call is an AWS service endpoint.
pub fn aws_endpoints_only(vars: &HashMap<String, String>) -> bool {
    let overridden = vars
        .iter()
        .any(|(name, value)| name.starts_with("AWS_ENDPOINT_URL") && !value.trim().is_empty());
    let management_elsewhere = vars
        .get("SWITCHBOARD_WS_MANAGEMENT_ENDPOINT")
        .map(|url| url.trim())
        .filter(|url| !url.is_empty())
        .is_some_and(|url| {
            let host = url
                .trim_start_matches("https://")
                .split(['/', ':'])
                .next()
                .unwrap_or_default();
            !host.ends_with(".amazonaws.com")
        });
    !overridden && !management_elsewhere
}

/// The trust a function needs: Amazon Trust Services' roots, and the system's as well when
/// an endpoint may be something else.
pub fn trust_store(aws_only: bool) -> TrustStore {
    let base = if aws_only {
        TrustStore::empty()
    } else {
        TrustStore::default()
    };
    base.with_pem_certificate(AMAZON_TRUST_SERVICES)
}

/// The SDK's default HTTPS client (hyper, rustls with aws-lc, proxy settings from the
/// environment) with `trust` as its roots.
pub fn https_client(
    trust: TrustStore,
) -> Result<SharedHttpClient, aws_smithy_http_client::HttpClientError> {
    let context = TlsContext::builder().with_trust_store(trust).build()?;
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut connector = ConnectorBuilder::default()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context.clone());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_vars as vars;

    #[test]
    fn only_aws_endpoints_trust_only_amazon_roots() {
        assert!(aws_endpoints_only(&vars(&[])));
        assert!(aws_endpoints_only(&vars(&[(
            "SWITCHBOARD_WS_MANAGEMENT_ENDPOINT",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
        )])));
        assert!(!aws_endpoints_only(&vars(&[(
            "SWITCHBOARD_WS_MANAGEMENT_ENDPOINT",
            "https://ws.example.com/prod"
        )])));
        assert!(!aws_endpoints_only(&vars(&[(
            "AWS_ENDPOINT_URL_DYNAMODB",
            "http://127.0.0.1:8000"
        )])));
        assert!(aws_endpoints_only(&vars(&[("AWS_ENDPOINT_URL", " ")])));
    }

    #[test]
    fn the_compiled_in_roots_are_five_certificates() {
        use base64::Engine;
        let text = std::str::from_utf8(AMAZON_TRUST_SERVICES).unwrap();
        let blocks: Vec<&str> = text
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|b| b.split("-----END CERTIFICATE-----").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 5);
        for block in blocks {
            let der = base64::engine::general_purpose::STANDARD
                .decode(block.split_whitespace().collect::<String>())
                .expect("base64");
            assert_eq!(der[0], 0x30, "a DER SEQUENCE");
        }
        // An SDK client builds its TLS connector (and so parses the roots) when it is created.
        for aws_only in [true, false] {
            let sdk = aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .http_client(https_client(trust_store(aws_only)).expect("client"))
                .build();
            let _ = aws_sdk_dynamodb::Client::new(&sdk);
        }
    }
}
