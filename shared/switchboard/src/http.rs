//! API Gateway HTTP API (payload 2.0) adapter: reading requests, writing JSON responses.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use http::HeaderValue;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, CAPACITY_RETRY_AFTER_SECONDS, RETRY_AFTER_SECONDS};

/// How a family of routes words its errors.
#[derive(Clone, Copy, Debug)]
pub enum ErrorStyle {
    /// The Arbiter rooms routes: `{"message"}`.
    Rooms { internal: &'static str },
    /// Matchmaking routes: `{"success": false, "message"}`.
    Matchmaking,
}

pub fn json_response(status: u16, body: &Value) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.body = Some(Body::Text(body.to_string()));
    response
}

/// The single mapping from `ApiError` to an HTTP response. Internal detail is logged, never
/// sent; an unavailable dependency is a 503 with `Retry-After`.
pub fn error_response(error: &ApiError, style: ErrorStyle) -> ApiGatewayV2httpResponse {
    let status = error.status();
    let internal = match style {
        ErrorStyle::Rooms { internal } => internal,
        ErrorStyle::Matchmaking => "Something broke on the server",
    };
    let message = error.public_message(internal);
    let body = match style {
        ErrorStyle::Rooms { .. } => json!({ "message": message }),
        ErrorStyle::Matchmaking => json!({ "success": false, "message": message }),
    };
    let mut response = json_response(status, &body);
    match error {
        ApiError::Unavailable(_) => {
            response
                .headers
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        ApiError::Capacity(_) => {
            response
                .headers
                .insert(RETRY_AFTER, HeaderValue::from(CAPACITY_RETRY_AFTER_SECONDS));
        }
        _ => {}
    }
    response
}

/// Like `respond`, for routes whose success is not always 200 (POST /session: 201).
pub fn respond_with_status(
    outcome: Result<(u16, Value), ApiError>,
    style: ErrorStyle,
) -> ApiGatewayV2httpResponse {
    let response = match outcome {
        Ok((status, body)) => json_response(status, &body),
        Err(error) => error_response(&error, style),
    };
    tracing::info!(status = response.status_code, "answered");
    response
}

/// A JSON request body deserialized into `T`; a wrong or missing field is a 422 naming it
/// (the sessions API's convention), malformed JSON a 422 too.
pub fn typed_body<T: serde::de::DeserializeOwned>(
    request: &ApiGatewayV2httpRequest,
) -> Result<T, ApiError> {
    let raw = match &request.body {
        None => b"{}".to_vec(),
        Some(text) if request.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| ApiError::Invalid("body is not valid base64".into()))?,
        Some(text) if text.trim().is_empty() => b"{}".to_vec(),
        Some(text) => text.clone().into_bytes(),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(&raw);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::Invalid("body is not valid JSON".into())
        } else if path == "." {
            ApiError::Invalid(format!("body: {inner}"))
        } else {
            ApiError::Invalid(format!("{path}: {inner}"))
        }
    })
}

/// Runs a route and renders its outcome; the handlers' only exit.
pub fn respond(outcome: Result<Value, ApiError>, style: ErrorStyle) -> ApiGatewayV2httpResponse {
    let response = match outcome {
        Ok(body) => json_response(200, &body),
        Err(error) => error_response(&error, style),
    };
    tracing::info!(status = response.status_code, "answered");
    response
}

pub fn header<'a>(request: &'a ApiGatewayV2httpRequest, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn query<'a>(request: &'a ApiGatewayV2httpRequest, name: &str) -> Option<&'a str> {
    request.query_string_parameters.first(name)
}

pub fn method(request: &ApiGatewayV2httpRequest) -> &str {
    request.request_context.http.method.as_str()
}

/// Checks `Authorization: Bearer <key>` against any of `keys`, in constant time per key.
pub fn require_bearer(request: &ApiGatewayV2httpRequest, keys: &[String]) -> Result<(), ApiError> {
    let presented = header(request, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let mut matched = false;
    for key in keys {
        matched |= bool::from(key.as_bytes().ct_eq(presented.as_bytes()));
    }
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// A request body that must be a JSON object (an absent or empty body counts as `{}`).
#[derive(Debug, Default)]
pub struct JsonBody(Map<String, Value>);

impl JsonBody {
    pub fn parse(request: &ApiGatewayV2httpRequest) -> Result<Self, ApiError> {
        let raw = match &request.body {
            None => return Ok(Self::default()),
            Some(text) if request.is_base64_encoded => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| ApiError::bad_request("body is not valid base64"))?,
            Some(text) => text.clone().into_bytes(),
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::bad_request("body must be a JSON object")),
            Err(_) => Err(ApiError::bad_request("body is not valid JSON")),
        }
    }

    /// A string field that may be absent or null.
    pub fn optional_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad_request(format!("{field} must be a string"))),
        }
    }

    pub fn required_str(&self, field: &str) -> Result<&str, ApiError> {
        match self.optional_str(field)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::bad_request(format!("missing {field}"))),
        }
    }
}
