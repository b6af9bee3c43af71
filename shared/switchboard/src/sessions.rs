//! The sessions API (Gameye-compatible): what its seven routes share. A session is a game
//! server of a configured application, allocated warm (a ready server, one conditional write,
//! told its session over its socket) or started cold (RunTask with the session's env and args),
//! and ended through the one server lifecycle.
//!
//! Creating a session and refreshing its address report the task's public address, which only
//! a build with the `public-addresses` feature can look up: without it, only the routes that
//! read sessions (list, get without refresh, players, delete) are here.
#![cfg_attr(not(feature = "public-addresses"), allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use uuid::Uuid;

use crate::deps::Deps;
use crate::ecs::{self, LaunchError};
use crate::error::ApiError;
use crate::http::ErrorStyle;
use crate::lifecycle::{self, ColdSession, LifecycleError};
use crate::metrics;
use crate::model::{Allocation, NewSession, SESSION_MAX_SECONDS, STARTING, Session};
use crate::sockets::Delivery;

/// Every sessions route answers errors as `{"message"}`.
pub const STYLE: ErrorStyle = ErrorStyle::Rooms {
    internal: "Something broke on the server",
};

pub const MAX_ENV: usize = 64;
/// Variables every cold task gets from Switchboard: a caller's `env` may not replace them, or
/// a session could make its server identify as another.
const RESERVED_ENV: [&str; 4] = [
    "SERVER_ID",
    "SERVER_TOKEN",
    "SESSION_ID",
    "SIGNAL_SERVER_URL",
];
pub const MAX_ARGS: usize = 64;
/// How often a cold start asks ECS whether its task has an address yet.
const ADDRESS_POLL: Duration = Duration::from_millis(200);

/// `POST /session`'s body.
#[derive(Debug, Deserialize)]
pub struct SessionRequest {
    pub image: String,
    pub location: String,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "whole_seconds")]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

/// A JSON number with no fraction (`60` or `60.0`: JSON Schema's `integer`), or null.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(whole) = number.as_i64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        // Beyond 2^53 a float is no longer exact; any such ttl is out of range anyway.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!(
            "expected a whole number of seconds, got {number}"
        ))),
    }
}

