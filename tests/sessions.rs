//! The sessions API (Gameye-compatible) against the local stack, with the example game server
//! as the task process: every route's success shape and error codes, the address reaching the
//! running server (UDP ping), warm allocation under concurrency, and ending through the one
//! lifecycle (SIGTERM seen by the server).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::*;

const GAME: &str = "arena";

/// How long a game server process may take to show what it was sent.
const SERVER_WAIT: Duration = Duration::from_secs(15);

/// A stack with the application `arena` (versions `v2`) in location `local`, `warm` servers
/// kept there, and the example server as every task's process.
fn sessions_stack(dir: &Path, warm: u32) -> switchboard_local::StackOptions {
    let mut options = options();
    options.task_command = Some(format!(
        r#"EXAMPLE_SERVER_EVENTS="{}/${{SERVER_ID:-$ROOM_ID}}" exec {} "$@""#,
        dir.display(),
        env!("CARGO_BIN_EXE_example-server")
    ));
    options.task_stop_timeout = Duration::from_secs(2);
    options.vars.insert(
        "SWITCHBOARD_LOCATIONS".into(),
        json!({ "local": {
            "region": "us-east-1", "cluster": switchboard_local::DEFAULT_CLUSTER,
            "subnets": ["subnet-local"], "securityGroups": ["sg-local"], "ips": ["127.0.0.1"],
        }, "elsewhere": {
            "region": "eu-central-1", "cluster": switchboard_local::DEFAULT_CLUSTER,
            "subnets": ["subnet-local"], "securityGroups": ["sg-local"], "ips": ["127.0.0.2"],
        }})
        .to_string(),
    );
    options.vars.insert(
        "SWITCHBOARD_APPLICATIONS".into(),
        json!({ GAME: {
            "taskDefinition": "switchboard-arena", "container": "game",
            "ports": [{ "type": "udp", "container": 7777 }],
            "versions": { "v2": "switchboard-arena-v2" },
            "warm": { "local": warm },
            "locations": ["local"],
        }, "arena-eu": {
            "taskDefinition": "switchboard-arena", "container": "game",
            "ports": [{ "type": "udp", "container": 7777 }],
            "locations": ["elsewhere"],
        }})
        .to_string(),
    );
    options
        .vars
        .insert("SWITCHBOARD_SESSION_WAIT_SECONDS".into(), "10".into());
    options
}

async fn post_session(t: &TestStack, body: Value) -> (u16, Value) {
    t.call(
        "POST",
        "/session",
        Some(&body.to_string()),
        Some(OPERATOR_KEY),
    )
    .await
}

/// `method /session/{id}` with the operator key: GET and DELETE.
async fn on_session(t: &TestStack, method: &str, id: &str) -> (u16, Value) {
    t.call(method, &format!("/session/{id}"), None, Some(OPERATOR_KEY))
        .await
}

/// The id of the server a live session runs on: its own, never the session's (a session id is
/// free again while its old server may still be ending).
async fn server_of(t: &TestStack, session_id: &str) -> String {
    let session = t
        .store()
        .session(session_id)
        .await
        .unwrap()
        .expect("a live session");
    assert_ne!(
        session.server_id, session_id,
        "a server has an id of its own"
    );
    session.server_id
}

