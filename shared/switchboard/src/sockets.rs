//! The one way to post a frame to a socket: the API Gateway Management API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::Value;

use crate::error::{StoreError, error_chain};

pub const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI";

#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The connection is closed (410 / GoneException).
    Gone,
}

/// Management API clients, one per endpoint. The endpoint is, in order: one given explicitly,
/// the SDK's `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`, `SWITCHBOARD_WS_MANAGEMENT_ENDPOINT`,
/// or `https://<domain>/<stage>` of the WebSocket event being handled.
#[derive(Clone, Debug)]
pub struct Sockets {
    sdk: SdkConfig,
    explicit: Option<String>,
    configured: Option<String>,
    sdk_env_endpoint: bool,
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl Sockets {
    pub fn new(sdk: &SdkConfig, explicit: Option<String>, configured: Option<String>) -> Self {
        Self {
            sdk: sdk.clone(),
            explicit,
            configured,
            sdk_env_endpoint: std::env::var_os(ENDPOINT_VARIABLE).is_some_and(|v| !v.is_empty()),
            clients: Arc::default(),
        }
    }

    fn client(
        &self,
        context: Option<&ApiGatewayWebsocketProxyRequestContext>,
    ) -> Result<Client, StoreError> {
        let endpoint = if let Some(url) = &self.explicit {
            Some(url.clone())
        } else if self.sdk_env_endpoint {
            None
        } else if let Some(url) = &self.configured {
            Some(url.clone())
        } else {
            let context = context.ok_or_else(|| {
                StoreError::Socket("no management endpoint for this request".into())
            })?;
            match (&context.domain_name, &context.stage) {
                (Some(domain), Some(stage)) => Some(format!("https://{domain}/{stage}")),
                _ => {
                    return Err(StoreError::Socket(
                        "WebSocket event has no domainName/stage".into(),
                    ));
                }
            }
        };
        let key = endpoint.clone().unwrap_or_default();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let client = clients.entry(key).or_insert_with(|| {
            let mut builder = aws_sdk_apigatewaymanagement::config::Builder::from(&self.sdk);
            if let Some(url) = endpoint {
                builder = builder.endpoint_url(url);
            }
            Client::from_conf(builder.build())
        });
        Ok(client.clone())
    }

    /// Posts one JSON frame to `connection_id`.
    pub async fn post(
        &self,
        context: Option<&ApiGatewayWebsocketProxyRequestContext>,
        connection_id: &str,
        frame: &Value,
    ) -> Result<Delivery, StoreError> {
        let result = self
            .client(context)?
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Delivery::Delivered),
            Err(e) => {
                let gone = matches!(
                    e.as_service_error(),
                    Some(PostToConnectionError::GoneException(_))
                ) || e.raw_response().is_some_and(|r| r.status().as_u16() == 410);
                if gone {
                    Ok(Delivery::Gone)
                } else {
                    Err(StoreError::Socket(format!(
                        "post to {connection_id}: {}",
                        error_chain(&e)
                    )))
                }
            }
        }
    }
}
