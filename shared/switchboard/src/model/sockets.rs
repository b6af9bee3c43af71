//! WebSocket connections (ConnectionsTable, key `connectionId`) and room membership
//! (MembersTable, key `roomId` + `peerId`). A connection joins one room as one peer, once;
//! both records carry the same TTL, past API Gateway's 2 h connection limit. A room's clients
//! are counted on its room item (`memberCount`, RoomsTable) in the same transactions that
//! add and remove them, which is what holds a room to `SWITCHBOARD_MAX_ROOM_MEMBERS`.

use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, TransactWriteItem, Update};

use super::item::{
    Item, cancelled_conditions, condition_failed, get_n, get_s, is_live, n, query_all, req_s, s,
};
use super::{CONNECTION_TTL_SECONDS, EXPIRES_AT, Store};
use crate::error::{StoreError, dynamo_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Sfu,
    Host,
    /// A session's game server.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Sfu => "sfu",
            Self::Server => "server",
            Self::Host => "host",
        }
    }

    fn parse(value: Option<&str>) -> Option<Self> {
        match value? {
            "client" => Some(Self::Client),
            "sfu" => Some(Self::Sfu),
            "server" => Some(Self::Server),
            "host" => Some(Self::Host),
            _ => None,
        }
    }

    /// The SFU or host that a room's unaddressed handshakes go to.
    pub fn is_serving(self) -> bool {
        matches!(self, Self::Sfu | Self::Host | Self::Server)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    /// Set once the connection has identified.
    pub membership: Option<(String, String, Role)>,
}

