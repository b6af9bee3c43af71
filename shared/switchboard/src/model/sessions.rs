//! Sessions (SessionsTable, key `sessionId`), their players (PlayersTable, key `playerId`), and
//! game servers (RoomsTable items of kind `server`, the same lifecycle as SFU rooms).
//!
//! A session is a game server allocated to a caller. Warm: a server already running and
//! identified on the signaling socket is in the `ReadyRooms` index under
//! `ready#<image>#<location>`; allocating it is one transaction that writes the session and
//! takes the server out of the pool under a condition, so no server goes to two sessions.
//! Cold: the session and its server are written together before the task is launched.
//! Listing queries the sparse `LiveSessions` index; a player item names the one live session
//! the player is in, so a player is never in two.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use serde_json::Value;

use super::item::{
    Item, applied, cancelled_conditions, condition_failed, get_n, get_s, is_live, n, query_all,
    req_s, s,
};
use super::rooms::{READY_INDEX, Room};
use super::{CONNECTION_TTL_SECONDS, EXPIRES_AT, Store};
use crate::error::{StoreError, dynamo_error};

/// A session's status until its server's address is known (then `ready`).
pub const STARTING: &str = "starting";
const LISTED_INDEX: &str = "LiveSessions";
const LISTED: &str = "live";
/// A session without a `ttl` is kept this long at most (then ended like any other).
pub const SESSION_MAX_SECONDS: i64 = 7 * 86_400;
/// Players a join or leave may name at once (one transaction holds at most 100 items).
pub const MAX_PLAYERS_PER_CALL: usize = 50;

/// The pool a ready, unallocated game server of `image` in `location` waits in.
pub fn server_pool(image: &str, location: &str) -> String {
    format!("ready#{image}#{location}")
}

/// The warm-pool slot family of `image` in `location`.
pub fn server_slots(image: &str, location: &str) -> String {
    format!("{image}@{location}")
}

#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub id: String,
    pub server_id: String,
    pub image: String,
    pub location: String,
    pub status: String,
    pub host: Option<String>,
    pub ports: Value,
    pub players: Vec<String>,
    /// Epoch milliseconds.
    pub created: i64,
    /// When the session ends by itself (its `ttl`), epoch seconds.
    pub ends_at: Option<i64>,
    pub request_hash: String,
}

impl Session {
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        let players: Vec<String> = item
            .get("players")
            .and_then(|v| v.as_ss().ok())
            .map(|set| set.iter().filter(|p| !p.is_empty()).cloned().collect())
            .unwrap_or_default();
        Ok(Self {
            id: req_s(item, "sessionId")?,
            server_id: req_s(item, "serverId")?,
            image: req_s(item, "image")?,
            location: req_s(item, "location")?,
            status: req_s(item, "status")?,
            host: get_s(item, "host").map(String::from),
            ports: get_s(item, "ports")
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Array(Vec::new())),
            players,
            created: get_n(item, "created").unwrap_or_default(),
            ends_at: get_n(item, "endsAt"),
            request_hash: req_s(item, "requestHash")?,
        })
    }
}

/// A session about to be written.
pub struct NewSession<'a> {
    pub id: &'a str,
    pub image: &'a str,
    pub location: &'a str,
    pub ports: &'a Value,
    pub request_hash: &'a str,
    pub ttl: Option<i64>,
}

