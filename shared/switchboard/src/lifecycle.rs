//! The server lifecycle (SPEC "Server lifecycle"): launching a server's task, ending a server
//! (its task stopped, its members told, its records gone), refilling the warm pool, and the
//! sweeper's run. createRoom, claimRoom, `DELETE /rooms/{roomId}` and the sweeper all go
//! through here, so there is one way to start and one way to end.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::deps::Deps;
use crate::ecs::{self, EcsError, Launch, LaunchError};
use crate::error::{ApiError, StoreError};
use crate::model::{HOST_APP, Room, RoomKind, RoomState, SFU_APP};
use crate::signaling;
use crate::turn;

/// Servers ended per sweep for passed deadlines (per application); the rest wait a minute.
const ENDINGS_PER_SWEEP: i32 = 25;
/// Server records and running tasks compared per sweep.
const RECONCILE_LIMIT: usize = 1000;

#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ecs(#[from] EcsError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("SWITCHBOARD_WS_URL is not configured")]
    NoSignalingUrl,
    #[error("another sweeper or claim refilled this warm-pool slot first")]
    SlotTaken,
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Store(e) => e.into(),
            // Out of capacity, throttled, or ECS unreachable: 503 with Retry-After.
            LifecycleError::Launch(e) if e.is_transient() => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A server whose task was launched.
#[derive(Debug)]
pub struct Launched {
    pub room_id: String,
    pub task_arn: String,
}

/// Records a `starting` SFU room and launches its task (`startedBy` and the idempotency
/// token are the room id). A launch ECS refused leaves no record; a launch whose outcome is
/// unknown, or whose task could not be recorded, leaves a record the sweeper ends (and stops
/// any task it finds by `startedBy`).
pub async fn launch_room(deps: &Deps, slot: Option<u32>) -> Result<Launched, LifecycleError> {
    let room_id = Uuid::new_v4().to_string();
    launch_room_as(deps, &room_id, slot, None).await
}

async fn launch_room_as(
    deps: &Deps,
    room_id: &str,
    slot: Option<u32>,
    previous_slot_room: Option<Option<&str>>,
) -> Result<Launched, LifecycleError> {
    let signal_url = deps
        .config
        .ws_url
        .clone()
        .ok_or(LifecycleError::NoSignalingUrl)?;
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let store = &deps.store;
    store
        .create_starting_room(room_id, &token, deps.config.start_timeout_seconds, slot)
        .await?;
    if let (Some(slot), Some(previous)) = (slot, previous_slot_room)
        && !store.take_slot(SFU_APP, slot, previous, room_id).await?
    {
        // Another sweeper or claim refilled this slot first.
        store.delete_room(room_id).await?;
        return Err(LifecycleError::SlotTaken);
    }

    let now = store.clock().now();
    let rtc_config = json!({ "iceServers": turn::ice_servers(&deps.config, room_id, now) });
    let environment = [
        ("ROOM_ID", room_id.to_string()),
        ("SFU_ID", room_id.to_string()),
        ("SFU_TOKEN", token),
        ("SIGNAL_SERVER_URL", signal_url),
        ("RTC_CONFIG", rtc_config.to_string()),
    ];
    let launch = Launch {
        server_id: room_id,
        environment: &environment,
    };
    let task_arn = match ecs::run_task(&deps.ecs, deps.config.ecs.as_ref(), launch).await {
        Ok(arn) => arn,
        Err(e) => {
            if e.nothing_started() {
                if let Err(cleanup) = store.delete_room(room_id).await {
                    // Never claimable (still starting); the sweeper ends it at its deadline.
                    tracing::error!(error = %cleanup, room_id, "could not delete the room of a refused launch");
                }
            } else {
                tracing::error!(
                    room_id,
                    "launch outcome unknown; the sweeper ends the room at its start deadline"
                );
            }
            return Err(e.into());
        }
    };
    if let Err(e) = store.record_task(room_id, &task_arn).await {
        // Without its ARN on record the task is stopped now; failing that, the sweeper finds
        // it by `startedBy` when the room's start deadline passes.
        if let Some(settings) = deps.config.ecs.as_ref()
            && let Err(stop) = ecs::stop_task(
                &deps.ecs,
                settings,
                &task_arn,
                "Switchboard could not record the task",
            )
            .await
        {
            tracing::error!(error = %stop, room_id, "could not stop an unrecorded task");
        }
        return Err(e.into());
    }
    tracing::info!(room_id, task_arn, slot, "SFU task started");
    Ok(Launched {
        room_id: room_id.to_string(),
        task_arn,
    })
}

