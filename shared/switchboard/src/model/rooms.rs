//! Rooms (RoomsTable, key `roomId`) and the urlPath → room mapping (PathsTable, key `urlPath`).
//!
//! An SFU room is a **server** (README, "Server lifecycle"): `starting` from createRoom until its
//! SFU identifies with the room's token, then `ready` (in the sparse `ReadyRooms` index, the
//! pool claimRoom takes from), `allocated` once a urlPath claims it, and `ending` while the
//! sweeper or an operator stops it. Every server carries `app` and `deadline`, the keys of the
//! sparse `Servers` index: the time by which something must have happened (its SFU identified,
//! its SFU came back after losing its socket) or the sweeper ends it.
//!
//! Claiming writes the path item and takes the room out of the pool in one transaction, so two
//! paths never share a room and one path never gets two rooms.
//! A host room is registered by a matchmaking host's heartbeat and lives as long as the host;
//! while its host's socket is gone it is in the `Servers` index too (app `host`) until the
//! host identifies again or the grace lapses.

use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};
use rand::seq::SliceRandom;
use subtle::ConstantTimeEq;

use super::item::{
    Item, applied, cancelled_conditions, condition_failed, get_n, get_s, is_live, n, query_all,
    req_s, s,
};
use super::{CONNECTION_TTL_SECONDS, EXPIRES_AT, Store};
use crate::error::{StoreError, dynamo_error};

