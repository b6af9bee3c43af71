//! WebSocket connections (ConnectionsTable, key `connectionId`) and room membership
//! (MembersTable, key `roomId` + `peerId`). A connection joins one room as one peer, once;
//! both records carry the same TTL, past API Gateway's 2 h connection limit.

use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};

use super::item::{Item, cancelled_conditions, condition_failed, get_s, is_live, n, req_s, s};
use super::{CONNECTION_TTL_SECONDS, EXPIRES_AT, Store};
use crate::error::{StoreError, dynamo_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Sfu,
    Host,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Sfu => "sfu",
            Self::Host => "host",
        }
    }

    fn parse(value: Option<&str>) -> Option<Self> {
        match value? {
            "client" => Some(Self::Client),
            "sfu" => Some(Self::Sfu),
            "host" => Some(Self::Host),
            _ => None,
        }
    }

    /// The SFU or host that a room's unaddressed handshakes go to.
    pub fn is_serving(self) -> bool {
        matches!(self, Self::Sfu | Self::Host)
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
    pub async fn join_room(
        &self,
        connection_id: &str,
        room_id: &str,
        peer_id: &str,
        role: Role,
    ) -> Result<JoinOutcome, StoreError> {
        // An authenticated serving peer (SFU, host) may take its id over from a socket that
        // has not been cleaned up yet; a client may not take another client's id.
        let takeover = role.is_serving();
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
        if !takeover {
            put = put
                .condition_expression(
                    "attribute_not_exists(peerId) OR connectionId = :conn OR expiresAt <= :now",
                )
                .expression_attribute_values(":conn", s(connection_id))
                .expression_attribute_values(":now", n(now));
        }
        let put = put.build().map_err(dynamo_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(JoinOutcome::Joined),
            Err(e) => match cancelled_conditions(&e) {
                Some(failed) if failed.first() == Some(&true) => Ok(JoinOutcome::AlreadyIdentified),
                Some(failed) if failed.get(1) == Some(&true) => Ok(JoinOutcome::PeerIdTaken),
                Some(_) => {
                    // No per-item reasons: tell the two apart by looking.
                    let ours = self.connection(connection_id).await?;
                    let consistent = ours.as_ref().is_some_and(|c| match &c.membership {
                        None => true,
                        Some((room, peer, _)) => room == room_id && peer == peer_id,
                    });
                    Ok(if consistent {
                        JoinOutcome::PeerIdTaken
                    } else {
                        JoinOutcome::AlreadyIdentified
                    })
                }
                None => Err(dynamo_error(e)),
            },
        }
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
        let mut members = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.members)
                .key_condition_expression("roomId = :room")
                .expression_attribute_values(":room", s(room_id))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(dynamo_error)?;
            for item in out.items() {
                if is_live(item, now) {
                    members.push(Member::from_item(item)?);
                }
            }
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(members)
    }

    /// Deletes a connection and its membership; returns what it was, if it existed, with its
    /// membership only when that membership was still its own.
    pub async fn close_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<Connection>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.connections)
            .key("connectionId", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(dynamo_error)?;
        let Some(item) = out.attributes() else {
            return Ok(None);
        };
        let mut connection = Connection::from_item(item)?;
        if let Some((room_id, peer_id, _)) = &connection.membership {
            let result = self
                .client
                .delete_item()
                .table_name(&self.tables.members)
                .key("roomId", s(room_id))
                .key("peerId", s(peer_id))
                .condition_expression("connectionId = :conn")
                .expression_attribute_values(":conn", s(connection_id))
                .send()
                .await;
            match result {
                Ok(_) => {}
                // The peer id has since been taken over by another connection: this one no
                // longer speaks for it.
                Err(e) if condition_failed(&e) => connection.membership = None,
                Err(e) => return Err(dynamo_error(e)),
            }
        }
        Ok(Some(connection))
    }
}