/// Ends a server: its task is stopped, the room's members hear `sfuDisconnect`, and its
/// records (room, path, a host's registration) go. With `only_if_due`, only when its deadline
/// has passed. Returns whether this call ended it (false: not found, not due, or being ended
/// by someone else). Safe to repeat: an interrupted ending is resumed by the next sweep.
pub async fn end_server(
    deps: &Deps,
    room_id: &str,
    reason: &str,
    only_if_due: bool,
) -> Result<bool, LifecycleError> {
    let Some(room) = deps.store.begin_ending(room_id, only_if_due).await? else {
        return Ok(false);
    };
    stop_tasks_of(deps, &room, reason).await?;
    let serving = room
        .serving_peer
        .clone()
        .unwrap_or_else(|| room.room_id.clone());
    let notice = json!({ "type": "sfuDisconnect", "sfuId": serving });
    signaling::notify_members(deps, None, &room.room_id, None, &notice).await?;
    deps.store.finish_ending(&room).await?;
    tracing::info!(room_id, reason, "server ended");
    Ok(true)
}

async fn stop_tasks_of(deps: &Deps, room: &Room, reason: &str) -> Result<(), LifecycleError> {
    if room.kind != RoomKind::Sfu {
        return Ok(());
    }
    let Some(settings) = deps.config.ecs.as_ref() else {
        return Ok(());
    };
    let arns = match &room.task_arn {
        Some(arn) => vec![arn.clone()],
        // Its launch was never recorded: whatever ECS started for it is found by startedBy.
        None => ecs::tasks_started_by(&deps.ecs, settings, &room.room_id).await?,
    };
    for arn in arns {
        ecs::stop_task(&deps.ecs, settings, &arn, reason).await?;
    }
    Ok(())
}

/// What a refill of one warm-pool slot did.
#[derive(Debug, PartialEq, Eq)]
pub enum Refill {
    /// The slot's room is still starting or ready and unclaimed.
    Full,
    Launched(String),
    /// Someone else refilled it at the same moment.
    Raced,
}

/// Makes warm-pool slot `slot` hold a starting or ready, unclaimed room, launching one if
/// it does not. Of two concurrent refills of one slot exactly one launches.
pub async fn refill_slot(deps: &Deps, slot: u32) -> Result<Refill, LifecycleError> {
    let store = &deps.store;
    let previous = store.slot_room(SFU_APP, slot).await?;
    if let Some(room_id) = &previous
        && let Some(room) = store.room(room_id).await?
        && room.url_path.is_none()
        && matches!(room.state, RoomState::Starting | RoomState::Ready)
    {
        return Ok(Refill::Full);
    }
    let room_id = Uuid::new_v4().to_string();
    match launch_room_as(deps, &room_id, Some(slot), Some(previous.as_deref())).await {
        Ok(launched) => Ok(Refill::Launched(launched.room_id)),
        Err(LifecycleError::SlotTaken) => Ok(Refill::Raced),
        Err(e) => Err(e),
    }
}

/// What one sweep did, for the logs and for tests.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub ended: Vec<String>,
    pub orphans_stopped: Vec<String>,
    pub launched: Vec<String>,
    pub errors: Vec<String>,
}

