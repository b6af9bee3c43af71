//! The server lifecycle (README, "Server lifecycle"): launching a server's task, ending a server
//! (its task stopped, its members told, its records gone), refilling the warm pool, and the
//! sweeper's run. createRoom, claimRoom, `DELETE /rooms/{roomId}` and the sweeper all go
//! through here, so there is one way to start and one way to end.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::config::EcsSettings;
use crate::deps::Deps;
use crate::ecs::{self, EcsError, Launch, LaunchError};
use crate::error::{ApiError, StoreError};
use crate::metrics;
use crate::model::{
    HOST_APP, NewServer, NewSession, Room, RoomKind, RoomState, SFU_APP, server_slots,
};
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
    #[error("a live session has this id")]
    SessionExists,
    #[error("unknown application {0:?} or location {1:?}")]
    Unconfigured(String, String),
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
        command: None,
    };
    let task_arn = run_recorded(deps, deps.ecs(), deps.config.ecs.as_ref(), launch, None).await?;
    tracing::info!(room_id, task_arn, slot, "SFU task started");
    Ok(Launched {
        room_id: room_id.to_string(),
        task_arn,
    })
}

/// Runs a server's task and records its ARN on the server. A launch ECS refused leaves no
/// record (nor the session written with it); a launch whose outcome is unknown leaves the
/// record for the sweeper (it ends it at its start deadline and stops any task it finds by
/// `startedBy`); a task whose ARN could not be recorded is stopped at once.
async fn run_recorded(
    deps: &Deps,
    client: &aws_sdk_ecs::Client,
    settings: Option<&EcsSettings>,
    launch: Launch<'_>,
    session_id: Option<&str>,
) -> Result<String, LifecycleError> {
    let server_id = launch.server_id;
    let store = &deps.store;
    let task_arn = match ecs::run_task(client, settings, launch).await {
        Ok(arn) => arn,
        Err(e) => {
            if matches!(e, ecs::LaunchError::Failures(_)) && e.is_transient() {
                metrics::one(metrics::name::CAPACITY_REFUSALS, &[]);
            }
            if e.nothing_started() {
                if let Err(cleanup) = store.forget_server(server_id, session_id).await {
                    // Never claimable (still starting): the sweeper ends it at its deadline.
                    tracing::error!(error = %cleanup, server_id, "could not remove a refused launch's records");
                }
            } else {
                tracing::error!(
                    server_id,
                    "launch outcome unknown; the sweeper ends the server at its start deadline"
                );
            }
            return Err(e.into());
        }
    };
    if let Err(e) = store.record_task(server_id, &task_arn).await {
        if let Some(settings) = settings
            && let Err(stop) = ecs::stop_task(
                client,
                settings,
                &task_arn,
                "Switchboard could not record the task",
            )
            .await
        {
            tracing::error!(error = %stop, server_id, "could not stop an unrecorded task");
        }
        return Err(e.into());
    }
    let application = if session_id.is_some() {
        "session"
    } else {
        "room"
    };
    metrics::one(metrics::name::SERVERS_LAUNCHED, &[("Kind", application)]);
    Ok(task_arn)
}

/// A reason to end a server as a metric dimension: a short, fixed name.
fn reason_name(reason: &str) -> &'static str {
    const NAMES: [(&str, &str); 7] = [
        ("start timeout", "StartTimeout"),
        ("reconnect grace", "SocketGone"),
        ("interrupted", "ResumedEnding"),
        ("task stopped", "TaskStopped"),
        ("operator", "Operator"),
        ("DELETE /session", "SessionDeleted"),
        ("unreachable", "Unreachable"),
    ];
    NAMES
        .iter()
        .find(|(part, _)| reason.contains(part))
        .map_or("Other", |(_, name)| name)
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
    metrics::one(
        metrics::name::SERVERS_ENDED,
        &[("Reason", reason_name(reason))],
    );
    tracing::info!(room_id, reason, "server ended");
    Ok(true)
}

async fn stop_tasks_of(deps: &Deps, room: &Room, reason: &str) -> Result<(), LifecycleError> {
    let Some((client, settings)) = server_ecs(deps, room) else {
        return Ok(());
    };
    let arns = match &room.task_arn {
        Some(arn) => vec![arn.clone()],
        // Its launch was never recorded: whatever ECS started for it is found by startedBy.
        None => ecs::tasks_started_by(client, &settings, &room.room_id).await?,
    };
    for arn in arns {
        ecs::stop_task(client, &settings, &arn, reason).await?;
    }
    Ok(())
}