/// A game server about to be written (cold path and warm-pool launches).
pub struct NewServer<'a> {
    pub id: &'a str,
    pub image: &'a str,
    pub location: &'a str,
    pub token: &'a str,
    pub start_timeout: i64,
    pub slot: Option<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Allocation {
    Allocated,
    /// Another session took this server first.
    ServerTaken,
    /// A live session has this id already.
    SessionExists,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Join {
    Joined(Vec<String>),
    UnknownSession,
    /// This player is in another live session.
    Taken(String),
}

impl Store {
    fn session_put(
        &self,
        session: &NewSession<'_>,
        server_id: &str,
        status: &str,
    ) -> Result<Put, StoreError> {
        let now = self.clock.now();
        let ends_at = session.ttl.map(|ttl| now + ttl);
        let mut put = Put::builder()
            .table_name(&self.tables.sessions)
            .item("sessionId", s(session.id))
            .item("serverId", s(server_id))
            .item("image", s(session.image))
            .item("location", s(session.location))
            .item("status", s(status))
            .item("ports", s(session.ports.to_string()))
            .item("requestHash", s(session.request_hash))
            .item("created", n(self.clock.now_millis()))
            .item("listed", s(LISTED))
            .item(EXPIRES_AT, n(ends_at.unwrap_or(now + SESSION_MAX_SECONDS)))
            .condition_expression("attribute_not_exists(sessionId) OR expiresAt <= :now")
            .expression_attribute_values(":now", n(now));
        if let Some(ends_at) = ends_at {
            put = put.item("endsAt", n(ends_at));
        }
        put.build().map_err(dynamo_error)
    }

    fn server_put(
        &self,
        server: &NewServer<'_>,
        session: Option<&NewSession<'_>>,
    ) -> Result<Put, StoreError> {
        let now = self.clock.now();
        let deadline = now + server.start_timeout;
        let mut put = Put::builder()
            .table_name(&self.tables.rooms)
            .item("roomId", s(server.id))
            .item("kind", s("server"))
            .item("app", s(server.image))
            .item("location", s(server.location))
            .item("state", s("starting"))
            .item("token", s(server.token))
            .item("deadline", n(deadline))
            .item(EXPIRES_AT, n(deadline))
            .condition_expression("attribute_not_exists(roomId)");
        if let Some(slot) = server.slot {
            put = put.item("slot", n(i64::from(slot)));
        }
        if let Some(session) = session {
            put = put.item("sessionId", s(session.id)).item(
                "sessionEnds",
                n(session.ttl.map_or(now + SESSION_MAX_SECONDS, |t| now + t)),
            );
        }
        put.build().map_err(dynamo_error)
    }

    /// Records a game server (and, on the cold path, its session) before its task launches.
    /// False when the session id is taken by a live session.
    pub async fn create_server(
        &self,
        server: &NewServer<'_>,
        session: Option<&NewSession<'_>>,
    ) -> Result<bool, StoreError> {
        let mut request = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .put(self.server_put(server, session)?)
                .build(),
        );
        if let Some(session) = session {
            request = request.transact_items(
                TransactWriteItem::builder()
                    .put(self.session_put(session, server.id, STARTING)?)
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) => match cancelled_conditions(&e) {
                Some(failed) if failed.get(1) == Some(&true) => Ok(false),
                _ => Err(dynamo_error(e)),
            },
        }
    }

    /// Removes the records of a server whose task certainly never started.
    pub async fn forget_server(
        &self,
        server_id: &str,
        session_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut request = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.tables.rooms)
                        .key("roomId", s(server_id))
                        .build()
                        .map_err(dynamo_error)?,
                )
                .build(),
        );
        if let Some(session_id) = session_id {
            request = request.transact_items(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.tables.sessions)
                            .key("sessionId", s(session_id))
                            .condition_expression("serverId = :server")
                            .expression_attribute_values(":server", s(server_id))
                            .build()
                            .map_err(dynamo_error)?,
                    )
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if cancelled_conditions(&e).is_some() => Ok(()),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// Ready, unallocated game servers of `image` in `location`, freshest first.
    pub async fn ready_servers(
        &self,
        image: &str,
        location: &str,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.rooms)
            .index_name(READY_INDEX)
            .key_condition_expression("#pool = :pool AND expiresAt > :now")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":pool", s(server_pool(image, location)))
            .expression_attribute_values(":now", n(self.clock.now()))
            .scan_index_forward(false)
            .limit(16)
            .send()
            .await
            .map_err(dynamo_error)?;
        out.items()
            .iter()
            .map(|item| req_s(item, "roomId"))
            .collect()
    }

    /// Allocates the ready server `server_id` to `session`, in one transaction: the session is
    /// written and the server taken out of its pool under a condition.
    pub async fn allocate_server(
        &self,
        server_id: &str,
        session: &NewSession<'_>,
    ) -> Result<Allocation, StoreError> {
        let now = self.clock.now();
        let ends = session.ttl.map_or(now + SESSION_MAX_SECONDS, |t| now + t);
        let update = Update::builder()
            .table_name(&self.tables.rooms)
            .key("roomId", s(server_id))
            .update_expression(
                "SET #state = :allocated, sessionId = :session, sessionEnds = :ends, \
                 deadline = :ends, expiresAt = :ends REMOVE #pool",
            )
            .condition_expression(
                "#pool = :pool AND expiresAt > :now AND attribute_exists(servingConnection)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":allocated", s("allocated"))
            .expression_attribute_values(":session", s(session.id))
            .expression_attribute_values(":ends", n(ends))
            .expression_attribute_values(":pool", s(server_pool(session.image, session.location)))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(dynamo_error)?;
        let put = self.session_put(session, server_id, "ready")?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Allocation::Allocated),
            Err(e) => match cancelled_conditions(&e) {
                Some(failed) if failed.get(1) == Some(&true) => Ok(Allocation::SessionExists),
                Some(_) => Ok(Allocation::ServerTaken),
                None => Err(dynamo_error(e)),
            },
        }
    }

    /// A server's address as its session's host, once known: only on the session of that
    /// server (its id may carry a newer session by then).
    pub async fn set_session_host(
        &self,
        session_id: &str,
        server_id: &str,
        host: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .key("sessionId", s(session_id))
            .update_expression("SET host = :host, #status = :ready")
            .condition_expression("serverId = :server")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":server", s(server_id))
            .expression_attribute_values(":host", s(host))
            .expression_attribute_values(":ready", s("ready"))
            .send()
            .await;
        applied(result).map(|_| ())
    }

    /// A game server's task runs at `address`: a cold session's server is allocated from now
    /// on, until its session ends; a warm-pool server waits for its process to identify.
    pub async fn server_running(&self, server: &Room, address: &str) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(&server.room_id))
            .condition_expression("attribute_exists(roomId) AND #state <> :ending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ending", s("ending"))
            .expression_attribute_values(":address", s(address));
        request = match server.session_ends {
            Some(ends) if server.state == super::RoomState::Starting => request
                .update_expression(
                    "SET address = :address, #state = :allocated, deadline = :ends, expiresAt = :ends",
                )
                .expression_attribute_values(":allocated", s("allocated"))
                .expression_attribute_values(":ends", n(ends)),
            _ => request.update_expression("SET address = :address"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// A game server identified with its token on `connection_id` (again, within the grace).
    /// A warm-pool server that has no session yet becomes ready: allocatable.
    pub async fn attach_server(
        &self,
        server: &Room,
        peer_id: &str,
        connection_id: &str,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let expires = now + CONNECTION_TTL_SECONDS;
        let (Some(app), Some(location)) = (&server.app, &server.location) else {
            return Ok(false);
        };
        let request = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(&server.room_id))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":peer", s(peer_id))
            .expression_attribute_values(":conn", s(connection_id))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ending", s("ending"))
            .return_values(ReturnValue::None);
        let request = match server.session_ends {
            None => request
                .update_expression(
                    "SET #state = :ready, #pool = :pool, servingPeer = :peer, servingConnection = :conn, \
                     expiresAt = :exp, deadline = :exp, identifiedAt = if_not_exists(identifiedAt, :now)",
                )
                .condition_expression(
                    "expiresAt > :now AND #state <> :ending AND attribute_not_exists(sessionId)",
                )
                .expression_attribute_names("#pool", "pool")
                .expression_attribute_values(":ready", s("ready"))
                .expression_attribute_values(":pool", s(server_pool(app, location)))
                .expression_attribute_values(":exp", n(expires)),
            // Allocated: it lives until its session ends, whatever its socket does.
            Some(ends) => request
                .update_expression(
                    "SET servingPeer = :peer, servingConnection = :conn, deadline = :ends, \
                     identifiedAt = if_not_exists(identifiedAt, :now)",
                )
                .condition_expression("expiresAt > :now AND #state <> :ending")
                .expression_attribute_values(":ends", n(ends)),
        };
        applied(request.send().await)
    }

    /// A live session.
    pub async fn session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .key("sessionId", s(session_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        match out.item() {
            Some(item) if is_live(item, self.clock.now()) => Session::from_item(item).map(Some),
            _ => Ok(None),
        }
    }

    /// Every live session, oldest first (the `LiveSessions` index, all pages).
    pub async fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        let now = self.clock.now();
        let query = self
            .client
            .query()
            .table_name(&self.tables.sessions)
            .index_name(LISTED_INDEX)
            .key_condition_expression("listed = :live")
            .expression_attribute_values(":live", s(LISTED));
        query_all(query, usize::MAX, |item| {
            is_live(item, now)
                .then(|| Session::from_item(item))
                .transpose()
        })
        .await
    }

    /// Deletes session `session_id` and releases its players, if it is still the session of
    /// `server_id` (and, with `created`, the same one, created then): an id is free for a new
    /// session as soon as its session is gone or expired, and ending the old one must never
    /// take the new one with it. Returns whether it deleted the session.
    pub async fn delete_session(
        &self,
        session_id: &str,
        server_id: &str,
        created: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.tables.sessions)
            .key("sessionId", s(session_id))
            .condition_expression("serverId = :server")
            .expression_attribute_values(":server", s(server_id))
            .return_values(ReturnValue::AllOld);
        if let Some(created) = created {
            delete = delete
                .condition_expression("serverId = :server AND created = :created")
                .expression_attribute_values(":created", n(created));
        }
        let out = match delete.send().await {
            Ok(out) => out,
            Err(e) if condition_failed(&e) => return Ok(false),
            Err(e) => return Err(dynamo_error(e)),
        };
        let players: Vec<String> = out
            .attributes()
            .and_then(|item| item.get("players"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        for player in players.iter().filter(|p| !p.is_empty()) {
            let result = self
                .client
                .delete_item()
                .table_name(&self.tables.players)
                .key("playerId", s(player))
                .condition_expression("sessionId = :session")
                .expression_attribute_values(":session", s(session_id))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(dynamo_error(e)),
            }
        }
        Ok(true)
    }

    /// Puts `players` into the live session `session_id`, atomically: either all join, or none
    /// does because one of them is in another live session.
    pub async fn join_players(
        &self,
        session_id: &str,
        players: &[String],
    ) -> Result<Join, StoreError> {
        let Some(session) = self.session(session_id).await? else {
            return Ok(Join::UnknownSession);
        };
        let now = self.clock.now();
        let expires = session.ends_at.unwrap_or(now + SESSION_MAX_SECONDS);
        let mut request = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.tables.sessions)
                        .key("sessionId", s(session_id))
                        .update_expression("ADD players :players")
                        .condition_expression("expiresAt > :now")
                        .expression_attribute_values(
                            ":players",
                            AttributeValue::Ss(players.to_vec()),
                        )
                        .expression_attribute_values(":now", n(now))
                        .build()
                        .map_err(dynamo_error)?,
                )
                .build(),
        );
        for player in players {
            request = request.transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables.players)
                            .item("playerId", s(player))
                            .item("sessionId", s(session_id))
                            .item(EXPIRES_AT, n(expires))
                            .condition_expression(
                                "attribute_not_exists(playerId) OR expiresAt <= :now OR sessionId = :session",
                            )
                            .expression_attribute_values(":now", n(now))
                            .expression_attribute_values(":session", s(session_id))
                            .build()
                            .map_err(dynamo_error)?,
                    )
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(e) => match cancelled_conditions(&e) {
                Some(failed) if failed.first() == Some(&true) => return Ok(Join::UnknownSession),
                Some(failed) => {
                    let taken = failed
                        .iter()
                        .skip(1)
                        .position(|f| *f)
                        .and_then(|i| players.get(i))
                        .cloned()
                        .unwrap_or_default();
                    return Ok(Join::Taken(taken));
                }
                None => return Err(dynamo_error(e)),
            },
        }
        let mut all: BTreeSet<String> = session.players.into_iter().collect();
        all.extend(players.iter().cloned());
        Ok(Join::Joined(all.into_iter().collect()))
    }

    /// Takes `players` out of whatever live session they are in; returns those that were in one.
    pub async fn leave_players(&self, players: &[String]) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now();
        let mut left = Vec::new();
        for player in players {
            let out = self
                .client
                .delete_item()
                .table_name(&self.tables.players)
                .key("playerId", s(player))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(dynamo_error)?;
            let Some(item) = out.attributes() else {
                continue;
            };
            let Some(session_id) = get_s(item, "sessionId") else {
                continue;
            };
            if !is_live(item, now) {
                continue;
            }
            let result = self
                .client
                .update_item()
                .table_name(&self.tables.sessions)
                .key("sessionId", s(session_id))
                .update_expression("DELETE players :player")
                .condition_expression("attribute_exists(sessionId)")
                .expression_attribute_values(":player", AttributeValue::Ss(vec![player.clone()]))
                .send()
                .await;
            match result {
                Ok(_) => left.push(player.clone()),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(dynamo_error(e)),
            }
        }
        Ok(left)
    }
}
