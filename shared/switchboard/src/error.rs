//! The errors a route can answer with, and the one place they become HTTP responses.

use thiserror::Error;

/// What went wrong, in terms a caller can act on. `Internal` carries detail for the logs only.
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
            Self::Internal(_) => 500,
        }
    }
}

/// Failures of the storage and socket adapters. They never reach a caller verbatim.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("dynamodb: {0}")]
    Dynamo(String),
    #[error("management API: {0}")]
    Socket(String),
    /// Which item (never its values, which may be secrets) and the attribute it lacks.
    #[error("item {0} is malformed: no string attribute {1}")]
    Malformed(String, &'static str),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Turns any SDK error into a `StoreError` with its full chain of causes for the logs.
pub fn dynamo_error<E>(e: E) -> StoreError
where
    E: std::error::Error + 'static,
{
    StoreError::Dynamo(error_chain(&e))
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
