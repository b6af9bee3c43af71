//! Matchmaking hosts (HostsTable, key `hostId`).
//!
//! A host is matchable exactly when it is in the sparse `IdleHosts` index: `idleRegion` is set
//! while it is idle and unreserved, and the index's sort key is its liveness expiry, so a match
//! reads only live idle hosts of one region, however many busy or dead hosts are registered.
//! find-match reserves a host by removing it from the index under a condition; a heartbeat
//! that says `idle` never puts a reserved host back while its lease lasts.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, ReturnValue};
use rand::seq::SliceRandom;

use super::item::{Item, applied, condition_failed, n, req_s, s};
use super::{EXPIRES_AT, Store};
use crate::error::{StoreError, dynamo_error};

const IDLE_INDEX: &str = "IdleHosts";
/// Hosts one match reads: the same for a pool of 10 and of 100,000 (`scripts/bench.sh`).
const MATCH_CANDIDATES: i32 = 10;
/// A round that lost every race reads the next hosts of the index, twice as many, up to this:
/// concurrent matches then spread down the index instead of fighting over its head.
const MAX_MATCH_CANDIDATES: i32 = 160;
const MATCH_ROUNDS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostStatus {
    Idle,
    Busy,
}

impl HostStatus {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "idle" => Some(Self::Idle),
            "busy" => Some(Self::Busy),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Busy => "busy",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Registered,
    /// The roomId belongs to another live host or room.
    RoomTaken,
}

#[derive(Clone, PartialEq, Eq)]
pub struct MatchedHost {
    /// The host's secret: never in a response, a log line or `Debug` output.
    pub host_id: String,
    pub room_id: String,
}

impl std::fmt::Debug for MatchedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchedHost")
            .field("host_id", &"<redacted>")
            .field("room_id", &self.room_id)
            .finish()
    }
}

/// A match and what it cost, from DynamoDB's own figures.
#[derive(Debug, Default)]
pub struct MatchOutcome {
    pub host: Option<MatchedHost>,
    /// Items the index queries examined (`ScannedCount`).
    pub items_read: i64,
    /// Read and write capacity consumed by the queries and the reservation.
    pub capacity_units: f64,
}

