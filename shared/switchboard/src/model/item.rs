//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::StoreError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A required string attribute. A malformed item is reported by its attribute names only:
/// values may be secrets (tokens, hostIds).
pub fn req_s(item: &Item, name: &'static str) -> Result<String, StoreError> {
    get_s(item, name).map(String::from).ok_or_else(|| {
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        StoreError::Malformed(format!("with attributes [{}]", names.join(", ")), name)
    })
}

pub fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether an item is live at `now`: its TTL attribute is in the future.
pub fn is_live(item: &Item, now: i64) -> bool {
    get_n(item, super::EXPIRES_AT).is_some_and(|t| t > now)
}

/// What `query` finds, across all its pages (the SDK's paginator), turned into `T` by
/// `convert` (`None` skips an item: expired, or not of the kind asked for), stopping once
/// `limit` have been found.
pub async fn query_all<T>(
    query: QueryFluentBuilder,
    limit: usize,
    mut convert: impl FnMut(&Item) -> Result<Option<T>, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut items = query.into_paginator().items().send();
    let mut found = Vec::new();
    while found.len() < limit {
        match items.try_next().await.map_err(crate::error::dynamo_error)? {
            Some(item) => found.extend(convert(&item)?),
            None => break,
        }
    }
    Ok(found)
}

/// A conditional write whose condition did not hold.
pub fn condition_failed<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// A conditional write's outcome: `true` when it was applied, `false` when its condition did
/// not hold (a domain answer, not a failure); anything else is a `StoreError`.
pub fn applied<T, E>(
    result: Result<T, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(crate::error::dynamo_error(e)),
    }
}

/// For a transaction cancelled because a condition failed: which of its items failed theirs
/// (empty when DynamoDB gave no per-item reasons: the caller looks). `None` for any other
/// failure, including a cancellation only for conflicts or throttling, which is no domain
/// answer: `dynamo_error` classifies those (503).
pub fn cancelled_conditions<R>(
    error: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<bool>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match error.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(e) => {
            let reasons = e.cancellation_reasons();
            if reasons.is_empty() {
                return Some(Vec::new());
            }
            let failed: Vec<bool> = reasons
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect();
            failed.contains(&true).then_some(failed)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    /// A TransactWriteItems cancellation as the SDK parses it, with one reason per item.
    pub(crate) fn cancelled(reasons: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let mut exception =
            TransactionCanceledException::builder().message("Transaction cancelled");
        for code in reasons {
            exception =
                exception.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        let status = StatusCode::try_from(400).unwrap();
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(exception.build()),
            HttpResponse::new(status, SdkBody::empty()),
        )
    }

    #[test]
    fn only_failed_conditions_are_domain_answers() {
        assert_eq!(
            cancelled_conditions(&cancelled(&["None", "ConditionalCheckFailed"])),
            Some(vec![false, true])
        );
        for reasons in [
            &["TransactionConflict", "None"][..],
            &["None", "ThrottlingError"],
            &["ValidationError", "None"],
        ] {
            assert_eq!(
                cancelled_conditions(&cancelled(reasons)),
                None,
                "{reasons:?}"
            );
        }
    }

    #[test]
    fn conflicts_and_throttling_are_unavailable_not_domain_answers() {
        use crate::error::{StoreError, dynamo_error};
        for reasons in [
            &["TransactionConflict", "None"][..],
            &["None", "ThrottlingError"],
            &["TransactionConflict", "TransactionConflict", "None"],
        ] {
            assert!(
                matches!(dynamo_error(cancelled(reasons)), StoreError::Unavailable(_)),
                "{reasons:?}"
            );
        }
        // A failed condition is the answer even when another item conflicted; a validation
        // error is a bug.
        for reasons in [
            &["ConditionalCheckFailed", "TransactionConflict"][..],
            &["ValidationError", "None"],
        ] {
            assert!(
                matches!(dynamo_error(cancelled(reasons)), StoreError::Dynamo(_)),
                "{reasons:?}"
            );
        }
        let throttled = SdkError::service_error(
            TransactWriteItemsError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .build(),
            ),
            HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()),
        );
        assert!(matches!(
            dynamo_error(throttled),
            StoreError::Unavailable(_)
        ));
        let failing = SdkError::service_error(
            TransactWriteItemsError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder().build(),
            ),
            HttpResponse::new(StatusCode::try_from(500).unwrap(), SdkBody::empty()),
        );
        assert!(matches!(dynamo_error(failing), StoreError::Unavailable(_)));
        let denied = SdkError::service_error(
            TransactWriteItemsError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .build(),
            ),
            HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()),
        );
        assert!(matches!(dynamo_error(denied), StoreError::Dynamo(_)));
    }

    #[test]
    fn a_malformed_item_is_reported_without_its_values() {
        let item: Item = [
            ("roomId", s("room-1")),
            ("token", s("sfu-token-secret")),
            ("ownerHost", s("host-id-secret")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let text = req_s(&item, "servingPeer").unwrap_err().to_string();
        assert!(text.contains("servingPeer"), "{text}");
        for value in ["room-1", "sfu-token-secret", "host-id-secret"] {
            assert!(!text.contains(value), "{text}");
        }
    }
}