/// Where a server's task runs: the SFU cluster, or its session location's cluster in its
/// region. `None` for a host's room (no task) or a server whose location is not configured.
fn server_ecs<'a>(deps: &'a Deps, room: &Room) -> Option<(&'a aws_sdk_ecs::Client, EcsSettings)> {
    match room.kind {
        RoomKind::Host => None,
        RoomKind::Sfu => deps.config.ecs.clone().map(|s| (deps.ecs(), s)),
        RoomKind::Server => {
            let location = deps.config.locations.get(room.location.as_deref()?)?;
            let application = deps.config.applications.get(room.app.as_deref()?)?;
            Some((
                deps.ecs_in(&location.region),
                location.ecs_settings(application, &application.task_definition),
            ))
        }
    }
}

/// A cold session's launch: its record, and what its container gets.
pub struct ColdSession<'a> {
    pub session: NewSession<'a>,
    pub env: &'a BTreeMap<String, String>,
    pub args: &'a [String],
    pub task_definition: &'a str,
}

/// Records a game server of `image` in `location` (with its session, on the cold path) and
/// launches its task in that location's region, marked with `startedBy` = the server's own id.
/// A refused launch leaves no record.
pub async fn launch_server(
    deps: &Deps,
    image: &str,
    location: &str,
    slot: Option<(u32, Option<&str>)>,
    cold: Option<&ColdSession<'_>>,
) -> Result<Launched, LifecycleError> {
    let unconfigured = || LifecycleError::Unconfigured(image.into(), location.into());
    let application = deps
        .config
        .applications
        .get(image)
        .ok_or_else(unconfigured)?;
    let place = deps
        .config
        .locations
        .get(location)
        .ok_or_else(unconfigured)?;
    let signal_url = deps
        .config
        .ws_url
        .clone()
        .ok_or(LifecycleError::NoSignalingUrl)?;
    // Never the session's id, even on the cold path: a session id is free again as soon as its
    // session ends, while its server may still be ending. Each server has an id of its own, so
    // an ending (DELETE, the sweeper) always ends the server it read and no later one.
    let server_id = Uuid::new_v4().to_string();
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let store = &deps.store;
    let server = NewServer {
        id: &server_id,
        image,
        location,
        token: &token,
        start_timeout: deps.config.start_timeout_seconds,
        slot: slot.map(|(k, _)| k),
    };
    if !store
        .create_server(&server, cold.map(|c| &c.session))
        .await?
    {
        return Err(LifecycleError::SessionExists);
    }
    let session_id = cold.map(|c| c.session.id);
    if let Some((k, previous)) = slot
        && !store
            .take_slot(&server_slots(image, location), k, previous, &server_id)
            .await?
    {
        store.forget_server(&server_id, None).await?;
        return Err(LifecycleError::SlotTaken);
    }
    let mut environment = vec![
        ("SERVER_ID", server_id.clone()),
        ("SERVER_TOKEN", token),
        ("SIGNAL_SERVER_URL", signal_url),
    ];
    if let Some(cold) = cold {
        // Its session, which a cold server is not told on its socket as a warm one is.
        environment.push(("SESSION_ID", cold.session.id.to_string()));
        environment.extend(cold.env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    }
    let task_definition = cold.map_or(application.task_definition.as_str(), |c| c.task_definition);
    let settings = place.ecs_settings(application, task_definition);
    let client = deps.ecs_in(&place.region);
    let launch = Launch {
        server_id: &server_id,
        environment: &environment,
        command: cold.map(|c| c.args).filter(|a| !a.is_empty()),
    };
    let task_arn = run_recorded(deps, client, Some(&settings), launch, session_id).await?;
    tracing::info!(
        server_id,
        image,
        location,
        task_arn,
        "game server task started"
    );
    Ok(Launched {
        room_id: server_id,
        task_arn,
    })
}

/// Makes warm slot `slot` of `image` in `location` hold a starting or ready, unallocated game
/// server, launching one if it does not.
pub async fn refill_server_slot(
    deps: &Deps,
    image: &str,
    location: &str,
    slot: u32,
) -> Result<Refill, LifecycleError> {
    let store = &deps.store;
    let previous = store
        .slot_room(&server_slots(image, location), slot)
        .await?;
    if let Some(server_id) = &previous
        && let Some(server) = store.room(server_id).await?
        && server.session_id.is_none()
        && matches!(server.state, RoomState::Starting | RoomState::Ready)
    {
        return Ok(Refill::Full);
    }
    match launch_server(
        deps,
        image,
        location,
        Some((slot, previous.as_deref())),
        None,
    )
    .await
    {
        Ok(launched) => Ok(Refill::Launched(launched.room_id)),
        Err(LifecycleError::SlotTaken) => Ok(Refill::Raced),
        Err(e) => Err(e),
    }
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
    let apps: Vec<&str> = [SFU_APP, HOST_APP]
        .into_iter()
        .chain(deps.config.applications.keys().map(String::as_str))
        .collect();
    for app in apps {
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
/// `startedBy` names no server is stopped. Every cluster Switchboard launches into is checked
/// (the SFU cluster and each location's), each once.
async fn reconcile(deps: &Deps, report: &mut SweepReport) -> Result<(), LifecycleError> {
    let mut servers = deps.store.servers(SFU_APP, RECONCILE_LIMIT).await?;
    for app in deps.config.applications.keys() {
        servers.extend(deps.store.servers(app, RECONCILE_LIMIT).await?);
    }
    let known: HashSet<String> = servers.iter().map(|r| r.room_id.clone()).collect();

    // Each cluster once, with the servers whose tasks run there.
    let mut clusters: Vec<(String, &aws_sdk_ecs::Client, EcsSettings, Vec<&Room>)> = Vec::new();
    let mut add = |region: String, client, settings: EcsSettings| {
        if !clusters
            .iter()
            .any(|(r, _, s, _)| *r == region && s.cluster == settings.cluster)
        {
            clusters.push((region, client, settings, Vec::new()));
        }
    };
    if let Some(settings) = deps.config.ecs.clone() {
        add(deps.home_region.clone(), deps.ecs(), settings);
    }
    for (name, location) in &deps.config.locations {
        if let Some(application) = deps.config.applications.values().find(|a| a.runs_in(name)) {
            add(
                location.region.clone(),
                deps.ecs_in(&location.region),
                location.ecs_settings(application, &application.task_definition),
            );
        }
    }
    for room in &servers {
        let region = match room.kind {
            RoomKind::Server => room
                .location
                .as_ref()
                .and_then(|l| deps.config.locations.get(l))
                .map(|l| l.region.clone()),
            _ => Some(deps.home_region.clone()),
        };
        if let (Some(region), Some((_, settings))) = (region, server_ecs(deps, room))
            && let Some(entry) = clusters
                .iter_mut()
                .find(|(r, _, s, _)| *r == region && s.cluster == settings.cluster)
        {
            entry.3.push(room);
        }
    }

    for (_, client, settings, rooms) in &clusters {
        let recorded: Vec<String> = rooms
            .iter()
            .filter(|r| r.state != RoomState::Ending)
            .filter_map(|r| r.task_arn.clone())
            .collect();
        let stopped: HashSet<String> = ecs::describe(client, settings, &recorded)
            .await?
            .into_iter()
            .filter(|t| !t.running)
            .map(|t| t.task_arn)
            .collect();
        for room in rooms.iter().filter(|r| {
            r.state != RoomState::Ending && r.task_arn.as_ref().is_some_and(|a| stopped.contains(a))
        }) {
            let outcome = end_server(deps, &room.room_id, "its task stopped", false).await;
            record(report, &room.room_id, outcome);
        }

        for task in ecs::running_tasks(client, settings, RECONCILE_LIMIT).await? {
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
                client,
                settings,
                &task.task_arn,
                "Switchboard has no record of this task",
            )
            .await?;
            tracing::warn!(task = task.task_arn, server_id, "orphan task stopped");
            report.orphans_stopped.push(task.task_arn);
        }
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
    for (image, application) in &deps.config.applications {
        for (location, count) in &application.warm {
            for slot in 0..*count {
                match refill_server_slot(deps, image, location, slot).await {
                    Ok(Refill::Launched(server_id)) => report.launched.push(server_id),
                    Ok(Refill::Full | Refill::Raced) => {}
                    Err(e) => {
                        report
                            .errors
                            .push(format!("warm {image} in {location}, slot {slot}: {e}"));
                        break;
                    }
                }
            }
        }
    }
}
