//! Input rules shared by the routes.

use crate::error::ApiError;

pub const MAX_URL_PATH: usize = 256;
pub const MAX_ID: usize = 128;

/// Surrounding `/` trimmed (`/myRoom` and `myRoom` are one room); 1–256 printable characters.
pub fn url_path(raw: Option<&str>) -> Result<String, ApiError> {
    let trimmed = raw.unwrap_or_default().trim_matches('/');
    if trimmed.is_empty() {
        return Err(ApiError::bad_request("missing urlPath"));
    }
    if trimmed.chars().count() > MAX_URL_PATH {
        return Err(ApiError::bad_request(format!(
            "urlPath must be at most {MAX_URL_PATH} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "urlPath must contain only printable characters",
        ));
    }
    Ok(trimmed.to_string())
}

/// An id chosen by a caller (hostId, roomId, peer id): 1–128 printable, non-space characters.
pub fn identifier(field: &str, raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::bad_request(format!("missing {field}")));
    }
    if raw.chars().count() > MAX_ID {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {MAX_ID} characters"
        )));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad_request(format!(
            "{field} must contain only printable, non-space characters"
        )));
    }
    Ok(raw.to_string())
}

/// One of the configured regions (`SWITCHBOARD_REGIONS`).
pub fn region<'a>(config: &crate::config::Config, raw: &'a str) -> Result<&'a str, ApiError> {
    if config.regions.iter().any(|r| r == raw) {
        Ok(raw)
    } else {
        Err(ApiError::bad_request(format!(
            "unknown region {raw:?}; expected one of {}",
            config.regions.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_are_trimmed_and_bounded() {
        assert_eq!(url_path(Some("/myRoom/")).unwrap(), "myRoom");
        assert_eq!(url_path(Some("a/b")).unwrap(), "a/b");
        assert!(url_path(Some("///")).is_err());
        assert!(url_path(None).is_err());
        assert!(url_path(Some(&"x".repeat(257))).is_err());
        assert!(url_path(Some(&"x".repeat(256))).is_ok());
        assert!(url_path(Some("a\nb")).is_err());
    }

    #[test]
    fn identifiers_reject_spaces_and_length() {
        assert!(identifier("hostId", "abc-123").is_ok());
        assert!(identifier("hostId", "a b").is_err());
        assert!(identifier("hostId", "").is_err());
        assert!(identifier("hostId", &"h".repeat(129)).is_err());
    }
}