/// Sends `ping` to the game server at `host:port` and returns its answer.
async fn udp_ping(host: &str, port: u64) -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buffer = [0u8; 256];
    for _ in 0..50 {
        socket.send_to(b"ping", (host, port as u16)).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buffer)).await
        {
            return String::from_utf8_lossy(&buffer[..n]).into_owned();
        }
    }
    panic!("no answer from {host}:{port}/udp");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_as_the_session_api_does() {
    let dir = events_dir();
    let t = TestStack::start_with(sessions_stack(&dir, 0)).await;

    // 401 on every route without the operator key.
    for (method, path, body) in [
        ("GET", "/available-location/arena", None),
        (
            "POST",
            "/session",
            Some(r#"{"image":"arena","location":"local"}"#),
        ),
        ("GET", "/session", None),
        ("GET", "/session/5b0c8e9e-1d2f-4a4e-9d51-5f2c6a3f9b10", None),
        (
            "DELETE",
            "/session/5b0c8e9e-1d2f-4a4e-9d51-5f2c6a3f9b10",
            None,
        ),
        (
            "PUT",
            "/session/player/join",
            Some(r#"{"session":"x","players":["p"]}"#),
        ),
        (
            "DELETE",
            "/session/player/leave",
            Some(r#"{"players":["p"]}"#),
        ),
    ] {
        assert_eq!(
            t.call(method, path, body, None).await.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            t.call(method, path, body, Some("wrong")).await.0,
            401,
            "{method} {path}"
        );
    }

    // available-location
    assert_eq!(
        t.call("GET", "/available-location/arena", None, Some(OPERATOR_KEY))
            .await,
        (
            200,
            json!({ "locations": [{ "location": "local", "ips": ["127.0.0.1"] }] })
        )
    );
    assert_eq!(
        t.call("GET", "/available-location/chess", None, Some(OPERATOR_KEY))
            .await
            .0,
        404
    );

    // 404 naming what is unknown; 422 naming the field.
    for (body, status, needle) in [
        (
            json!({ "image": "chess", "location": "local" }),
            404,
            "image",
        ),
        (
            json!({ "image": GAME, "location": "mars" }),
            404,
            "location",
        ),
        (
            json!({ "image": GAME, "location": "elsewhere" }),
            404,
            "location",
        ),
        (
            json!({ "image": GAME, "location": "local", "version": "v9" }),
            404,
            "version",
        ),
        (json!({ "location": "local" }), 422, "image"),
        (
            json!({ "image": GAME, "location": "local", "ttl": "soon" }),
            422,
            "ttl",
        ),
        (
            json!({ "image": GAME, "location": "local", "ttl": 0 }),
            422,
            "ttl",
        ),
        (
            json!({ "image": GAME, "location": "local", "ttl": 700000 }),
            422,
            "ttl",
        ),
        (
            json!({ "image": GAME, "location": "local", "id": "not-a-uuid" }),
            422,
            "id",
        ),
        (
            json!({ "image": GAME, "location": "local", "env": { "A": 1 } }),
            422,
            "env",
        ),
        (
            json!({ "image": GAME, "location": "local", "env": { "SERVER_TOKEN": "t" } }),
            422,
            "SERVER_TOKEN is set by Switchboard",
        ),
        (
            json!({ "image": GAME, "location": "local", "args": "x" }),
            422,
            "args",
        ),
    ] {
        let (got, answer) = post_session(&t, body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}: the message names {needle}: {answer}"
        );
    }
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("V{i}"), json!("x"))).collect();
    let (got, answer) = post_session(
        &t,
        json!({ "image": GAME, "location": "local", "env": many }),
    )
    .await;
    assert_eq!(
        (
            got,
            answer["message"].as_str().map(|m| m.starts_with("env"))
        ),
        (422, Some(true))
    );
    let (got, _) = t
        .call("POST", "/session", Some("{not json"), Some(OPERATOR_KEY))
        .await;
    assert_eq!(got, 422);

    // A cold start, with env, args, ttl and a chosen id; the version picks another definition.
    // A field Switchboard does not implement (`colour`, as a matchmaker written for the hosted
    // API might send) is ignored, not refused.
    let id = uuid::Uuid::new_v4().to_string();
    let request = json!({
        "image": GAME, "location": "local", "id": id, "ttl": 600, "version": "v2",
        "env": { "MAP": "dust" }, "args": ["--mode", "duel"], "colour": "red",
    });
    let (status, created) = post_session(&t, request.clone()).await;
    assert_eq!(status, 201, "{created}");
    let host = created["host"]
        .as_str()
        .expect("the cold start's address")
        .to_string();
    assert_eq!(
        created,
        json!({ "id": id, "host": host, "ports": [{ "type": "udp", "container": 7777, "host": 7777 }] })
    );
    let server = server_of(&t, &id).await;
    let task = t
        .stack
        .tasks()
        .into_iter()
        .find(|task| task.started_by.as_deref() == Some(server.as_str()))
        .expect("startedBy is the server's id");
    assert_eq!(
        task.environment.get("MAP").map(String::as_str),
        Some("dust")
    );
    assert_eq!(task.environment.get("SERVER_ID"), Some(&server));
    assert_eq!(task.environment.get("SESSION_ID"), Some(&id));
    assert_eq!(task.command, ["--mode", "duel"]);
    assert_eq!(
        udp_ping(&host, 7777).await,
        format!("pong {server}"),
        "the host reaches the session's server"
    );

    // Idempotent per id: the same body gives the same session; another body is a conflict.
    assert_eq!(
        post_session(&t, request.clone()).await,
        (201, created.clone())
    );
    let (status, conflict) =
        post_session(&t, json!({ "image": GAME, "location": "local", "id": id })).await;
    assert_eq!(status, 409, "{conflict}");

    // Listing and one session.
    let (status, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{listed}");
    assert_eq!(
        (
            sessions[0]["id"].as_str(),
            sessions[0]["image"].as_str(),
            sessions[0]["location"].as_str()
        ),
        (Some(id.as_str()), Some(GAME), Some("local"))
    );
    assert!(
        sessions[0]["created"].as_i64().is_some() && sessions[0]["expiresAt"].as_i64().is_some()
    );
    let (status, one) = on_session(&t, "GET", &id).await;
    assert_eq!(
        (status, one["status"].as_str(), one["host"].as_str()),
        (200, Some("ready"), Some(host.as_str()))
    );
    assert_eq!(
        t.call(
            "GET",
            "/session/5b0c8e9e-1d2f-4a4e-9d51-5f2c6a3f9b10",
            None,
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        404
    );

    // Players: join, a player in one live session only, leave.
    let join = |session: &str, players: Value| json!({ "session": session, "players": players });
    assert_eq!(
        t.call(
            "PUT",
            "/session/player/join",
            Some(&join(&id, json!(["ann", "bo"])).to_string()),
            Some(OPERATOR_KEY)
        )
        .await,
        (200, json!({ "session": id, "players": ["ann", "bo"] }))
    );
    assert_eq!(
        t.call(
            "PUT",
            "/session/player/join",
            Some(&join(&id, json!(["cy"])).to_string()),
            Some(OPERATOR_KEY)
        )
        .await,
        (
            200,
            json!({ "session": id, "players": ["ann", "bo", "cy"] })
        )
    );
    let (status, other) = post_session(&t, json!({ "image": GAME, "location": "local" })).await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().unwrap().to_string();
    let (status, taken) = t
        .call(
            "PUT",
            "/session/player/join",
            Some(&join(&other_id, json!(["dee", "bo"])).to_string()),
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 409, "{taken}");
    assert!(taken["message"].as_str().unwrap().contains("bo"), "{taken}");
    assert_eq!(
        t.call(
            "PUT",
            "/session/player/join",
            Some(&join("5b0c8e9e-1d2f-4a4e-9d51-5f2c6a3f9b10", json!(["x"])).to_string()),
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        404
    );
    for bad in [
        json!({ "session": id }),
        json!({ "session": id, "players": [] }),
        json!({ "session": id, "players": [1] }),
    ] {
        let (status, body) = t
            .call(
                "PUT",
                "/session/player/join",
                Some(&bad.to_string()),
                Some(OPERATOR_KEY),
            )
            .await;
        assert_eq!(status, 422, "{bad} → {body}");
        assert!(
            body["message"].as_str().unwrap().contains("players"),
            "{body}"
        );
    }
    assert_eq!(
        t.call(
            "DELETE",
            "/session/player/leave",
            Some(r#"{"players":["bo","nobody"]}"#),
            Some(OPERATOR_KEY)
        )
        .await,
        (200, json!({ "players": ["bo"] }))
    );
    assert_eq!(
        t.call(
            "DELETE",
            "/session/player/leave",
            Some(r#"{"players":"bo"}"#),
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        422
    );
    // Free again: bo may join the other session now.
    assert_eq!(
        t.call(
            "PUT",
            "/session/player/join",
            Some(&join(&other_id, json!(["bo"])).to_string()),
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        200
    );

    // DELETE ends it through the lifecycle: SIGTERM to the server, players released.
    assert_eq!(
        on_session(&t, "DELETE", &id).await,
        (200, json!({ "id": id, "message": "Session stopped" }))
    );
    wait_for_event(&dir, &server, "sigterm", SERVER_WAIT).await;
    assert_eq!(on_session(&t, "DELETE", &id).await.0, 404);
    let (_, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    assert_eq!(
        listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [other_id.as_str()]
    );
    assert_eq!(
        t.call(
            "PUT",
            "/session/player/join",
            Some(&join(&other_id, json!(["ann"])).to_string()),
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        200,
        "ann was released with the ended session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_ttl_ends_the_session_and_frees_its_players() {
    let dir = events_dir();
    let t = TestStack::start_with(sessions_stack(&dir, 0)).await;
    let (status, created) =
        post_session(&t, json!({ "image": GAME, "location": "local", "ttl": 60 })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let server = server_of(&t, &id).await;
    let join = json!({ "session": id, "players": ["eve"] }).to_string();
    assert_eq!(
        t.call(
            "PUT",
            "/session/player/join",
            Some(&join),
            Some(OPERATOR_KEY)
        )
        .await
        .0,
        200
    );

    t.clock.advance(59);
    assert!(t.stack.sweep().await.ended.is_empty());
    t.clock.advance(2);
    let report = t.stack.sweep().await;
    assert_eq!(report.ended, std::slice::from_ref(&server), "{report:?}");
    wait_for_event(&dir, &server, "sigterm", SERVER_WAIT).await;
    let (_, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    assert_eq!(listed, json!({ "sessions": [] }));
    assert_eq!(
        t.call(
            "DELETE",
            "/session/player/leave",
            Some(r#"{"players":["eve"]}"#),
            Some(OPERATOR_KEY)
        )
        .await,
        (200, json!({ "players": [] })),
        "eve is in no session any more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_is_420_with_retry_after() {
    let dir = events_dir();
    let mut options = sessions_stack(&dir, 0);
    options.ecs_capacity = Some(1);
    let t = TestStack::start_with(options).await;
    assert_eq!(
        post_session(&t, json!({ "image": GAME, "location": "local" }))
            .await
            .0,
        201
    );
    let response = t
        .request(
            "POST",
            "/session",
            Some(r#"{"image":"arena","location":"local"}"#),
            Some(OPERATOR_KEY),
            &[],
        )
        .await;
    assert_eq!(response.status().as_u16(), 420);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("60")
    );
    let (_, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        1,
        "a refused start leaves no session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_sessions_against_eight_warm_servers() {
    let dir = events_dir();
    let mut options = sessions_stack(&dir, 8);
    // Room for the 8 warm servers and 8 cold starts; the rest must get an honest 420.
    options.ecs_capacity = Some(16);
    let t = TestStack::start_with(options).await;
    let launched = t.stack.sweep().await.launched;
    assert_eq!(launched.len(), 8);
    for server in &launched {
        wait_for_event(&dir, server, "identified", SERVER_WAIT).await;
    }
    let warm: BTreeSet<String> = launched.iter().cloned().collect();

    let answers = futures_util::future::join_all((0..32).map(|_| {
        post_session(
            &t,
            json!({ "image": GAME, "location": "local", "env": { "MAP": "x" } }),
        )
    }))
    .await;
    let mut warm_ids = BTreeSet::new();
    let (mut cold, mut refused) = (0, 0);
    for (status, body) in &answers {
        match status {
            201 => {
                let id = body["id"].as_str().unwrap().to_string();
                if warm.contains(&id) {
                    assert!(
                        warm_ids.insert(id),
                        "a warm server allocated twice: {answers:?}"
                    );
                } else {
                    cold += 1;
                }
            }
            420 => refused += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(warm_ids, warm, "all 8 warm servers allocated, each once");
    assert_eq!(cold + refused, 24, "the rest are cold starts or 420");
    // Each warm server was told its own session, exactly once.
    for server in &warm {
        wait_for_event(&dir, server, &format!("session {server}"), SERVER_WAIT).await;
        assert_eq!(events(&dir, server).matches("session ").count(), 1);
    }
    // The warm path's address reaches the server.
    let (_, one) = answers
        .iter()
        .find(|(s, b)| *s == 201 && warm.contains(b["id"].as_str().unwrap()))
        .unwrap();
    let host = one["host"].as_str().expect("a warm server's address");
    assert_eq!(
        udp_ping(host, 7777).await,
        format!("pong {}", one["id"].as_str().unwrap())
    );
    let (_, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 8 + cold);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_location_in_another_region_runs_its_task_there() {
    let dir = events_dir();
    let t = TestStack::start_with(sessions_stack(&dir, 0)).await;
    assert_eq!(
        t.call(
            "GET",
            "/available-location/arena-eu",
            None,
            Some(OPERATOR_KEY)
        )
        .await,
        (
            200,
            json!({ "locations": [{ "location": "elsewhere", "ips": ["127.0.0.2"] }] })
        )
    );
    let mut regions = Vec::new();
    for (image, location) in [(GAME, "local"), ("arena-eu", "elsewhere")] {
        let (status, created) =
            post_session(&t, json!({ "image": image, "location": location })).await;
        assert_eq!(status, 201, "{created}");
        let server = server_of(&t, created["id"].as_str().expect("id")).await;
        let task = t
            .stack
            .tasks()
            .into_iter()
            .find(|task| task.started_by.as_deref() == Some(server.as_str()))
            .expect("its task");
        regions.push(task.region.unwrap_or_default());
    }
    assert_eq!(
        regions,
        ["us-east-1", "eu-central-1"],
        "RunTask went to each location's region"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_is_free_again_once_its_session_ended() {
    let dir = events_dir();
    let t = TestStack::start_with(sessions_stack(&dir, 0)).await;
    let id = uuid::Uuid::new_v4().to_string();
    let first = json!({ "image": GAME, "location": "local", "id": id });
    assert_eq!(post_session(&t, first).await.0, 201);
    assert_eq!(on_session(&t, "DELETE", &id).await.0, 200);
    // The same id with another request: a new session, not a conflict with the ended one.
    let again = json!({ "image": GAME, "location": "local", "id": id, "env": { "MAP": "b" } });
    let (status, body) = post_session(&t, again).await;
    assert_eq!(
        (status, body["id"].as_str()),
        (201, Some(id.as_str())),
        "{body}"
    );
}

/// An id is free again once its session has expired, before the sweeper has ended the
/// session's server. Ending that server afterwards must take only its own session: a new
/// session with the same id stays, with its players.
#[tokio::test(flavor = "multi_thread")]
async fn ending_an_expired_session_leaves_a_new_session_with_the_same_id() {
    let dir = events_dir();
    let t = TestStack::start_with(sessions_stack(&dir, 1)).await;
    let launched = t.stack.sweep().await.launched;
    assert_eq!(launched.len(), 1);
    let warm = launched[0].clone();
    wait_for_event(&dir, &warm, "identified", SERVER_WAIT).await;

    let id = uuid::Uuid::new_v4().to_string();
    let (status, first) = post_session(
        &t,
        json!({ "image": GAME, "location": "local", "id": id, "ttl": 60 }),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    wait_for_event(&dir, &warm, &format!("session {id}"), SERVER_WAIT).await;

    t.clock.advance(61);
    let (status, second) =
        post_session(&t, json!({ "image": GAME, "location": "local", "id": id })).await;
    assert_eq!(
        status, 201,
        "the id is free once its session expired: {second}"
    );
    let join = json!({ "session": id, "players": ["mallory"] }).to_string();
    let (status, joined) = t
        .call(
            "PUT",
            "/session/player/join",
            Some(&join),
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 200, "{joined}");

    let report = t.stack.sweep().await;
    assert!(
        report.ended.contains(&warm),
        "the expired session's server ends: {report:?}"
    );
    wait_for_event(&dir, &warm, "sigterm", SERVER_WAIT).await;
    let (status, now) = on_session(&t, "GET", &id).await;
    assert_eq!(
        status, 200,
        "the new session outlives the old one's ending: {now}"
    );
    assert_eq!(now["host"], second["host"], "{now}");
    assert_eq!(now["players"], json!(["mallory"]), "{now}");
}

/// DELETE /session/{id} ends the server, then makes sure the session it read is gone. By
/// then the id may carry a new session (the ending freed it): that one must stay.
#[tokio::test(flavor = "multi_thread")]
async fn removing_a_stopped_session_leaves_a_new_session_with_the_same_id() {
    let dir = events_dir();
    let t = TestStack::start_with(sessions_stack(&dir, 0)).await;
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({ "image": GAME, "location": "local", "id": id });
    assert_eq!(post_session(&t, body.clone()).await.0, 201);
    let old = t.store().session(&id).await.unwrap().expect("the session");
    let (status, stopped) = on_session(&t, "DELETE", &id).await;
    assert_eq!(status, 200, "{stopped}");

    // A new session with the id, as a POST racing the DELETE gets it.
    t.clock.advance(1);
    assert_eq!(post_session(&t, body).await.0, 201);
    // The DELETE's last step, for the session it had read.
    assert!(
        !t.store()
            .delete_session(&id, &old.server_id, Some(old.created))
            .await
            .unwrap()
    );
    let (status, now) = on_session(&t, "GET", &id).await;
    assert_eq!(status, 200, "{now}");
}

/// What a session whose server dies before it is ready is answered (the local ECS endpoint
/// reports a container that exits by itself as Fargate does).
fn stopped_before_ready(exit_code: i32) -> Value {
    json!({ "message": format!(
        "session server stopped before it was ready: exit code {exit_code} (Essential container in task exited)"
    ) })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_server_that_exits_at_once_is_a_502_at_once_and_leaves_nothing() {
    let dir = events_dir();
    let mut options = sessions_stack(&dir, 0);
    // A session whose env has CRASH=N is a task that exits with N at once.
    let command = options.task_command.take().expect("a task command");
    options.task_command = Some(format!(r#"[ -z "$CRASH" ] || exit "$CRASH"; {command}"#));
    let t = TestStack::start_with(options).await;
    // A working cold start first (the stack's clients are built on first use), for comparison.
    let started = std::time::Instant::now();
    let (status, working) = post_session(&t, json!({ "image": GAME, "location": "local" })).await;
    assert_eq!(status, 201, "{working}");
    eprintln!("a working cold start answered in {:?}", started.elapsed());

    let id = uuid::Uuid::new_v4().to_string();
    let crashing = json!({ "image": GAME, "location": "local", "id": id, "env": { "CRASH": "3" } });
    let started = std::time::Instant::now();
    let answer = post_session(&t, crashing).await;
    let took = started.elapsed();
    eprintln!("a task that exits at once answered in {took:?}");
    assert_eq!(answer, (502, stopped_before_ready(3)));
    assert!(took < Duration::from_secs(2), "answered after {took:?}");

    // Nothing of it is left: no session, its id and players free, no task running.
    let (_, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    let listed: Vec<&Value> = listed["sessions"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "only the working session: {listed:?}");
    assert_eq!(listed[0]["id"], working["id"]);
    assert_eq!(on_session(&t, "GET", &id).await.0, 404);
    let running = t.stack.tasks().iter().filter(|task| !task.stopped).count();
    assert_eq!(running, 1, "only the working session's task runs");
    let working = json!({ "image": GAME, "location": "local", "id": id });
    let (status, created) = post_session(&t, working).await;
    assert_eq!(status, 201, "the id is free again: {created}");
    let join = json!({ "session": id, "players": ["ann"] }).to_string();
    let (status, joined) = t
        .call(
            "PUT",
            "/session/player/join",
            Some(&join),
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_server_whose_task_stopped_is_a_502_and_leaves_nothing() {
    let dir = events_dir();
    let mut options = sessions_stack(&dir, 1);
    // The warm server's process leaves its task's process group (`setsid`), so it stays
    // identified on its socket after its task has stopped (exit 0): a server that ECS reports
    // gone while its socket lingers.
    options.task_command = Some(format!(
        r#"EXAMPLE_SERVER_EVENTS="{dir}/$SERVER_ID" setsid sh -c 'echo $$ > "$0"; exec "$1"' "{dir}/$SERVER_ID.pid" {server} & sleep 0.5; exit 0"#,
        dir = dir.display(),
        server = env!("CARGO_BIN_EXE_example-server"),
    ));
    let t = TestStack::start_with(options).await;
    let _escaped = KillEscaped(dir.clone());
    let launched = t.stack.sweep().await.launched;
    assert_eq!(launched.len(), 1);
    let server = &launched[0];
    wait_for_event(&dir, server, "identified", SERVER_WAIT).await;
    let deadline = tokio::time::Instant::now() + SERVER_WAIT;
    while !t.stack.tasks().iter().all(|task| task.stopped) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the warm task never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = post_session(&t, json!({ "image": GAME, "location": "local" })).await;
    assert_eq!(answer, (502, stopped_before_ready(0)));
    let (_, listed) = t.call("GET", "/session", None, Some(OPERATOR_KEY)).await;
    assert_eq!(listed, json!({ "sessions": [] }));
    assert!(
        t.store().room(server).await.unwrap().is_none(),
        "the server was ended"
    );
}

/// Ends, when dropped, the processes whose ids `*.pid` files in its directory hold: servers
/// that left their task's process group are this test's to end.
struct KillEscaped(std::path::PathBuf);

impl Drop for KillEscaped {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid")
                && let Ok(pid) = std::fs::read_to_string(&path)
                && let Ok(pid) = pid.trim().parse::<i32>()
                && pid > 1
            {
                // SAFETY: kill(2) on a process this test's task command started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
