//! Rooms (RoomsTable, key `roomId`) and the urlPath → room mapping (PathsTable, key `urlPath`).
//!
//! An SFU room is `starting` from createRoom until its SFU identifies with the room's token,
//! then `warm`: in the sparse `WarmPool` index (attribute `pool`), which is the pool claimRoom
//! takes from. Claiming writes the path item and takes the room out of the pool in one
//! transaction, so two paths never share a room and one path never gets two rooms.
//! A host room is registered by a matchmaking host's heartbeat and lives as long as the host.

use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};
use rand::seq::SliceRandom;
use subtle::ConstantTimeEq;

use super::item::{
    Item, cancelled_conditions, condition_failed, get_n, get_s, is_live, n, req_s, s,
};
use super::{CONNECTION_TTL_SECONDS, EXPIRES_AT, STARTING_ROOM_TTL_SECONDS, Store};
use crate::error::{StoreError, dynamo_error};

const POOL_INDEX: &str = "WarmPool";
const WARM: &str = "warm";
/// Rounds of "read the pool, try its rooms" before claimRoom reports an empty pool.
const CLAIM_ROUNDS: usize = 8;
const CLAIM_CANDIDATES: i32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomKind {
    Sfu,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomState {
    Starting,
    Warm,
    Claimed,
}

/// Its `Debug` output leaves out the SFU token and the owning host's id (secrets).
#[derive(Clone)]
pub struct Room {
    pub room_id: String,
    pub kind: RoomKind,
    pub state: RoomState,
    pub url_path: Option<String>,
    token: Option<String>,
    owner_host: Option<String>,
    pub serving_peer: Option<String>,
    pub serving_connection: Option<String>,
    pub task_arn: Option<String>,
    pub expires_at: i64,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Room")
            .field("room_id", &self.room_id)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .field("url_path", &self.url_path)
            .field("token", &redacted(&self.token))
            .field("owner_host", &redacted(&self.owner_host))
            .field("serving_peer", &self.serving_peer)
            .field("serving_connection", &self.serving_connection)
            .field("task_arn", &self.task_arn)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Room {
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        let kind = match get_s(item, "kind") {
            Some("host") => RoomKind::Host,
            _ => RoomKind::Sfu,
        };
        let state = match get_s(item, "state") {
            Some("warm") => RoomState::Warm,
            Some("claimed") => RoomState::Claimed,
            _ => RoomState::Starting,
        };
        Ok(Self {
            room_id: req_s(item, "roomId")?,
            kind,
            state,
            url_path: get_s(item, "urlPath").map(String::from),
            token: get_s(item, "token").map(String::from),
            owner_host: get_s(item, "ownerHost").map(String::from),
            serving_peer: get_s(item, "servingPeer").map(String::from),
            serving_connection: get_s(item, "servingConnection").map(String::from),
            task_arn: get_s(item, "taskArn").map(String::from),
            expires_at: get_n(item, EXPIRES_AT).unwrap_or_default(),
        })
    }

    /// Whether `token` is this SFU room's token (constant time).
    pub fn token_matches(&self, token: &str) -> bool {
        self.kind == RoomKind::Sfu
            && self
                .token
                .as_deref()
                .is_some_and(|t| bool::from(t.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Whether `host_id` is the host that registered this room (constant time).
    pub fn owned_by_host(&self, host_id: &str) -> bool {
        self.kind == RoomKind::Host
            && self
                .owner_host
                .as_deref()
                .is_some_and(|h| bool::from(h.as_bytes().ct_eq(host_id.as_bytes())))
    }

    pub(crate) fn owner_host(&self) -> Option<&str> {
        self.owner_host.as_deref()
    }
}

/// What a urlPath currently maps to.
enum PathState {
    Free,
    Live(String),
    /// Mapped to a room that no longer exists: the mapping may be overwritten.
    Dead(String),
}

impl Store {
    /// A live room, read strongly consistently.
    pub async fn room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        match out.item() {
            Some(item) if is_live(item, self.clock.now()) => Room::from_item(item).map(Some),
            _ => Ok(None),
        }
    }

    /// Records a room for createRoom before its task is launched: not claimable until its SFU
    /// identifies, and gone after `STARTING_ROOM_TTL_SECONDS` if it never does.
    pub async fn create_starting_room(&self, room_id: &str, token: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.rooms)
            .item("roomId", s(room_id))
            .item("kind", s("sfu"))
            .item("state", s("starting"))
            .item("token", s(token))
            .item(
                EXPIRES_AT,
                n(self.clock.expiry_in(STARTING_ROOM_TTL_SECONDS)),
            )
            .condition_expression("attribute_not_exists(roomId)")
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    pub async fn record_task(&self, room_id: &str, task_arn: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .update_expression("SET taskArn = :arn")
            .condition_expression("attribute_exists(roomId)")
            .expression_attribute_values(":arn", s(task_arn))
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    pub async fn delete_room(&self, room_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    async fn path_state(&self, url_path: &str) -> Result<PathState, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.paths)
            .key("urlPath", s(url_path))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        let Some(item) = out.item() else {
            return Ok(PathState::Free);
        };
        if !is_live(item, self.clock.now()) {
            return Ok(PathState::Free);
        }
        let room_id = req_s(item, "roomId")?;
        Ok(match self.room(&room_id).await? {
            Some(_) => PathState::Live(room_id),
            None => PathState::Dead(room_id),
        })
    }

    /// The live room a urlPath is mapped to.
    pub async fn room_for_path(&self, url_path: &str) -> Result<Option<String>, StoreError> {
        Ok(match self.path_state(url_path).await? {
            PathState::Live(room_id) => Some(room_id),
            PathState::Free | PathState::Dead(_) => None,
        })
    }

    /// Maps `url_path` to a warm room: the one it already has, or one taken from the pool.
    /// `None` when the pool is empty.
    pub async fn claim_room(&self, url_path: &str) -> Result<Option<String>, StoreError> {
        for _ in 0..CLAIM_ROUNDS {
            let dead = match self.path_state(url_path).await? {
                PathState::Live(room_id) => return Ok(Some(room_id)),
                PathState::Dead(room_id) => Some(room_id),
                PathState::Free => None,
            };
            let mut candidates = self.warm_rooms().await?;
            if candidates.is_empty() {
                return Ok(None);
            }
            candidates.shuffle(&mut rand::rng());
            for room_id in candidates {
                match self.try_claim(url_path, &room_id, dead.as_deref()).await? {
                    ClaimAttempt::Claimed => return Ok(Some(room_id)),
                    ClaimAttempt::RoomTaken => continue,
                    // Another request mapped this path first: its room is the answer.
                    ClaimAttempt::PathTaken => break,
                }
            }
        }
        // Every round lost its race; what the path maps to now is the answer.
        self.room_for_path(url_path).await
    }

    async fn warm_rooms(&self) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.rooms)
            .index_name(POOL_INDEX)
            .key_condition_expression("#pool = :warm")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":warm", s(WARM))
            .limit(CLAIM_CANDIDATES)
            .send()
            .await
            .map_err(dynamo_error)?;
        out.items()
            .iter()
            .map(|item| req_s(item, "roomId"))
            .collect()
    }

    async fn try_claim(
        &self,
        url_path: &str,
        room_id: &str,
        dead: Option<&str>,
    ) -> Result<ClaimAttempt, StoreError> {
        let now = self.clock.now();
        let mut path_condition = "attribute_not_exists(urlPath) OR expiresAt <= :now".to_string();
        let mut put = Put::builder()
            .table_name(&self.tables.paths)
            .item("urlPath", s(url_path))
            .item("roomId", s(room_id))
            .item(EXPIRES_AT, n(now + CONNECTION_TTL_SECONDS))
            .expression_attribute_values(":now", n(now));
        if let Some(dead_room) = dead {
            path_condition.push_str(" OR roomId = :dead");
            put = put.expression_attribute_values(":dead", s(dead_room));
        }
        let put = put
            .condition_expression(path_condition)
            .build()
            .map_err(dynamo_error)?;
        let update = Update::builder()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .update_expression("SET #state = :claimed, urlPath = :path REMOVE #pool, warmSince")
            .condition_expression(
                "#pool = :warm AND expiresAt > :now AND attribute_not_exists(urlPath)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":path", s(url_path))
            .expression_attribute_values(":warm", s(WARM))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(dynamo_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimAttempt::Claimed),
            Err(e) => match cancelled_conditions(&e) {
                Some(failed) if failed.first() == Some(&true) => Ok(ClaimAttempt::PathTaken),
                Some(failed) if failed.get(1) == Some(&true) => Ok(ClaimAttempt::RoomTaken),
                // Cancelled without per-item reasons (or a conflicting transaction): look.
                Some(_) => Ok(match self.path_state(url_path).await? {
                    PathState::Live(_) => ClaimAttempt::PathTaken,
                    _ => ClaimAttempt::RoomTaken,
                }),
                None => Err(dynamo_error(e)),
            },
        }
    }

    /// The SFU of `room_id` identified with `token`: it becomes the room's serving peer, and an
    /// unclaimed room becomes warm (claimable). `None` when the room or token does not match.
    pub async fn attach_sfu(
        &self,
        room_id: &str,
        token: &str,
        peer_id: &str,
        connection_id: &str,
    ) -> Result<Option<Room>, StoreError> {
        for _ in 0..3 {
            let Some(room) = self.room(room_id).await? else {
                return Ok(None);
            };
            if !room.token_matches(token) {
                return Ok(None);
            }
            let now = self.clock.now();
            let expires_at = now + CONNECTION_TTL_SECONDS;
            let base = self
                .client
                .update_item()
                .table_name(&self.tables.rooms)
                .key("roomId", s(room_id))
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":peer", s(peer_id))
                .expression_attribute_values(":conn", s(connection_id))
                .expression_attribute_values(":exp", n(expires_at))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":token", s(token))
                .return_values(ReturnValue::AllNew);
            let request = match &room.url_path {
                None => base
                    .update_expression(
                        "SET #state = :warm, #pool = :warm, warmSince = if_not_exists(warmSince, :now), \
                         servingPeer = :peer, servingConnection = :conn, expiresAt = :exp",
                    )
                    .condition_expression("#token = :token AND expiresAt > :now AND attribute_not_exists(urlPath)")
                    .expression_attribute_names("#pool", "pool")
                    .expression_attribute_names("#token", "token")
                    .expression_attribute_values(":warm", s(WARM)),
                Some(path) => base
                    .update_expression("SET servingPeer = :peer, servingConnection = :conn, expiresAt = :exp")
                    .condition_expression("#token = :token AND expiresAt > :now AND urlPath = :path")
                    .expression_attribute_names("#token", "token")
                    .expression_attribute_values(":path", s(path)),
            };
            match request.send().await {
                Ok(out) => {
                    if let Some(path) = &room.url_path {
                        self.refresh_path(path, room_id, expires_at).await?;
                    }
                    return out.attributes().map(Room::from_item).transpose();
                }
                Err(e) if condition_failed(&e) => continue,
                Err(e) => return Err(dynamo_error(e)),
            }
        }
        Ok(None)
    }

    async fn refresh_path(
        &self,
        url_path: &str,
        room_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.paths)
            .key("urlPath", s(url_path))
            .update_expression("SET expiresAt = :exp")
            .condition_expression("roomId = :room")
            .expression_attribute_values(":exp", n(expires_at))
            .expression_attribute_values(":room", s(room_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// The host that registered `room_id` joined it as its serving peer.
    pub async fn attach_host(
        &self,
        room: &Room,
        peer_id: &str,
        connection_id: &str,
    ) -> Result<bool, StoreError> {
        let Some(owner) = room.owner_host() else {
            return Ok(false);
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(&room.room_id))
            .update_expression("SET servingPeer = :peer, servingConnection = :conn")
            .condition_expression("ownerHost = :owner AND expiresAt > :now")
            .expression_attribute_values(":peer", s(peer_id))
            .expression_attribute_values(":conn", s(connection_id))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(self.clock.now()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// The serving peer on `connection_id` left `room_id`: the room stops being claimable or
    /// matchable. An SFU room is deleted with its path; a host room loses its host's
    /// registration until the host's next heartbeat. Returns whether this connection was the
    /// room's serving peer.
    pub async fn detach_serving_peer(
        &self,
        room_id: &str,
        connection_id: &str,
    ) -> Result<bool, StoreError> {
        let Some(room) = self.room(room_id).await? else {
            return Ok(false);
        };
        if room.serving_connection.as_deref() != Some(connection_id) {
            return Ok(false);
        }
        match room.kind {
            RoomKind::Sfu => {
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.tables.rooms)
                    .key("roomId", s(room_id))
                    .condition_expression("servingConnection = :conn")
                    .expression_attribute_values(":conn", s(connection_id))
                    .send()
                    .await;
                match result {
                    Ok(_) => {}
                    Err(e) if condition_failed(&e) => return Ok(false),
                    Err(e) => return Err(dynamo_error(e)),
                }
                if let Some(path) = &room.url_path {
                    self.delete_path_of(path, room_id).await?;
                }
            }
            RoomKind::Host => {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.tables.rooms)
                    .key("roomId", s(room_id))
                    .update_expression("REMOVE servingPeer, servingConnection")
                    .condition_expression("servingConnection = :conn")
                    .expression_attribute_values(":conn", s(connection_id))
                    .send()
                    .await;
                match result {
                    Ok(_) => {}
                    Err(e) if condition_failed(&e) => return Ok(false),
                    Err(e) => return Err(dynamo_error(e)),
                }
                if let Some(host_id) = room.owner_host() {
                    self.forget_host(host_id, room_id).await?;
                }
            }
        }
        Ok(true)
    }

    async fn delete_path_of(&self, url_path: &str, room_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.paths)
            .key("urlPath", s(url_path))
            .condition_expression("roomId = :room")
            .expression_attribute_values(":room", s(room_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(dynamo_error(e)),
        }
    }
}

enum ClaimAttempt {
    Claimed,
    RoomTaken,
    PathTaken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_debug_output_has_no_token_or_host_id() {
        let item: Item = [
            ("roomId", s("room-1")),
            ("kind", s("host")),
            ("token", s("sfu-token-secret")),
            ("ownerHost", s("host-id-secret")),
            (EXPIRES_AT, n(1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let room = Room::from_item(&item).unwrap();
        let debug = format!("{room:?}");
        assert!(debug.contains("room-1"), "{debug}");
        assert!(
            !debug.contains("sfu-token-secret") && !debug.contains("host-id-secret"),
            "{debug}"
        );
    }
}