impl SessionRequest {
    /// Field rules beyond types: 422 naming the field.
    fn check(&self) -> Result<(), ApiError> {
        let invalid = |m: &str| Err(ApiError::Invalid(m.to_string()));
        if self.image.is_empty() {
            return invalid("image: must not be empty");
        }
        if self.location.is_empty() {
            return invalid("location: must not be empty");
        }
        if let Some(env) = &self.env {
            if env.len() > MAX_ENV {
                return invalid("env: at most 64 entries");
            }
            if env
                .keys()
                .any(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
            {
                return invalid("env: names must be non-empty, without '=' or NUL");
            }
            if env.values().any(|v| v.contains('\0')) {
                return invalid("env: values must not contain NUL");
            }
            if let Some(name) = env.keys().find(|k| RESERVED_ENV.contains(&k.as_str())) {
                return Err(ApiError::Invalid(format!(
                    "env: {name} is set by Switchboard (the server's identity)"
                )));
            }
        }
        if let Some(ttl) = self.ttl
            && !(1..=SESSION_MAX_SECONDS).contains(&ttl)
        {
            return invalid("ttl: must be from 1 second to 7 days (604800)");
        }
        // The hyphenated form only (`Uuid` also parses braced, URN and simple forms).
        if let Some(id) = &self.id
            && (id.len() != 36 || Uuid::parse_str(id).is_err())
        {
            return invalid("id: must be a UUID (8-4-4-4-12 hex digits)");
        }
        if let Some(args) = &self.args {
            if args.len() > MAX_ARGS {
                return invalid("args: at most 64 entries");
            }
            if args.iter().any(|a| a.contains('\0')) {
                return invalid("args: must not contain NUL");
            }
        }
        Ok(())
    }

    /// What identifies a request for idempotency: the same id with the same body is a repeat.
    fn fingerprint(&self) -> String {
        let canonical = json!({
            "image": self.image, "location": self.location, "env": self.env,
            "ttl": self.ttl, "version": self.version, "args": self.args,
        });
        let digest = Sha1::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `ports` of an application: clients use the container port on the task's address.
fn ports(deps: &Deps, image: &str) -> Value {
    let ports: Vec<Value> = deps
        .config
        .applications
        .get(image)
        .map(|a| a.ports.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| json!({ "type": p.protocol, "container": p.container, "host": p.container }))
        .collect();
    Value::Array(ports)
}

/// POST /session's answer for a session.
fn created(session: &Session) -> Value {
    created_body(
        &session.id,
        session.host.as_deref(),
        &session.ports,
        &session.status,
    )
}

fn created_body(id: &str, host: Option<&str>, ports: &Value, status: &str) -> Value {
    let mut body = json!({ "id": id, "host": host, "ports": ports });
    if host.is_none() {
        body["status"] = json!(status);
    }
    body
}

/// A session as GET /session lists it (and GET /session/{id}, with its status).
pub fn view(session: &Session, with_status: bool) -> Value {
    let mut body = json!({
        "id": session.id,
        "image": session.image,
        "location": session.location,
        "host": session.host,
        "ports": session.ports,
        "players": session.players,
        "playerCount": session.players.len(),
        "created": session.created,
    });
    if let Some(ends) = session.ends_at {
        body["expiresAt"] = json!(ends * 1000);
    }
    if with_status {
        body["status"] = json!(session.status);
    }
    body
}

/// POST /session: `(201, {id, host, ports})`.
#[cfg(feature = "public-addresses")]
pub async fn create(deps: &Deps, request: SessionRequest) -> Result<(u16, Value), ApiError> {
    request.check()?;
    let application = deps
        .config
        .applications
        .get(&request.image)
        .ok_or_else(|| ApiError::not_found(format!("image not found: {}", request.image)))?;
    if !deps.config.locations.contains_key(&request.location) {
        return Err(ApiError::not_found(format!(
            "location not found: {}",
            request.location
        )));
    }
    if !application.runs_in(&request.location) {
        return Err(ApiError::not_found(format!(
            "image {} is not available in location {}",
            request.image, request.location
        )));
    }
    let task_definition = match &request.version {
        None => application.task_definition.as_str(),
        Some(version) => application
            .versions
            .get(version)
            .map(String::as_str)
            .ok_or_else(|| ApiError::not_found(format!("version not found: {version}")))?,
    };
    let fingerprint = request.fingerprint();
    if let Some(id) = &request.id
        && let Some(existing) = deps.store.session(id).await?
    {
        return repeat(&existing, &fingerprint);
    }
    let ports = ports(deps, &request.image);
    let env = request.env.clone().unwrap_or_default();
    let args = request.args.clone().unwrap_or_default();
    let wanted = Wanted {
        id: request.id.as_deref(),
        image: &request.image,
        location: &request.location,
        ports: &ports,
        request_hash: &fingerprint,
        ttl: request.ttl,
    };

    // Warm: a ready server of the image's own task definition, told its session on its socket.
    if task_definition == application.task_definition
        && let Some(answer) = allocate_warm(deps, &wanted, &env, &args).await?
    {
        metrics::one(metrics::name::SESSIONS, &[("Start", "warm")]);
        return Ok((201, answer));
    }
    let session_id = request
        .id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let session = wanted.session(&session_id);
    if !application.cold {
        metrics::one(metrics::name::SESSIONS, &[("Start", "refused")]);
        return Err(ApiError::Capacity(format!(
            "no warm server of {} is ready in {}",
            request.image, request.location
        )));
    }
    let cold = ColdSession {
        session,
        env: &env,
        args: &args,
        task_definition,
    };
    let launched =
        match lifecycle::launch_server(deps, &request.image, &request.location, None, Some(&cold))
            .await
        {
            Ok(launched) => launched,
            Err(LifecycleError::SessionExists) => {
                // The same id, created a moment ago by a concurrent call.
                return match deps.store.session(&session_id).await? {
                    Some(existing) => repeat(&existing, &fingerprint),
                    None => Err(ApiError::Conflict(format!("id {session_id} is in use"))),
                };
            }
            Err(LifecycleError::Launch(LaunchError::Failures(reason))) => {
                metrics::one(metrics::name::SESSIONS, &[("Start", "refused")]);
                return Err(ApiError::Capacity(format!(
                    "no capacity in {}: {reason}",
                    request.location
                )));
            }
            Err(e) => return Err(e.into()),
        };
    metrics::one(metrics::name::SESSIONS, &[("Start", "cold")]);
    tracing::info!(
        session = session_id,
        server_id = launched.room_id,
        "cold start"
    );
    let host = wait_for_host(deps, &wanted, &session_id, &launched).await?;
    Ok((
        201,
        created_body(&session_id, host.as_deref(), &ports, STARTING),
    ))
}

/// A repeat of POST /session with an id a live session has.
fn repeat(existing: &Session, fingerprint: &str) -> Result<(u16, Value), ApiError> {
    if existing.request_hash == fingerprint {
        Ok((201, created(existing)))
    } else {
        Err(ApiError::Conflict(format!(
            "id {} is in use by a live session with another request",
            existing.id
        )))
    }
}

/// A session as asked for, before it has an id: the caller's, a warm server's own, or new.
struct Wanted<'a> {
    id: Option<&'a str>,
    image: &'a str,
    location: &'a str,
    ports: &'a Value,
    request_hash: &'a str,
    ttl: Option<i64>,
}

impl<'a> Wanted<'a> {
    fn session(&self, id: &'a str) -> NewSession<'a> {
        NewSession {
            id,
            image: self.image,
            location: self.location,
            ports: self.ports,
            request_hash: self.request_hash,
            ttl: self.ttl,
        }
    }
}

/// Tries the ready servers of the session's image and location in turn; `None` when none
/// could be allocated. The session keeps the server's id unless the caller chose one.
#[cfg(feature = "public-addresses")]
async fn allocate_warm(
    deps: &Deps,
    wanted: &Wanted<'_>,
    env: &BTreeMap<String, String>,
    args: &[String],
) -> Result<Option<Value>, ApiError> {
    for server_id in deps
        .store
        .ready_servers(wanted.image, wanted.location)
        .await?
    {
        let session = &wanted.session(wanted.id.unwrap_or(&server_id));
        match deps.store.allocate_server(&server_id, session).await? {
            Allocation::ServerTaken => continue,
            // The session would have taken the server's own id: someone else allocated it.
            Allocation::SessionExists if wanted.id.is_none() => continue,
            Allocation::SessionExists => {
                return match deps.store.session(session.id).await? {
                    Some(existing) => repeat(&existing, session.request_hash).map(|(_, v)| Some(v)),
                    None => Err(ApiError::Conflict(format!("id {} is in use", session.id))),
                };
            }
            Allocation::Allocated => {}
        }
        let Some(server) = deps.store.room(&server_id).await? else {
            continue;
        };
        let frame = json!({
            "type": "session", "id": session.id, "env": env, "args": args, "ttl": session.ttl,
        });
        let delivered = match &server.serving_connection {
            Some(connection) => deps.sockets.post(None, connection, &frame).await,
            None => Ok(Delivery::Gone),
        };
        if !matches!(delivered, Ok(Delivery::Delivered)) {
            // It cannot be told its session: it is not a working server. End it (the session
            // record goes with it) and try the next.
            tracing::warn!(server_id, "warm server unreachable; ending it");
            lifecycle::end_server(deps, &server_id, "unreachable when allocated", false).await?;
            continue;
        }
        let host = match &server.address {
            Some(address) => Some(address.clone()),
            None => task_address(deps, &server).await?,
        };
        if host.is_none()
            && let Some(task_arn) = &server.task_arn
            && let Some(why) = stopped_by_itself(deps, wanted, task_arn).await?
        {
            return Err(server_stopped(deps, &server_id, session.id, &why).await);
        }
        if let Some(host) = &host {
            deps.store.server_running(&server, host).await?;
            deps.store
                .set_session_host(session.id, &server_id, host)
                .await?;
        }
        if let Some(slot) = server.slot {
            // The allocation has happened; a failed refill waits for the sweeper.
            if let Err(e) =
                lifecycle::refill_server_slot(deps, session.image, session.location, slot).await
            {
                tracing::warn!(slot, error = %e, "warm refill left to the sweeper");
            }
        }
        tracing::info!(session = session.id, server_id, "warm allocation");
        return Ok(Some(
            json!({ "id": session.id, "host": host, "ports": session.ports }),
        ));
    }
    Ok(None)
}

/// The address clients reach a server's task at, once it runs: its public IPv4, else its
/// private one (see `addresses`).
#[cfg(feature = "public-addresses")]
async fn task_address(
    deps: &Deps,
    server: &crate::model::Room,
) -> Result<Option<String>, ApiError> {
    let (Some(task_arn), Some(location)) = (&server.task_arn, &server.location) else {
        return Ok(None);
    };
    let (Some(place), Some(application)) = (
        deps.config.locations.get(location),
        server
            .app
            .as_ref()
            .and_then(|a| deps.config.applications.get(a)),
    ) else {
        return Ok(None);
    };
    let settings = place.ecs_settings(application, &application.task_definition);
    let tasks = ecs::describe(
        deps.ecs_in(&place.region),
        &settings,
        std::slice::from_ref(task_arn),
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match tasks.into_iter().find(|t| t.up) {
        Some(task) => crate::addresses::reachable(deps, &place.region, &task).await,
        None => Ok(None),
    }
}

/// Refreshes a session whose host is not known yet from its task; returns it as it now is.
#[cfg(feature = "public-addresses")]
pub async fn refresh(deps: &Deps, session: Session) -> Result<Session, ApiError> {
    if session.host.is_some() {
        return Ok(session);
    }
    let Some(server) = deps.store.room(&session.server_id).await? else {
        return Ok(session);
    };
    let Some(host) = task_address(deps, &server).await? else {
        return Ok(session);
    };
    deps.store.server_running(&server, &host).await?;
    deps.store
        .set_session_host(&session.id, &server.room_id, &host)
        .await?;
    Ok(deps.store.session(&session.id).await?.unwrap_or(session))
}

/// A cold start waits up to `SWITCHBOARD_SESSION_WAIT_SECONDS` for its server's address, read
/// from the server and its task, not from the session: a short `ttl` or a DELETE may end the
/// session while it starts, and the answer is then the session as it was created. A task that
/// stops by itself first (its process exited) ends the wait at once: the server is ended, its
/// session and players with it, and the answer is a 502 saying why.
#[cfg(feature = "public-addresses")]
async fn wait_for_host(
    deps: &Deps,
    wanted: &Wanted<'_>,
    session_id: &str,
    launched: &lifecycle::Launched,
) -> Result<Option<String>, ApiError> {
    let server_id = launched.room_id.as_str();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(deps.config.session_wait_seconds as u64);
    loop {
        let server = deps.store.room(server_id).await?;
        if let Some(server) = &server
            && let Some(host) = task_address(deps, server).await?
        {
            deps.store.server_running(server, &host).await?;
            deps.store
                .set_session_host(session_id, server_id, &host)
                .await?;
            return Ok(Some(host));
        }
        // The sweeper may have ended a server whose task stopped: still the task's failure.
        if let Some(why) = stopped_by_itself(deps, wanted, &launched.task_arn).await? {
            return Err(server_stopped(deps, server_id, session_id, &why).await);
        }
        if server.is_none() {
            tracing::info!(session = session_id, server_id, "ended while it started");
            return Ok(None);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(ADDRESS_POLL).await;
    }
}

/// Why the task of a session's server stopped by itself, if it did (ECS of its location).
async fn stopped_by_itself(
    deps: &Deps,
    wanted: &Wanted<'_>,
    task_arn: &str,
) -> Result<Option<String>, ApiError> {
    let (Some(place), Some(application)) = (
        deps.config.locations.get(wanted.location),
        deps.config.applications.get(wanted.image),
    ) else {
        return Ok(None);
    };
    let settings = place.ecs_settings(application, &application.task_definition);
    ecs::stopped_by_itself(deps.ecs_in(&place.region), &settings, task_arn)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Ends a server whose task stopped before its session could be answered (its session and
/// players go with it) and returns the 502 to answer. If ending it fails, the sweeper ends it
/// (its task is stopped), and the answer is that failure.
async fn server_stopped(deps: &Deps, server_id: &str, session_id: &str, why: &str) -> ApiError {
    tracing::warn!(
        session = session_id,
        server_id,
        why,
        "server stopped before it was ready"
    );
    if let Err(e) =
        lifecycle::end_server(deps, server_id, "stopped before it was ready", false).await
    {
        return e.into();
    }
    ApiError::ServerStopped(format!("session server stopped before it was ready: {why}"))
}

/// The id in `/session/{id}`: a caller's id is a UUID (others were never issued).
pub fn path_id(
    event: &aws_lambda_events::apigw::ApiGatewayV2httpRequest,
) -> Result<String, ApiError> {
    let raw = event
        .path_parameters
        .get("id")
        .map(String::as_str)
        .unwrap_or_default();
    if Uuid::parse_str(raw).is_err() {
        return Err(ApiError::not_found("session not found"));
    }
    Ok(raw.to_string())
}

/// `players` in join and leave bodies: 1–50 player ids.
pub fn check_players(players: &[String]) -> Result<(), ApiError> {
    if players.is_empty() {
        return Err(ApiError::Invalid(
            "players: must name at least one player".into(),
        ));
    }
    if players.len() > crate::model::MAX_PLAYERS_PER_CALL {
        return Err(ApiError::Invalid("players: at most 50 per call".into()));
    }
    for player in players {
        if crate::validate::identifier("player", player).is_err() {
            return Err(ApiError::Invalid(
                "players: each must be 1-128 printable, non-space characters".into(),
            ));
        }
    }
    Ok(())
}
