//! ICE servers with coturn REST-API credentials (`use-auth-secret`):
//! `username = "<expiry epoch seconds>:<user>"`, `credential = base64(HMAC-SHA1(secret, username))`.
//! The timestamp is the expiry: coturn refuses a username whose timestamp is in the past.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::config::Config;

pub fn credential(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An RTCIceServer array: the STUN URLs, then the TURN URLs with credentials for `user`
/// valid until `now + SWITCHBOARD_TURN_TTL_SECONDS`.
pub fn ice_servers(config: &Config, user: &str, now: i64) -> Vec<Value> {
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(json!({ "urls": config.stun_urls }));
    }
    if let (Some(secret), false) = (&config.turn_secret, config.turn_urls.is_empty()) {
        let username = format!("{}:{user}", now + config.turn_ttl_seconds);
        servers.push(json!({
            "urls": config.turn_urls,
            "credential": credential(secret, &username),
            "username": username,
        }));
    }
    servers
}

/// The answer getRoomId and claimRoom give a room client: the room (as `roomId` and, for the
/// Arbiter SDK, `id`), the signaling URL and ICE servers with TURN credentials for the room.
pub fn room_answer(deps: &crate::Deps, room_id: &str) -> Result<Value, crate::ApiError> {
    let signaling_url =
        deps.config.ws_url.clone().ok_or_else(|| {
            crate::ApiError::Internal("SWITCHBOARD_WS_URL is not configured".into())
        })?;
    let now = deps.store.clock().now();
    Ok(json!({
        "roomId": room_id,
        "id": room_id,
        "signalingUrl": signaling_url,
        "iceServers": ice_servers(&deps.config, room_id, now),
    }))
}

#[cfg(test)]
mod tests {
    use super::credential;

    #[test]
    fn credential_is_base64_hmac_sha1_of_the_username() {
        // Independently computed: printf '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(
            credential("north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }
}
