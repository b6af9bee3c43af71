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

/// Longest unknown region a 400 repeats back; longer or unprintable ones are not echoed.
const MAX_ECHOED_REGION: usize = 64;

/// One of the configured regions (`SWITCHBOARD_REGIONS`).
pub fn region<'a>(config: &crate::config::Config, raw: &'a str) -> Result<&'a str, ApiError> {
    if config.regions.iter().any(|r| r == raw) {
        return Ok(raw);
    }
    let expected = config.regions.join(", ");
    let echo = raw.chars().count() <= MAX_ECHOED_REGION
        && !raw.chars().any(|c| c.is_control() || c.is_whitespace());
    Err(ApiError::bad_request(if echo {
        format!("unknown region {raw:?}; expected one of {expected}")
    } else {
        format!("unknown region; expected one of {expected}")
    }))
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

    #[test]
    fn unknown_regions_are_echoed_only_when_short_and_printable() {
        let mut vars: std::collections::HashMap<String, String> = crate::config::Tables::VARIABLES
            .iter()
            .map(|(logical, variable)| (variable.to_string(), logical.to_string()))
            .collect();
        vars.insert("SWITCHBOARD_REGIONS".into(), "local".into());
        let config =
            crate::config::Config::from_vars(&vars, &[crate::config::Need::Regions]).unwrap();
        assert_eq!(region(&config, "local").unwrap(), "local");
        assert_eq!(
            region(&config, "mars").unwrap_err().to_string(),
            "unknown region \"mars\"; expected one of local"
        );
        for raw in ["z".repeat(10 * 1024), "a\u{1b}[2J".to_string()] {
            assert_eq!(
                region(&config, &raw).unwrap_err().to_string(),
                "unknown region; expected one of local"
            );
        }
    }
}