impl Connection {
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        let membership = match (
            get_s(item, "roomId"),
            get_s(item, "peerId"),
            Role::parse(get_s(item, "role")),
        ) {
            (Some(room), Some(peer), Some(role)) => {
                Some((room.to_string(), peer.to_string(), role))
            }
            _ => None,
        };
        Ok(Self {
            connection_id: req_s(item, "connectionId")?,
            membership,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub peer_id: String,
    pub connection_id: String,
    pub role: Role,
}

impl Member {
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        Ok(Self {
            peer_id: req_s(item, "peerId")?,
            connection_id: req_s(item, "connectionId")?,
            role: Role::parse(get_s(item, "role")).unwrap_or(Role::Client),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    /// Another live connection is that peer in that room.
    PeerIdTaken,
    /// This connection already identified as someone else, or is not open.
    AlreadyIdentified,
    /// The room already holds its cap of identified clients.
    RoomFull,
    /// The room stopped existing (or expired) before the join.
    RoomGone,
}

/// Tries of a join or a counted leave before a conflict or throttling is the caller's (503).
const WRITE_ATTEMPTS: u32 = 5;

/// Waits a little longer after each transient failure (conflicting transactions on a busy
/// room's counter), with jitter so that contenders spread out.
async fn back_off(attempt: u32) {
    use rand::Rng;
    let base = 10u64 << attempt.min(5);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

/// A room's client count as read, to correct it only if nothing changed since.
struct MemberCount {
    members: i64,
    /// Bumped by every counted join and leave, in the same transaction as the membership.
    epoch: Option<i64>,
}

impl Store {
    pub async fn open_connection(&self, connection_id: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.connections)
            .item("connectionId", s(connection_id))
            .item(EXPIRES_AT, n(self.clock.expiry_in(CONNECTION_TTL_SECONDS)))
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    /// A live connection, read strongly consistently.
    pub async fn connection(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.connections)
            .key("connectionId", s(connection_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        match out.item() {
            Some(item) if is_live(item, self.clock.now()) => Connection::from_item(item).map(Some),
            _ => Ok(None),
        }
    }

    /// Makes `connection_id` peer `peer_id` of `room_id`, atomically with its membership.
    /// Identifying again as the same peer of the same room is allowed (idempotent).
    ///
    /// A room holds at most `max_clients` clients (its serving peer is not counted): the room
    /// item's `memberCount` is raised in the same transaction that makes a client a member,
    /// under the condition that it is below the cap, and lowered when a member leaves. A
    /// count that drifted (a member that expired without leaving) is corrected from the live
    /// members when it says the room is full, so the cap is exact.
    pub async fn join_room(
        &self,
        connection_id: &str,
        room_id: &str,
        peer_id: &str,
        role: Role,
        max_clients: i64,
    ) -> Result<JoinOutcome, StoreError> {
        let mut recounted = false;
        let mut transient = None;
        for attempt in 0..WRITE_ATTEMPTS {
            // Strongly consistent: whether this join makes a new member decides whether it
            // counts, and the write's condition holds it to what was read.
            let existing = match role {
                Role::Client => self.member(room_id, peer_id).await?,
                _ => None,
            };
            let counted = role == Role::Client && existing.is_none();
            let result = self
                .join_transaction(connection_id, room_id, peer_id, role, counted, max_clients)
                .await?
                .send()
                .await;
            let e = match result {
                Ok(_) => return Ok(JoinOutcome::Joined),
                Err(e) => e,
            };
            match cancelled_conditions(&e) {
                Some(failed) if failed.first() == Some(&true) => {
                    return Ok(JoinOutcome::AlreadyIdentified);
                }
                Some(failed) if failed.get(1) == Some(&true) => match existing {
                    Some(member) if member.connection_id != connection_id => {
                        return Ok(JoinOutcome::PeerIdTaken);
                    }
                    // The member changed since it was read: read it again.
                    _ => continue,
                },
                Some(failed) => {
                    // The room's count refused it (or, with no per-item reasons, may have).
                    if failed.get(2) == Some(&true) || (failed.is_empty() && counted) {
                        match self.member_count(room_id).await? {
                            None => return Ok(JoinOutcome::RoomGone),
                            Some(count) if count.members >= max_clients => {
                                if recounted
                                    || self.recount_clients(room_id, &count).await? >= max_clients
                                {
                                    return Ok(JoinOutcome::RoomFull);
                                }
                                recounted = true;
                                continue;
                            }
                            // A place freed up meanwhile.
                            Some(_) if !failed.is_empty() => continue,
                            Some(_) => {}
                        }
                    }
                    // No per-item reasons: tell the two apart by looking.
                    let ours = self.connection(connection_id).await?;
                    let consistent = ours.as_ref().is_some_and(|c| match &c.membership {
                        None => true,
                        Some((room, peer, _)) => room == room_id && peer == peer_id,
                    });
                    return Ok(if consistent {
                        JoinOutcome::PeerIdTaken
                    } else {
                        JoinOutcome::AlreadyIdentified
                    });
                }
                None => match dynamo_error(e) {
                    // Conflicting joins of one busy room: try again shortly.
                    error @ StoreError::Unavailable(_) => {
                        transient = Some(error);
                        back_off(attempt).await;
                    }
                    error => return Err(error),
                },
            }
        }
        Err(transient.unwrap_or_else(|| {
            StoreError::Unavailable(format!("join of room {room_id} kept losing races"))
        }))
    }

    /// The join's writes: the connection's membership, the member item, and for a new client
    /// the room's count (third, so cancellation reasons name it by position).
    async fn join_transaction(
        &self,
        connection_id: &str,
        room_id: &str,
        peer_id: &str,
        role: Role,
        counted: bool,
        max_clients: i64,
    ) -> Result<
        aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
        StoreError,
    >{
        let now = self.clock.now();
        let expires_at = now + CONNECTION_TTL_SECONDS;
        let update = Update::builder()
            .table_name(&self.tables.connections)
            .key("connectionId", s(connection_id))
            // A connection whose record an explicit leave removed may identify again: the
            // socket is open (API Gateway routes frames only from open sockets).
            .update_expression(
                "SET roomId = :room, peerId = :peer, #role = :role, expiresAt = if_not_exists(expiresAt, :exp)",
            )
            .condition_expression("attribute_not_exists(roomId) OR (roomId = :room AND peerId = :peer)")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":room", s(room_id))
            .expression_attribute_values(":peer", s(peer_id))
            .expression_attribute_values(":role", s(role.as_str()))
            .expression_attribute_values(":exp", n(expires_at))
            .build()
            .map_err(dynamo_error)?;
        let mut put = Put::builder()
            .table_name(&self.tables.members)
            .item("roomId", s(room_id))
            .item("peerId", s(peer_id))
            .item("connectionId", s(connection_id))
            .item("role", s(role.as_str()))
            .item(EXPIRES_AT, n(expires_at));
        // An authenticated serving peer (SFU, host) may take its id over from a socket that
        // has not been cleaned up yet; a client may not take another client's id. A client's
        // write holds to what was read: a new member (counted), or its own live one.
        put = match (role.is_serving(), counted) {
            (true, _) => put,
            (false, true) => put
                .condition_expression("attribute_not_exists(peerId) OR expiresAt <= :now")
                .expression_attribute_values(":now", n(now)),
            (false, false) => put
                .condition_expression("connectionId = :conn AND expiresAt > :now")
                .expression_attribute_values(":conn", s(connection_id))
                .expression_attribute_values(":now", n(now)),
        };
        let put = put.build().map_err(dynamo_error)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().put(put).build());
        if counted {
            let count = Update::builder()
                .table_name(&self.tables.rooms)
                .key("roomId", s(room_id))
                .update_expression("ADD memberCount :one, memberEpoch :one")
                .condition_expression(
                    "attribute_exists(roomId) AND expiresAt > :now \
                     AND (attribute_not_exists(memberCount) OR memberCount < :cap)",
                )
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":cap", n(max_clients))
                .build()
                .map_err(dynamo_error)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().update(count).build());
        }
        Ok(transaction)
    }

    /// A live room's client count, read strongly consistently; `None` when the room is gone.
    async fn member_count(&self, room_id: &str) -> Result<Option<MemberCount>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .projection_expression("roomId, expiresAt, memberCount, memberEpoch")
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(out
            .item()
            .filter(|item| is_live(item, self.clock.now()))
            .map(|item| MemberCount {
                members: get_n(item, "memberCount").unwrap_or_default(),
                epoch: get_n(item, "memberEpoch"),
            }))
    }

    /// Counts a room's live clients and, if no join or leave happened since `seen` was read,
    /// writes that count over the stored one. Returns the live count.
    async fn recount_clients(&self, room_id: &str, seen: &MemberCount) -> Result<i64, StoreError> {
        let live = self
            .members(room_id)
            .await?
            .iter()
            .filter(|m| m.role == Role::Client)
            .count();
        let live = i64::try_from(live).unwrap_or(i64::MAX);
        if live != seen.members {
            tracing::info!(
                room_id,
                stored = seen.members,
                live,
                "correcting a room's member count"
            );
            let update = self
                .client
                .update_item()
                .table_name(&self.tables.rooms)
                .key("roomId", s(room_id))
                .update_expression("SET memberCount = :live")
                .expression_attribute_values(":live", n(live));
            let update = match seen.epoch {
                Some(epoch) => update
                    .condition_expression("attribute_exists(roomId) AND memberEpoch = :epoch")
                    .expression_attribute_values(":epoch", n(epoch)),
                None => update.condition_expression(
                    "attribute_exists(roomId) AND attribute_not_exists(memberEpoch)",
                ),
            };
            match update.send().await {
                Ok(_) => {}
                // Someone joined or left meanwhile: their write is the newer truth.
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(dynamo_error(e)),
            }
        }
        Ok(live)
    }

    /// A live member of a room, read strongly consistently.
    pub async fn member(&self, room_id: &str, peer_id: &str) -> Result<Option<Member>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.members)
            .key("roomId", s(room_id))
            .key("peerId", s(peer_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        match out.item() {
            Some(item) if is_live(item, self.clock.now()) => Member::from_item(item).map(Some),
            _ => Ok(None),
        }
    }

    /// Every live member of a room (one partition: a Query, never a Scan).
    pub async fn members(&self, room_id: &str) -> Result<Vec<Member>, StoreError> {
        let now = self.clock.now();
        let query = self
            .client
            .query()
            .table_name(&self.tables.members)
            .key_condition_expression("roomId = :room")
            .expression_attribute_values(":room", s(room_id))
            .consistent_read(true);
        query_all(query, usize::MAX, |item| {
            is_live(item, now)
                .then(|| Member::from_item(item))
                .transpose()
        })
        .await
    }

    /// Removes a connection with its membership (and its room's client count) in one
    /// transaction, so that an outage in the middle never leaves a member without its
    /// connection record or a connection claiming a membership that is gone. Returns the
    /// connection as it was, `None` when another caller closed it first; its membership is
    /// `None` when the peer id had since been taken over by another connection.
    pub async fn close_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<Connection>, StoreError> {
        // Read as stored, expired or not: a stale record is closed all the same.
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.connections)
            .key("connectionId", s(connection_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let mut connection = Connection::from_item(item)?;
        let Some((room_id, peer_id, role)) = connection.membership.clone() else {
            return Ok(self
                .delete_connection(connection_id)
                .await?
                .then_some(connection));
        };
        let mut counted = role == Role::Client;
        let mut attempt = 0;
        loop {
            let delete_connection = Delete::builder()
                .table_name(&self.tables.connections)
                .key("connectionId", s(connection_id))
                .condition_expression("attribute_exists(connectionId)")
                .build()
                .map_err(dynamo_error)?;
            let delete_member = Delete::builder()
                .table_name(&self.tables.members)
                .key("roomId", s(&room_id))
                .key("peerId", s(&peer_id))
                .condition_expression("connectionId = :conn")
                .expression_attribute_values(":conn", s(connection_id))
                .build()
                .map_err(dynamo_error)?;
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .delete(delete_connection)
                        .build(),
                )
                .transact_items(TransactWriteItem::builder().delete(delete_member).build());
            if counted {
                let count = Update::builder()
                    .table_name(&self.tables.rooms)
                    .key("roomId", s(&room_id))
                    .update_expression("ADD memberCount :minus, memberEpoch :one")
                    .condition_expression("memberCount > :zero")
                    .expression_attribute_values(":minus", n(-1))
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":zero", n(0))
                    .build()
                    .map_err(dynamo_error)?;
                request =
                    request.transact_items(TransactWriteItem::builder().update(count).build());
            }
            let e = match request.send().await {
                Ok(_) => return Ok(Some(connection)),
                Err(e) => e,
            };
            match cancelled_conditions(&e).as_deref() {
                // Another caller closed it first.
                Some([true, ..]) => return Ok(None),
                // The peer id is no longer this connection's (taken over, or gone): the
                // connection record alone goes.
                Some([false, true, ..]) => {
                    connection.membership = None;
                    return Ok(self
                        .delete_connection(connection_id)
                        .await?
                        .then_some(connection));
                }
                // The count cannot be lowered (no count, a room gone): without it. A count too
                // high is corrected by the next join that finds the room full.
                Some(_) if counted => counted = false,
                Some(_) => return Err(dynamo_error(e)),
                None => match dynamo_error(e) {
                    StoreError::Unavailable(_) if attempt + 1 < WRITE_ATTEMPTS => {
                        back_off(attempt).await;
                        attempt += 1;
                    }
                    error => return Err(error),
                },
            }
        }
    }

