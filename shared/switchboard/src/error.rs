//! The errors a route can answer with, and the one place storage failures are classified.

use std::any::Any;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use thiserror::Error;

/// `Retry-After` (seconds) on a 420: capacity comes back at the next sweep or later.
pub const CAPACITY_RETRY_AFTER_SECONDS: u32 = 60;

/// `Retry-After` (seconds) on a 503: DynamoDB throttling and brief outages pass in about this.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// What a caller is told when a dependency is unavailable; the detail goes to the logs.
pub const UNAVAILABLE_MESSAGE: &str = "Service temporarily unavailable; retry shortly";

/// What went wrong, in terms a caller can act on. `Internal` and `Unavailable` carry detail for
/// the logs only.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The request is well-formed JSON but a field is invalid (sessions API): 422.
    #[error("{0}")]
    Invalid(String),
    /// No capacity to start a server now (sessions API, as the hosted API answers): 420 with
    /// `Retry-After: 60`.
    #[error("{0}")]
    Capacity(String),
    /// The server a call started or allocated stopped before it could be handed out (its
    /// process exited, its task failed to start): 502 naming why; nothing of it is left.
    #[error("{0}")]
    ServerStopped(String),
    /// A dependency is throttling or unreachable: 503 with `Retry-After`; worth retrying.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized => 401,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Capacity(_) => 420,
            Self::Invalid(_) => 422,
            Self::Internal(_) => 500,
            Self::ServerStopped(_) => 502,
            Self::Unavailable(_) => 503,
        }
    }

    /// The message a caller may see: `internal` for an internal error, a fixed one for an
    /// unavailable dependency (both logged with their detail), else the error itself.
    pub fn public_message(&self, internal: &str) -> String {
        match self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                internal.to_string()
            }
            Self::Unavailable(detail) => {
                let dependency = unavailable_dependency(detail);
                crate::metrics::one(
                    crate::metrics::name::UNAVAILABLE,
                    &[("Dependency", dependency)],
                );
                tracing::warn!(%detail, dependency, "dependency unavailable");
                UNAVAILABLE_MESSAGE.to_string()
            }
            other => other.to_string(),
        }
    }
}

/// Which dependency an `Unavailable` detail is about: the storage adapter's details start with
/// `dynamodb`, the address lookup's name EC2, the rest are ECS's (launches).
fn unavailable_dependency(detail: &str) -> &'static str {
    if detail.starts_with("dynamodb") {
        "DynamoDB"
    } else if detail.starts_with("EC2") {
        "EC2"
    } else {
        "ECS"
    }
}

/// Failures of the storage and socket adapters. They never reach a caller verbatim.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("dynamodb: {0}")]
    Dynamo(String),
    /// Throttled, unreachable, or failing on its side: a retry may well succeed.
    #[error("dynamodb unavailable: {0}")]
    Unavailable(String),
    #[error("management API: {0}")]
    Socket(String),
    /// Which item (never its values, which may be secrets) and the attribute it lacks.
    #[error("item {0} is malformed: no string attribute {1}")]
    Malformed(String, &'static str),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

/// Error codes (`x-amzn-ErrorType`) that mean "not now" rather than "not so".
const TRANSIENT_CODES: [&str; 8] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    // A single-item write that met an item in another transaction.
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// Cancellation reasons of a transaction that mean "not now". Only `ConditionalCheckFailed`
/// is a domain answer; `ValidationError` and the like are bugs (500).
const TRANSIENT_REASONS: [&str; 4] = [
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

/// A failed DynamoDB call, as `dynamo_error` accepts it.
pub trait DynamoFailure {
    fn into_store_error(self) -> StoreError;
}

impl<E> DynamoFailure for SdkError<E, HttpResponse>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn into_store_error(self) -> StoreError {
        let detail = error_chain(&self);
        if is_transient(&self) {
            StoreError::Unavailable(detail)
        } else {
            StoreError::Dynamo(detail)
        }
    }
}

impl DynamoFailure for BuildError {
    fn into_store_error(self) -> StoreError {
        StoreError::Dynamo(error_chain(&self))
    }
}

/// Turns a DynamoDB failure into a `StoreError` with its full chain of causes for the logs:
/// the one place that decides between "unavailable" (503, retry) and "broken" (500).
pub fn dynamo_error(e: impl DynamoFailure) -> StoreError {
    e.into_store_error()
}

/// Throttling, DynamoDB's own failures (5xx), transport failures (connection refused,
/// timeouts), and transactions cancelled only by conflicts or throttling.
fn is_transient<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata + 'static,
{
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => true,
        SdkError::ResponseError(r) => r.raw().status().is_server_error(),
        SdkError::ServiceError(s) => {
            let error = s.err();
            if error.code().is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
                return true;
            }
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                (error as &dyn Any).downcast_ref::<TransactWriteItemsError>()
            {
                let codes = || {
                    cancelled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                };
                return !codes().any(|c| c == "ConditionalCheckFailed")
                    && codes().any(|c| TRANSIENT_REASONS.contains(&c));
            }
            s.raw().status().is_server_error()
        }
        _ => false,
    }
}

pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