pub(crate) const READY_INDEX: &str = "ReadyRooms";
const SERVERS_INDEX: &str = "Servers";
const POOLED: &str = "ready";
/// The application every SFU room belongs to.
pub const SFU_APP: &str = "sfu";
/// Host rooms whose host's socket is gone, waiting out the grace.
pub const HOST_APP: &str = "host";
/// Rounds of "read the pool, try its rooms" before claimRoom reports an empty pool.
const CLAIM_ROUNDS: usize = 8;
/// Rooms one claim reads: the same for a pool of 10 and of 100,000 (`scripts/bench.sh`); a
/// round whose every room was taken by a concurrent claim reads twice as many, up to the max.
const CLAIM_CANDIDATES: i32 = 10;
const MAX_CLAIM_CANDIDATES: i32 = 160;
/// An `ending` server whose ending was interrupted is tried again after this.
const ENDING_RETRY_SECONDS: i64 = 60;
/// Warm-pool slot items are refreshed by every sweep; this only collects abandoned ones.
const SLOT_TTL_SECONDS: i64 = 7 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomKind {
    Sfu,
    Host,
    /// A session's game server (sessions API): a server of a configured application.
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomState {
    Starting,
    Ready,
    Allocated,
    Ending,
}

impl RoomState {
    fn parse(value: Option<&str>) -> Option<Self> {
        Some(match value? {
            "starting" => Self::Starting,
            "ready" => Self::Ready,
            "allocated" => Self::Allocated,
            "ending" => Self::Ending,
            _ => return None,
        })
    }
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
    /// The warm-pool slot this room was launched to fill.
    pub slot: Option<u32>,
    /// When the sweeper ends it unless something happens first.
    pub deadline: Option<i64>,
    /// Its SFU has identified at least once.
    pub identified: bool,
    pub expires_at: i64,
    /// A game server's application (image) and location; an SFU room's application is `sfu`.
    pub app: Option<String>,
    pub location: Option<String>,
    /// The session a game server is allocated to, and when that session ends.
    pub session_id: Option<String>,
    pub session_ends: Option<i64>,
    /// A game server's address, once its task runs.
    pub address: Option<String>,
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
            .field("slot", &self.slot)
            .field("deadline", &self.deadline)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Room {
    /// A room item, or `None` for other items of the table (warm-pool slots).
    pub(crate) fn from_item(item: &Item) -> Result<Option<Self>, StoreError> {
        let kind = match get_s(item, "kind") {
            Some("host") => RoomKind::Host,
            Some("sfu") => RoomKind::Sfu,
            Some("server") => RoomKind::Server,
            Some(_) => return Ok(None),
            None => return Err(StoreError::Malformed("room".into(), "kind")),
        };
        let state = match kind {
            RoomKind::Host => RoomState::Ready,
            RoomKind::Sfu | RoomKind::Server => RoomState::parse(get_s(item, "state"))
                .ok_or_else(|| StoreError::Malformed("room".into(), "state"))?,
        };
        Ok(Some(Self {
            room_id: req_s(item, "roomId")?,
            kind,
            state,
            url_path: get_s(item, "urlPath").map(String::from),
            token: get_s(item, "token").map(String::from),
            owner_host: get_s(item, "ownerHost").map(String::from),
            serving_peer: get_s(item, "servingPeer").map(String::from),
            serving_connection: get_s(item, "servingConnection").map(String::from),
            task_arn: get_s(item, "taskArn").map(String::from),
            slot: get_n(item, "slot").and_then(|v| u32::try_from(v).ok()),
            deadline: get_n(item, "deadline"),
            identified: item.contains_key("identifiedAt"),
            expires_at: get_n(item, EXPIRES_AT).unwrap_or_default(),
            app: get_s(item, "app").map(String::from),
            location: get_s(item, "location").map(String::from),
            session_id: get_s(item, "sessionId").map(String::from),
            session_ends: get_n(item, "sessionEnds"),
            address: get_s(item, "address").map(String::from),
        }))
    }

    /// Whether `token` is this SFU room's or game server's token (constant time).
    pub fn token_matches(&self, token: &str) -> bool {
        self.kind != RoomKind::Host
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

/// A room a claim handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedRoom {
    pub room_id: String,
    /// Set when this claim took the room out of the warm pool (not when the path had it).
    pub vacated_slot: Option<u32>,
}

/// How an SFU proves it serves a room.
pub enum SfuProof<'a> {
    Token(&'a str),
    /// No token: allowed only for the first identify of a `starting` room, and only when
    /// `SWITCHBOARD_SFU_TOKEN_OPTIONAL` is on (the stock Arbiter SFU sends none).
    FirstIdentify,
}

/// What a urlPath currently maps to.
enum PathState {
    Free,
    Live(String),
    /// Mapped to a room that no longer exists or no longer has this path: the mapping may
    /// be overwritten.
    Dead(String),
}

impl Store {
    pub(crate) async fn room_item(&self, room_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(out.item)
    }

    /// A live room, read strongly consistently.
    pub async fn room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        match self.room_item(room_id).await? {
            Some(item) if is_live(&item, self.clock.now()) => Room::from_item(&item),
            _ => Ok(None),
        }
    }

    /// A room as it is in the table, expired or not: the sweeper ends expired servers too.
    pub async fn room_record(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        match self.room_item(room_id).await? {
            Some(item) => Room::from_item(&item),
            None => Ok(None),
        }
    }

    /// Records a server for createRoom (or a warm-pool top-up) before its task is launched: not
    /// claimable until its SFU identifies, and ended by the sweeper if that has not happened
    /// within `start_timeout`.
    pub async fn create_starting_room(
        &self,
        room_id: &str,
        token: &str,
        start_timeout: i64,
        slot: Option<u32>,
    ) -> Result<(), StoreError> {
        let deadline = self.clock.expiry_in(start_timeout);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.tables.rooms)
            .item("roomId", s(room_id))
            .item("kind", s("sfu"))
            .item("app", s(SFU_APP))
            .item("state", s("starting"))
            .item("token", s(token))
            .item("deadline", n(deadline))
            .item(EXPIRES_AT, n(deadline))
            .condition_expression("attribute_not_exists(roomId)");
        if let Some(slot) = slot {
            put = put.item("slot", n(i64::from(slot)));
        }
        put.send().await.map_err(dynamo_error)?;
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

    /// Removes a room whose task certainly never started.
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
        // Live only while the room exists, is not ending, and points back at this path.
        let points_back = self.room(&room_id).await?.is_some_and(|room| {
            room.state != RoomState::Ending && room.url_path.as_deref() == Some(url_path)
        });
        Ok(if points_back {
            PathState::Live(room_id)
        } else {
            PathState::Dead(room_id)
        })
    }

    /// The live room a urlPath is mapped to.
    pub async fn room_for_path(&self, url_path: &str) -> Result<Option<String>, StoreError> {
        Ok(match self.path_state(url_path).await? {
            PathState::Live(room_id) => Some(room_id),
            PathState::Free | PathState::Dead(_) => None,
        })
    }

    /// Maps `url_path` to a ready room: the one it already has, or one taken from the pool.
    /// `None` when the pool is empty.
    pub async fn claim_room(&self, url_path: &str) -> Result<Option<ClaimedRoom>, StoreError> {
        let mut limit = CLAIM_CANDIDATES;
        for _ in 0..CLAIM_ROUNDS {
            let dead = match self.path_state(url_path).await? {
                PathState::Live(room_id) => {
                    return Ok(Some(ClaimedRoom {
                        room_id,
                        vacated_slot: None,
                    }));
                }
                PathState::Dead(room_id) => Some(room_id),
                PathState::Free => None,
            };
            let mut candidates = self.ready_rooms(limit).await?;
            if candidates.is_empty() {
                return Ok(None);
            }
            candidates.shuffle(&mut rand::rng());
            for room_id in candidates {
                match self.try_claim(url_path, &room_id, dead.as_deref()).await? {
                    ClaimAttempt::Claimed(slot) => {
                        return Ok(Some(ClaimedRoom {
                            room_id,
                            vacated_slot: slot,
                        }));
                    }
                    ClaimAttempt::RoomTaken => continue,
                    // Another request mapped this path first: its room is the answer.
                    ClaimAttempt::PathTaken => break,
                }
            }
            limit = (limit * 2).min(MAX_CLAIM_CANDIDATES);
        }
        // Every round lost its race; what the path maps to now is the answer.
        Ok(self
            .room_for_path(url_path)
            .await?
            .map(|room_id| ClaimedRoom {
                room_id,
                vacated_slot: None,
            }))
    }

    /// Live ready rooms, freshest first (an expired room not yet deleted is never a candidate).
    async fn ready_rooms(&self, limit: i32) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.rooms)
            .index_name(READY_INDEX)
            .key_condition_expression("#pool = :ready AND expiresAt > :now")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":ready", s(POOLED))
            .expression_attribute_values(":now", n(self.clock.now()))
            .scan_index_forward(false)
            .limit(limit)
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
            .update_expression("SET #state = :allocated, urlPath = :path REMOVE #pool")
            .condition_expression(
                "#pool = :ready AND expiresAt > :now AND attribute_not_exists(urlPath)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":allocated", s("allocated"))
            .expression_attribute_values(":path", s(url_path))
            .expression_attribute_values(":ready", s(POOLED))
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
            Ok(_) => {
                // The slot it filled, so the caller can refill it.
                let slot = self.room(room_id).await?.and_then(|r| r.slot);
                Ok(ClaimAttempt::Claimed(slot))
            }
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

    /// The SFU of `room_id` identified: it becomes the room's serving peer (on a new socket
    /// too, within the reconnect grace: the room keeps its path and members), and an
    /// unclaimed room becomes ready (claimable). `None` when the room or proof does not match.
    pub async fn attach_sfu(
        &self,
        room_id: &str,
        proof: SfuProof<'_>,
        peer_id: &str,
        connection_id: &str,
    ) -> Result<Option<Room>, StoreError> {
        for _ in 0..3 {
            let Some(room) = self.room(room_id).await? else {
                return Ok(None);
            };
            if room.kind != RoomKind::Sfu || room.state == RoomState::Ending {
                return Ok(None);
            }
            let proof_condition = match proof {
                SfuProof::Token(token) if room.token_matches(token) => "#token = :token",
                SfuProof::FirstIdentify
                    if room.state == RoomState::Starting && !room.identified =>
                {
                    "#state = :starting AND attribute_not_exists(identifiedAt)"
                }
                _ => return Ok(None),
            };
            let now = self.clock.now();
            let expires_at = now + CONNECTION_TTL_SECONDS;
            let mut request = self
                .client
                .update_item()
                .table_name(&self.tables.rooms)
                .key("roomId", s(room_id))
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":peer", s(peer_id))
                .expression_attribute_values(":conn", s(connection_id))
                .expression_attribute_values(":exp", n(expires_at))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":ending", s("ending"))
                .return_values(ReturnValue::AllNew);
            match proof {
                SfuProof::Token(token) => {
                    request = request
                        .expression_attribute_names("#token", "token")
                        .expression_attribute_values(":token", s(token));
                }
                SfuProof::FirstIdentify => {
                    request = request.expression_attribute_values(":starting", s("starting"));
                }
            }
            // While it has its socket, the server's deadline is its records' expiry: API
            // Gateway closes every socket within 2 h, and an SFU that reconnects moves it.
            let common = "servingPeer = :peer, servingConnection = :conn, expiresAt = :exp, \
                          deadline = :exp, identifiedAt = if_not_exists(identifiedAt, :now)";
            let request = match &room.url_path {
                None => request
                    .update_expression(format!("SET #state = :ready, #pool = :ready, {common}"))
                    .condition_expression(format!(
                        "{proof_condition} AND expiresAt > :now AND #state <> :ending \
                         AND attribute_not_exists(urlPath)"
                    ))
                    .expression_attribute_names("#pool", "pool")
                    .expression_attribute_values(":ready", s(POOLED)),
                Some(path) => request
                    .update_expression(format!("SET {common}"))
                    .condition_expression(format!(
                        "{proof_condition} AND expiresAt > :now AND #state <> :ending \
                         AND urlPath = :path"
                    ))
                    .expression_attribute_values(":path", s(path)),
            };
            match request.send().await {
                Ok(out) => {
                    if let Some(path) = &room.url_path {
                        self.refresh_path(path, room_id, expires_at).await?;
                    }
                    return match out.attributes() {
                        Some(item) => Room::from_item(item),
                        None => Ok(None),
                    };
                }
                Err(e) if condition_failed(&e) => continue,
                Err(e) => return Err(dynamo_error(e)),
            }
        }
        Ok(None)
    }

    pub(crate) async fn refresh_path(
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
        applied(result).map(|_| ())
    }

    /// The host that registered `room_id` joined it as its serving peer (again, after a lost
    /// socket: its grace ends).
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
            .update_expression(
                "SET servingPeer = :peer, servingConnection = :conn REMOVE app, deadline",
            )
            .condition_expression("ownerHost = :owner AND expiresAt > :now")
            .expression_attribute_values(":peer", s(peer_id))
            .expression_attribute_values(":conn", s(connection_id))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(self.clock.now()))
            .send()
            .await;
        applied(result)
    }

    /// The serving peer's socket on `connection_id` is gone. Nobody is told yet: the room
    /// keeps its path and members for `grace_seconds`, within which the SFU or host may
    /// identify again; after that the sweeper ends it. Returns whether this connection was the
    /// room's serving peer.
    pub async fn detach_serving_peer(
        &self,
        room_id: &str,
        connection_id: &str,
        grace_seconds: i64,
    ) -> Result<bool, StoreError> {
        let Some(room) = self.room(room_id).await? else {
            return Ok(false);
        };
        if room.serving_connection.as_deref() != Some(connection_id) {
            return Ok(false);
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .condition_expression("servingConnection = :conn")
            .expression_attribute_values(":conn", s(connection_id));
        let grace = n(self.clock.expiry_in(grace_seconds));
        request = match room.kind {
            RoomKind::Sfu => request
                .update_expression("SET deadline = :deadline REMOVE servingConnection")
                .expression_attribute_values(":deadline", grace),
            RoomKind::Host => request
                .update_expression("SET app = :app, deadline = :deadline REMOVE servingConnection")
                .expression_attribute_values(":app", s(HOST_APP))
                .expression_attribute_values(":deadline", grace),
            // A session's server lives until its session ends, socket or not (a cold-started
            // one need not know Switchboard at all).
            RoomKind::Server if room.session_id.is_some() => {
                request.update_expression("REMOVE servingConnection")
            }
            // A warm server without its socket cannot be told its session: out of the pool.
            RoomKind::Server => request
                .update_expression("SET deadline = :deadline REMOVE servingConnection, #pool")
                .expression_attribute_names("#pool", "pool")
                .expression_attribute_values(":deadline", grace),
        };
        applied(request.send().await)
    }

    /// Servers of `app` whose deadline has passed, oldest first, at most `limit`. Read from
    /// the `Servers` index, expired items included: the sweeper ends those too.
    pub async fn due_servers(&self, app: &str, limit: i32) -> Result<Vec<Room>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.rooms)
            .index_name(SERVERS_INDEX)
            .key_condition_expression("app = :app AND deadline <= :now")
            .expression_attribute_values(":app", s(app))
            .expression_attribute_values(":now", n(self.clock.now()))
            .limit(limit)
            .send()
            .await
            .map_err(dynamo_error)?;
        let mut rooms = Vec::new();
        for item in out.items() {
            rooms.extend(Room::from_item(item)?);
        }
        Ok(rooms)
    }

    /// Every server of `app`, up to `limit` (the sweeper's reconciliation with ECS).
    pub async fn servers(&self, app: &str, limit: usize) -> Result<Vec<Room>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.rooms)
            .index_name(SERVERS_INDEX)
            .key_condition_expression("app = :app")
            .expression_attribute_values(":app", s(app));
        query_all(query, limit, Room::from_item).await
    }

    /// Starts ending a server: it leaves the pool and cannot be identified into again. With
    /// `only_if_due`, only when its deadline has passed (a server that came back in time is
    /// left alone). Returns the room as it was, or `None` when someone else is ending it or it
    /// is not due. Idempotent: an interrupted ending is taken up again after a minute.
    pub async fn begin_ending(
        &self,
        room_id: &str,
        only_if_due: bool,
    ) -> Result<Option<Room>, StoreError> {
        let now = self.clock.now();
        let mut condition =
            "attribute_exists(roomId) AND (#state <> :ending OR deadline <= :now)".to_string();
        if only_if_due {
            condition.push_str(" AND deadline <= :now");
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .update_expression("SET #state = :ending, deadline = :retry, app = if_not_exists(app, :host) REMOVE #pool")
            .condition_expression(condition)
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":ending", s("ending"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":retry", n(now + ENDING_RETRY_SECONDS))
            .expression_attribute_values(":host", s(HOST_APP))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes() {
                Some(item) => Room::from_item(item),
                None => Ok(None),
            },
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// The last step of ending a server: its path and its record go.
    pub async fn finish_ending(&self, room: &Room) -> Result<(), StoreError> {
        if let Some(path) = &room.url_path {
            self.delete_path_of(path, &room.room_id).await?;
        }
        if let Some(host_id) = room.owner_host() {
            self.forget_host(host_id, &room.room_id).await?;
        }
        if let Some(session_id) = &room.session_id {
            self.delete_session(session_id, &room.room_id, None).await?;
        }
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(&room.room_id))
            .condition_expression("#state = :ending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ending", s("ending"))
            .send()
            .await;
        applied(result).map(|_| ())
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
        applied(result).map(|_| ())
    }

    /// The room warm-pool slot `slot` of `app` was last filled with, if any.
    pub async fn slot_room(&self, app: &str, slot: u32) -> Result<Option<String>, StoreError> {
        Ok(self
            .room_item(&slot_key(app, slot))
            .await?
            .and_then(|item| get_s(&item, "room").map(String::from)))
    }

    /// Points `slot` at `room_id` if it still points at `previous`: of two sweepers (or a
    /// sweeper and a claim) refilling one slot, exactly one wins and launches.
    pub async fn take_slot(
        &self,
        app: &str,
        slot: u32,
        previous: Option<&str>,
        room_id: &str,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(slot_key(app, slot)))
            .update_expression("SET kind = :slot, #room = :new, expiresAt = :exp")
            .expression_attribute_names("#room", "room")
            .expression_attribute_values(":slot", s("slot"))
            .expression_attribute_values(":new", s(room_id))
            .expression_attribute_values(":exp", n(self.clock.expiry_in(SLOT_TTL_SECONDS)));
        request = match previous {
            Some(previous) => request
                .condition_expression("#room = :previous")
                .expression_attribute_values(":previous", s(previous)),
            None => request.condition_expression("attribute_not_exists(#room)"),
        };
        applied(request.send().await)
    }
}

pub(crate) fn slot_key(app: &str, slot: u32) -> String {
    format!("slot#{app}#{slot}")
}

enum ClaimAttempt {
    Claimed(Option<u32>),
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