    /// Deletes a connection record; false when it was already gone.
    async fn delete_connection(&self, connection_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.connections)
            .key("connectionId", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(out.attributes().is_some())
    }
}

impl Store {
    /// A `ping` on `connection_id`: its records live another `CONNECTION_TTL_SECONDS`, and if it
    /// is a room's serving peer, so do the room (its deadline too, unless a session's end sets
    /// it) and the room's path. Returns whether the connection was known.
    pub async fn keep_alive(&self, connection_id: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let expires = now + CONNECTION_TTL_SECONDS;
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.connections)
            .key("connectionId", s(connection_id))
            .update_expression("SET expiresAt = :exp")
            .condition_expression("attribute_exists(connectionId) AND expiresAt > :now")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let connection = match out {
            Ok(out) => match out.attributes() {
                Some(item) => Connection::from_item(item)?,
                None => return Ok(false),
            },
            Err(e) if condition_failed(&e) => return Ok(false),
            Err(e) => return Err(dynamo_error(e)),
        };
        let Some((room_id, peer_id, role)) = connection.membership else {
            return Ok(true);
        };
        let member = self
            .client
            .update_item()
            .table_name(&self.tables.members)
            .key("roomId", s(&room_id))
            .key("peerId", s(&peer_id))
            .update_expression("SET expiresAt = :exp")
            .condition_expression("connectionId = :conn")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":conn", s(connection_id))
            .send()
            .await;
        super::item::applied(member)?;
        if !role.is_serving() {
            return Ok(true);
        }
        let room = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(&room_id))
            .update_expression("SET expiresAt = :exp, deadline = :exp")
            .condition_expression(
                "servingConnection = :conn AND #state <> :ending AND attribute_not_exists(sessionEnds) \
                 AND attribute_not_exists(ownerHost)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":conn", s(connection_id))
            .expression_attribute_values(":ending", s("ending"))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match room {
            Ok(out) => {
                if let Some(path) = out.attributes().and_then(|item| get_s(item, "urlPath")) {
                    self.refresh_path(path, &room_id, expires).await?;
                }
            }
            Err(e) if condition_failed(&e) => {}
            Err(e) => return Err(dynamo_error(e)),
        }
        Ok(true)
    }
}
