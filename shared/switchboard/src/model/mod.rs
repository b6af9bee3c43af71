//! The DynamoDB model. Its public API speaks the domain; expression strings live beside the
//! items they touch. Invariants every function here keeps:
//! - an item whose `expiresAt` (epoch seconds, the table's TTL attribute) is not in the future
//!   is absent, whether or not DynamoDB has deleted it yet;
//! - request paths use key reads and queries only, never Scan;
//! - reads that order matters for (identify, then handshake) are strongly consistent.

mod hosts;
mod item;
mod rooms;
mod sessions;
mod sockets;

pub use hosts::{HeartbeatOutcome, HostStatus, MatchOutcome, MatchedHost};
pub use rooms::{ClaimedRoom, HOST_APP, Room, RoomKind, RoomState, SFU_APP, SfuProof};
pub use sessions::{
    Allocation, Join, MAX_PLAYERS_PER_CALL, NewServer, NewSession, SESSION_MAX_SECONDS, STARTING,
    Session, server_pool, server_slots,
};
pub use sockets::{Connection, JoinOutcome, Member, Role};

use aws_sdk_dynamodb::Client;

use crate::clock::Clock;
use crate::config::Tables;

/// TTL attribute on every table.
pub const EXPIRES_AT: &str = "expiresAt";

/// Connections and members outlive API Gateway's 2 h connection limit, so a live socket's
/// records are never expired under it; a dead one's go within 10 minutes after that.
pub const CONNECTION_TTL_SECONDS: i64 = 2 * 3600 + 600;

/// Access to Switchboard's tables.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    tables: Tables,
    clock: Clock,
}

impl Store {
    pub fn new(client: Client, tables: Tables, clock: Clock) -> Self {
        Self {
            client,
            tables,
            clock,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}
