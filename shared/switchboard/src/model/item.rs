//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
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

/// A conditional write whose condition did not hold.
pub fn condition_failed<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// For a cancelled transaction: which of its items failed their condition. `None` when the
/// cancellation was for another reason or carried no per-item reasons.
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
            Some(
                reasons
                    .iter()
                    .map(|r| r.code() == Some("ConditionalCheckFailed"))
                    .collect(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