/// One run of the sweeper: ends servers past their deadlines, ends servers whose task is
/// gone, stops tasks that have no server, and tops up the warm pool. Bounded per run;
/// every step is a conditional write or idempotent, so two sweepers at once do no harm.
pub async fn sweep(deps: &Deps) -> SweepReport {
    let mut report = SweepReport::default();
    for app in [SFU_APP, HOST_APP] {
        match deps.store.due_servers(app, ENDINGS_PER_SWEEP).await {
            Ok(due) => {
                for room in due {
                    let reason = match room.state {
                        RoomState::Starting => "never identified within the start timeout",
                        RoomState::Ending => "resuming an interrupted ending",
                        _ => "its socket did not come back within the reconnect grace",
                    };
                    record(
                        &mut report,
                        &room.room_id,
                        end_server(deps, &room.room_id, reason, true).await,
                    );
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    if let Err(e) = reconcile(deps, &mut report).await {
        report.errors.push(e.to_string());
    }
    top_up(deps, &mut report).await;
    if !report.errors.is_empty() {
        tracing::error!(errors = ?report.errors, "sweep had errors");
    }
    tracing::info!(
        ended = report.ended.len(),
        orphans = report.orphans_stopped.len(),
        launched = report.launched.len(),
        "sweep"
    );
    report
}

fn record(report: &mut SweepReport, room_id: &str, outcome: Result<bool, LifecycleError>) {
    match outcome {
        Ok(true) => report.ended.push(room_id.to_string()),
        Ok(false) => {}
        Err(e) => report.errors.push(format!("ending {room_id}: {e}")),
    }
}

/// Records against tasks: a server whose task stopped is ended; a running task whose
/// `startedBy` names no server is stopped.
async fn reconcile(deps: &Deps, report: &mut SweepReport) -> Result<(), LifecycleError> {
    let Some(settings) = deps.config.ecs.as_ref() else {
        return Ok(());
    };
    let servers = deps.store.servers(SFU_APP, RECONCILE_LIMIT).await?;
    let known: HashSet<String> = servers.iter().map(|r| r.room_id.clone()).collect();
    let recorded: Vec<String> = servers
        .iter()
        .filter(|r| r.state != RoomState::Ending)
        .filter_map(|r| r.task_arn.clone())
        .collect();
    let stopped: HashSet<String> = ecs::describe(&deps.ecs, settings, &recorded)
        .await?
        .into_iter()
        .filter(|t| !t.running)
        .map(|t| t.task_arn)
        .collect();
    for room in servers.iter().filter(|r| {
        r.state != RoomState::Ending && r.task_arn.as_ref().is_some_and(|a| stopped.contains(a))
    }) {
        let outcome = end_server(deps, &room.room_id, "its task stopped", false).await;
        record(report, &room.room_id, outcome);
    }

    for task in ecs::running_tasks(&deps.ecs, settings, RECONCILE_LIMIT).await? {
        let Some(server_id) = task.started_by.as_deref() else {
            continue;
        };
        // Switchboard's tasks carry their server's id; others in the cluster are not ours.
        if Uuid::parse_str(server_id).is_err() || known.contains(server_id) {
            continue;
        }
        // Launched after the servers were read? Its record was written before its task.
        if deps.store.room_record(server_id).await?.is_some() {
            continue;
        }
        ecs::stop_task(
            &deps.ecs,
            settings,
            &task.task_arn,
            "Switchboard has no record of this task",
        )
        .await?;
        tracing::warn!(task = task.task_arn, server_id, "orphan task stopped");
        report.orphans_stopped.push(task.task_arn);
    }
    Ok(())
}

async fn top_up(deps: &Deps, report: &mut SweepReport) {
    for slot in 0..deps.config.warm_rooms {
        match refill_slot(deps, slot).await {
            Ok(Refill::Launched(room_id)) => report.launched.push(room_id),
            Ok(Refill::Full | Refill::Raced) => {}
            Err(e) => {
                // Capacity or an outage: back off until the next sweep.
                report.errors.push(format!("warm slot {slot}: {e}"));
                break;
            }
        }
    }
}