impl Store {
    /// Registers or refreshes a host: its room is held for it and its liveness runs
    /// `ttl_seconds` from now. A new registration takes `status`; for a live host a heartbeat
    /// may move it to busy but never back to idle (only `status idle` does), and never undoes
    /// a match.
    pub async fn heartbeat(
        &self,
        host_id: &str,
        room_id: &str,
        region: &str,
        status: HostStatus,
        ttl_seconds: i64,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let expires_at = self.clock.expiry_in(ttl_seconds);
        if !self.hold_host_room(host_id, room_id, expires_at).await? {
            return Ok(HeartbeatOutcome::RoomTaken);
        }
        let now = self.clock.now();
        let full = self
            .client
            .update_item()
            .table_name(&self.tables.hosts)
            .key("hostId", s(host_id))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":room", s(room_id))
            .expression_attribute_values(":region", s(region))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":exp", n(expires_at));
        let full = match status {
            // Status persists across heartbeats: `idle` (or no status) registers a new host as
            // idle, but never returns a live busy or reserved host to matching; only
            // `status idle`, or the entry expiring, does.
            HostStatus::Idle => full
                .update_expression(
                    "SET roomId = :room, #region = :region, #status = :status, expiresAt = :exp, \
                     idleRegion = :region REMOVE reservedUntil",
                )
                .condition_expression(
                    "attribute_not_exists(hostId) OR expiresAt <= :now OR \
                     (#status = :status AND (attribute_not_exists(reservedUntil) OR reservedUntil <= :now))",
                )
                .expression_attribute_values(":now", n(now)),
            // Busy needs no guard: it takes the host out of matching whatever else holds.
            HostStatus::Busy => full.update_expression(
                "SET roomId = :room, #region = :region, #status = :status, expiresAt = :exp \
                 REMOVE idleRegion, reservedUntil",
            ),
        };
        match full.send().await {
            Ok(_) => return Ok(HeartbeatOutcome::Registered),
            Err(e) if condition_failed(&e) => {}
            Err(e) => return Err(dynamo_error(e)),
        }
        // Busy or reserved: refresh liveness only; the status stands until a status call, and a
        // reservation until a status call or its lease.
        self.client
            .update_item()
            .table_name(&self.tables.hosts)
            .key("hostId", s(host_id))
            .update_expression("SET roomId = :room, #region = :region, expiresAt = :exp")
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":room", s(room_id))
            .expression_attribute_values(":region", s(region))
            .expression_attribute_values(":exp", n(expires_at))
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(HeartbeatOutcome::Registered)
    }

    /// Holds `room_id` for `host_id` until `expires_at`: refreshes the host's own room, or
    /// takes one that is free or expired. False when it is another's.
    async fn hold_host_room(
        &self,
        host_id: &str,
        room_id: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let refresh = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("roomId", s(room_id))
            .update_expression("SET expiresAt = :exp")
            .condition_expression("kind = :host AND ownerHost = :owner")
            .expression_attribute_values(":exp", n(expires_at))
            .expression_attribute_values(":host", s("host"))
            .expression_attribute_values(":owner", s(host_id))
            .send()
            .await;
        match refresh {
            Ok(_) => return Ok(true),
            Err(e) if condition_failed(&e) => {}
            Err(e) => return Err(dynamo_error(e)),
        }
        let take = self
            .client
            .put_item()
            .table_name(&self.tables.rooms)
            .item("roomId", s(room_id))
            .item("kind", s("host"))
            .item("state", s("warm"))
            .item("ownerHost", s(host_id))
            .item(EXPIRES_AT, n(expires_at))
            .condition_expression("attribute_not_exists(roomId) OR expiresAt <= :now")
            .expression_attribute_values(":now", n(self.clock.now()))
            .send()
            .await;
        match take {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// A live host reports its status; ends any reservation. False when it is not registered
    /// (or its liveness has run out).
    pub async fn set_host_status(
        &self,
        host_id: &str,
        status: HostStatus,
    ) -> Result<bool, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.tables.hosts)
            .key("hostId", s(host_id))
            .condition_expression("attribute_exists(hostId) AND expiresAt > :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":now", n(self.clock.now()));
        let request = match status {
            HostStatus::Idle => request
                .update_expression(
                    "SET #status = :status, idleRegion = #region REMOVE reservedUntil",
                )
                .expression_attribute_names("#region", "region"),
            HostStatus::Busy => {
                request.update_expression("SET #status = :status REMOVE idleRegion, reservedUntil")
            }
        };
        let result = request.send().await;
        applied(result)
    }

    /// Finds a live idle host in one of `regions` and reserves it for `lease_seconds`,
    /// atomically: no host is handed to two callers.
    pub async fn reserve_idle_host(
        &self,
        regions: &[String],
        lease_seconds: i64,
    ) -> Result<MatchOutcome, StoreError> {
        let mut outcome = MatchOutcome::default();
        let mut regions = regions.to_vec();
        let mut limit = MATCH_CANDIDATES;
        // Per region, where the next read starts: after a lost round, past the hosts it read
        // (all taken), so that losers move down the index instead of fighting new requests
        // over its head; from the head again once the end is reached.
        let mut starts: HashMap<String, Item> = HashMap::new();
        for _ in 0..MATCH_ROUNDS {
            regions.shuffle(&mut rand::rng());
            let mut saw_candidates = false;
            for region in &regions {
                let start = starts.remove(region);
                let from_head = start.is_none();
                let (mut candidates, next) =
                    self.idle_hosts(region, limit, start, &mut outcome).await?;
                // An empty page past the head is the end of the index, not an empty pool.
                saw_candidates |= !candidates.is_empty() || !from_head;
                if let Some(next) = next {
                    starts.insert(region.clone(), next);
                }
                candidates.shuffle(&mut rand::rng());
                for host_id in candidates {
                    if let Some(host) = self
                        .try_reserve(&host_id, region, lease_seconds, &mut outcome)
                        .await?
                    {
                        outcome.host = Some(host);
                        return Ok(outcome);
                    }
                }
            }
            if !saw_candidates {
                break;
            }
            // Every candidate was taken by a concurrent match: look further, and wider.
            limit = (limit * 2).min(MAX_MATCH_CANDIDATES);
        }
        Ok(outcome)
    }

    async fn idle_hosts(
        &self,
        region: &str,
        limit: i32,
        start: Option<Item>,
        outcome: &mut MatchOutcome,
    ) -> Result<(Vec<String>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.hosts)
            .index_name(IDLE_INDEX)
            .key_condition_expression("idleRegion = :region AND expiresAt > :now")
            .expression_attribute_values(":region", s(region))
            .expression_attribute_values(":now", n(self.clock.now()))
            // Freshest first: the hosts furthest from expiring are the ones worth handing out.
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(dynamo_error)?;
        outcome.items_read += i64::from(out.scanned_count());
        outcome.capacity_units += out
            .consumed_capacity()
            .and_then(|c| c.capacity_units())
            .unwrap_or_default();
        let next = out.last_evaluated_key().filter(|k| !k.is_empty()).cloned();
        let hosts = out
            .items()
            .iter()
            .map(|item| req_s(item, "hostId"))
            .collect::<Result<_, _>>()?;
        Ok((hosts, next))
    }

    async fn try_reserve(
        &self,
        host_id: &str,
        region: &str,
        lease_seconds: i64,
        outcome: &mut MatchOutcome,
    ) -> Result<Option<MatchedHost>, StoreError> {
        let now = self.clock.now();
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.hosts)
            .key("hostId", s(host_id))
            .update_expression("SET reservedUntil = :lease REMOVE idleRegion")
            .condition_expression("idleRegion = :region AND expiresAt > :now")
            .expression_attribute_values(":lease", n(now + lease_seconds))
            .expression_attribute_values(":region", s(region))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                outcome.capacity_units += out
                    .consumed_capacity()
                    .and_then(|c| c.capacity_units())
                    .unwrap_or_default();
                let item: &Item = out.attributes().ok_or_else(|| {
                    StoreError::Malformed("HostsTable reservation result".into(), "attributes")
                })?;
                Ok(Some(MatchedHost {
                    host_id: host_id.to_string(),
                    room_id: req_s(item, "roomId")?,
                }))
            }
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(dynamo_error(e)),
        }
    }

    /// Removes a host's registration (its socket left its room); its next heartbeat
    /// registers it again.
    pub(crate) async fn forget_host(&self, host_id: &str, room_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.hosts)
            .key("hostId", s(host_id))
            .condition_expression("roomId = :room")
            .expression_attribute_values(":room", s(room_id))
            .send()
            .await;
        applied(result).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matched_hosts_debug_output_has_no_host_id() {
        let host = MatchedHost {
            host_id: "host-id-secret".into(),
            room_id: "room-1".into(),
        };
        let debug = format!("{host:?}");
        assert!(debug.contains("room-1"), "{debug}");
        assert!(!debug.contains("host-id-secret"), "{debug}");
    }
}
