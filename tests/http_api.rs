//! The HTTP API's rooms routes, auth, validation and CORS, through the local stack against
//! DynamoDB Local and the local ECS endpoint.

use serde_json::Value;
use switchboard::model::RoomState;
use switchboard_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn get_room_id_and_claim_room_follow_the_spec() {
    let t = TestStack::start().await;

    assert_eq!(
        t.call("GET", "/getRoomId", None, None).await,
        (400, serde_json::json!({"message": "missing urlPath"}))
    );
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=%2F%2F", None, None)
            .await
            .0,
        400
    );
    assert_eq!(
        t.call("GET", "/getRoomId?urlPath=myRoom", None, None).await,
        (404, serde_json::json!({"message": "Room not found"}))
    );
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some("{}"), None).await,
        (400, serde_json::json!({"message": "missing urlPath"}))
    );
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"myRoom"}"#), None)
            .await,
        (404, serde_json::json!({"message": "Room not found"})),
        "no warm room to claim"
    );

    let room = t.warm_room().await;
    let (status, body) = t
        .call(
            "PATCH",
            "/claimRoom",
            Some(r#"{"urlPath":"/myRoom/"}"#),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["roomId"].as_str(), body["id"].as_str()),
        (Some(room.as_str()), Some(room.as_str())),
        "id beside roomId"
    );
    // Room clients get the signaling URL and TURN credentials for the room, like find-match.
    assert_eq!(body["signalingUrl"].as_str(), Some(t.stack.ws_url.as_str()));
    let turn = body["iceServers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|s| s.get("credential").is_some()))
        .unwrap_or_else(|| panic!("a TURN entry: {body}"));
    assert!(
        turn["username"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!(":{room}"))),
        "TURN user is the room: {turn}"
    );

    for path in ["myRoom", "%2FmyRoom", "%2FmyRoom%2F"] {
        let (status, body) = t
            .call("GET", &format!("/getRoomId?urlPath={path}"), None, None)
            .await;
        assert_eq!(
            (status, body["roomId"].as_str(), body["id"].as_str()),
            (200, Some(room.as_str()), Some(room.as_str()))
        );
    }
    // Idempotent: claiming a path that has a room gives that room, and takes no other.
    let second_warm = t.warm_room().await;
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"myRoom"}"#), None)
            .await
            .1["roomId"],
        room.as_str()
    );
    let (_, other) = t
        .call("PATCH", "/claimRoom", Some(r#"{"urlPath":"other"}"#), None)
        .await;
    assert_eq!(other["roomId"], second_warm.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_precise_400() {
    let t = TestStack::start().await;
    let cases: &[(&str, &str, &str, &str)] = &[
        ("PATCH", "/claimRoom", "not json", "body is not valid JSON"),
        ("PATCH", "/claimRoom", "[1,2]", "body must be a JSON object"),
        (
            "PATCH",
            "/claimRoom",
            r#"{"urlPath": 7}"#,
            "urlPath must be a string",
        ),
        (
            "PATCH",
            "/claimRoom",
            r#"{"urlPath": "a\u0001b"}"#,
            "urlPath must contain only printable characters",
        ),
        (
            "POST",
            "/api/find-match",
            r#"{"region": "mars"}"#,
            "unknown region \"mars\"; expected one of us-east-1, us-west-1, eu-central, local",
        ),
        (
            "POST",
            "/api/find-match",
            r#"{"region": 1}"#,
            "region must be a string",
        ),
        (
            "POST",
            "/api/host/heartbeat",
            r#"{"roomId":"r","region":"local"}"#,
            "missing hostId",
        ),
        (
            "POST",
            "/api/host/heartbeat",
            r#"{"hostId":"h","region":"local"}"#,
            "missing roomId",
        ),
        (
            "POST",
            "/api/host/heartbeat",
            r#"{"hostId":"h","roomId":"r"}"#,
            "missing region",
        ),
        (
            "POST",
            "/api/host/heartbeat",
            r#"{"hostId":"h","roomId":"r","region":"local","status":"asleep"}"#,
            "status must be idle or busy",
        ),
        (
            "POST",
            "/api/host/heartbeat",
            r#"{"hostId":"h h","roomId":"r","region":"local"}"#,
            "hostId must contain only printable, non-space characters",
        ),
        (
            "POST",
            "/api/host/status",
            r#"{"hostId":"h"}"#,
            "missing status",
        ),
        (
            "POST",
            "/api/host/status",
            r#"{"hostId":"h","status":"gone"}"#,
            "status must be idle or busy",
        ),
    ];
    for (method, path, body, message) in cases {
        let (status, reply) = t.call(method, path, Some(body), Some(HOST_KEY)).await;
        assert_eq!(status, 400, "{method} {path} {body}: {reply}");
        assert_eq!(reply["message"], *message, "{method} {path} {body}");
        if path.starts_with("/api/") {
            assert_eq!(
                reply["success"], false,
                "matchmaking errors carry success: false"
            );
        }
    }
    // An unknown region is not echoed back unbounded.
    let huge = "z".repeat(10 * 1024);
    for (path, body) in [
        ("/api/find-match", serde_json::json!({ "region": huge })),
        (
            "/api/host/heartbeat",
            serde_json::json!({ "hostId": "h", "roomId": "r", "region": huge }),
        ),
    ] {
        let (status, reply) = t
            .call("POST", path, Some(&body.to_string()), Some(HOST_KEY))
            .await;
        let message = reply["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{path}");
        assert!(
            message.len() < 200 && !message.contains("zzzz"),
            "{path}: the region is not echoed: {} bytes",
            message.len()
        );
        assert!(
            message.starts_with("unknown region"),
            "{path}: {message:.100}"
        );
    }
    let long = format!(r#"{{"urlPath":"{}"}}"#, "x".repeat(257));
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(&long), None).await.1["message"],
        "urlPath must be at most 256 characters"
    );

    let (status, body) = t.call("GET", "/no/such/route", None, None).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
    let (status, _) = t.call("DELETE", "/claimRoom", None, None).await;
    assert_eq!(
        status, 404,
        "methods not declared in template.yaml are not routed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_guard_create_room_heartbeat_and_status() {
    let t = TestStack::start().await;
    for bearer in [None, Some("wrong"), Some("host-key-new")] {
        assert_eq!(
            t.call("PUT", "/createRoom", None, bearer).await,
            (401, serde_json::json!({"message": "Unauthorized"}))
        );
    }
    for key in ["operator-key-1", "operator-key-2"] {
        let (status, body) = t.call("POST", "/createRoom", Some("{}"), Some(key)).await;
        assert_eq!(
            status, 200,
            "both operator keys are valid during rotation: {body}"
        );
    }
    let heartbeat =
        r#"{"hostId":"secret-host-1","roomId":"room-h1","region":"local","status":"idle"}"#;
    for bearer in [None, Some("wrong"), Some("operator-key-1")] {
        let (status, body) = t
            .call("POST", "/api/host/heartbeat", Some(heartbeat), bearer)
            .await;
        assert_eq!(
            (status, &body["success"]),
            (401, &Value::Bool(false)),
            "{body}"
        );
        let (status, _) = t
            .call(
                "POST",
                "/api/host/status",
                Some(r#"{"hostId":"secret-host-1","status":"busy"}"#),
                bearer,
            )
            .await;
        assert_eq!(status, 401);
    }
    for key in ["host-key-old", "host-key-new"] {
        let (status, body) = t
            .call("POST", "/api/host/heartbeat", Some(heartbeat), Some(key))
            .await;
        assert_eq!(
            (status, &body["success"], &body["ttl"]),
            (200, &Value::Bool(true), &Value::from(30)),
            "{body}"
        );
        assert_eq!(body["signalingUrl"], t.stack.ws_url.as_str());
        let turn = &body["iceServers"][1];
        let username = turn["username"]
            .as_str()
            .expect("the host gets TURN credentials too");
        assert_eq!(
            turn["credential"],
            switchboard::turn::credential(TURN_SECRET, username)
        );
        assert!(
            !body.to_string().contains("secret-host"),
            "the hostId is not echoed: {body}"
        );
    }

    // Without operator keys, createRoom refuses everyone; without host keys, hosts are open.
    let mut open = options();
    open.vars.remove("SWITCHBOARD_OPERATOR_KEYS");
    open.vars.remove("SWITCHBOARD_HOST_KEYS");
    let open = TestStack::start_with(open).await;
    assert_eq!(
        open.call("PUT", "/createRoom", None, Some("anything"))
            .await
            .0,
        401
    );
    assert_eq!(
        open.call("POST", "/api/host/heartbeat", Some(heartbeat), None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_answers_as_the_http_api_is_configured() {
    let t = TestStack::start().await;
    let preflight = t
        .request(
            "OPTIONS",
            "/api/find-match",
            None,
            None,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let reply = t
        .request(
            "GET",
            "/getRoomId?urlPath=x",
            None,
            None,
            &[("origin", "https://app.example")],
        )
        .await;
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
    assert_eq!(reply.headers()["content-type"], "application/json");

    let mut restricted = options();
    restricted.vars.insert(
        "SWITCHBOARD_ALLOWED_ORIGINS".into(),
        "https://a.example, https://b.example".into(),
    );
    let r = TestStack::start_with(restricted).await;
    let allowed = r
        .request(
            "GET",
            "/getRoomId?urlPath=x",
            None,
            None,
            &[("origin", "https://b.example")],
        )
        .await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://b.example"
    );
    let other = r
        .request(
            "GET",
            "/getRoomId?urlPath=x",
            None,
            None,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = r
        .request(
            "OPTIONS",
            "/claimRoom",
            None,
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "PATCH"),
            ],
        )
        .await;
    assert!(
        preflight
            .headers()
            .get("access-control-allow-methods")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_room_records_the_room_before_launching_its_task() {
    let (gate, mut launches) = tokio::sync::mpsc::unbounded_channel();
    let mut options = options();
    options.launch_gate = Some(gate);
    let t = TestStack::start_with(options).await;
    let store = t.store().clone();
    let observer = tokio::spawn(async move {
        let (task, release) = launches.recv().await.expect("a RunTask");
        let room_id = task.environment["ROOM_ID"].clone();
        // At the moment ECS receives RunTask, the room is already there, and not claimable.
        let room = store
            .room(&room_id)
            .await
            .expect("read")
            .expect("room exists before the launch");
        assert_eq!(room.state, RoomState::Starting);
        assert!(
            store.claim_room("early").await.expect("claim").is_none(),
            "a starting room is not claimable"
        );
        release.send(()).expect("release RunTask");
        task
    });
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Task started successfully!");
    let task = observer.await.expect("observer");
    let room_id = body["roomId"].as_str().expect("roomId");
    assert_eq!(body["taskArn"].as_str(), Some(task.task_arn.as_str()));

    let env = &task.environment;
    assert_eq!(env["ROOM_ID"], room_id);
    assert_eq!(env["SFU_ID"], room_id);
    assert!(env["SFU_TOKEN"].len() >= 32, "an unguessable token");
    assert_eq!(env["SIGNAL_SERVER_URL"], t.stack.ws_url);
    let rtc: Value = serde_json::from_str(&env["RTC_CONFIG"]).expect("RTC_CONFIG is JSON");
    let servers = rtc["iceServers"].as_array().expect("iceServers");
    assert_eq!(servers[0]["urls"][0], "stun:127.0.0.1:3478");
    let username = servers[1]["username"].as_str().expect("TURN username");
    assert_eq!(
        servers[1]["credential"],
        switchboard::turn::credential(TURN_SECRET, username)
    );
    assert_eq!(
        t.store()
            .room(room_id)
            .await
            .unwrap()
            .unwrap()
            .task_arn
            .as_deref(),
        Some(task.task_arn.as_str())
    );
}

/// Rooms left in the table, read with a Scan (tests may; request paths never do).
async fn room_count(t: &TestStack) -> usize {
    let out = t
        .store()
        .client()
        .scan()
        .table_name(&t.store().tables().rooms)
        .send()
        .await
        .expect("scan");
    out.items().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_launch_leaves_no_room_and_no_capacity_is_a_503() {
    // ECS answers with a non-empty `failures` list (no capacity): retry later, not a server
    // error (found by scripts/fuzz.sh, whose createRoom calls exhausted the local capacity).
    let mut full = options();
    full.ecs_capacity = Some(0);
    let t = TestStack::start_with(full).await;
    let reply = t
        .request("PUT", "/createRoom", None, Some(OPERATOR_KEY), &[])
        .await;
    assert_eq!(reply.status().as_u16(), 503);
    assert_eq!(reply.headers()["retry-after"], "2");
    assert_eq!(
        t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await,
        (
            503,
            serde_json::json!({"message": "Service temporarily unavailable; retry shortly"})
        )
    );
    assert_eq!(room_count(&t).await, 0);
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"p"}"#), None)
            .await
            .0,
        404
    );

    // RunTask itself fails (the function points at a cluster ECS does not have).
    let mut wrong = options();
    wrong
        .vars
        .insert("SWITCHBOARD_ECS_CLUSTER".into(), "no-such-cluster".into());
    let t = TestStack::start_with(wrong).await;
    let (status, body) = t.call("PUT", "/createRoom", None, Some(OPERATOR_KEY)).await;
    assert_eq!(
        (status, body),
        (500, serde_json::json!({"message": "Failed to start task."})),
        "nothing internal leaks"
    );
    assert_eq!(room_count(&t).await, 0);
    assert!(t.stack.tasks().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_of_one_path_get_one_room() {
    let t = TestStack::start().await;
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(t.warm_room().await);
    }
    let claims = (0..25).map(|_| {
        t.call(
            "PATCH",
            "/claimRoom",
            Some(r#"{"urlPath":"/standup"}"#),
            None,
        )
    });
    let results = futures_util::future::join_all(claims).await;
    let rooms: std::collections::BTreeSet<String> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["roomId"].as_str().expect("roomId").to_string()
        })
        .collect();
    assert_eq!(
        rooms.len(),
        1,
        "every concurrent claim of one path gets the same room: {rooms:?}"
    );
    // The other four rooms are still in the pool.
    for i in 0..4 {
        assert_eq!(
            t.call(
                "PATCH",
                "/claimRoom",
                Some(&format!(r#"{{"urlPath":"p{i}"}}"#)),
                None
            )
            .await
            .0,
            200
        );
    }
    assert_eq!(
        t.call("PATCH", "/claimRoom", Some(r#"{"urlPath":"p-last"}"#), None)
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn distinct_paths_racing_for_k_rooms_exactly_k_win() {
    const K: usize = 8;
    const PATHS: usize = 30;
    let t = TestStack::start().await;
    for _ in 0..K {
        t.warm_room().await;
    }
    let t = &t;
    let claims = (0..PATHS).map(|i| {
        let body = format!(r#"{{"urlPath":"team-{i}"}}"#);
        async move { (i, t.call("PATCH", "/claimRoom", Some(&body), None).await) }
    });
    let results = futures_util::future::join_all(claims).await;
    let winners: Vec<(usize, String)> = results
        .iter()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(i, (_, body))| (*i, body["roomId"].as_str().unwrap().to_string()))
        .collect();
    let losers = results
        .iter()
        .filter(|(_, (status, _))| *status == 404)
        .count();
    assert_eq!(winners.len(), K, "exactly K paths get a room");
    assert_eq!(losers, PATHS - K, "the rest get 404");
    let distinct: std::collections::BTreeSet<_> = winners.iter().map(|(_, r)| r).collect();
    assert_eq!(distinct.len(), K, "no room has two paths");
    for (i, room) in &winners {
        let (_, body) = t
            .call("GET", &format!("/getRoomId?urlPath=team-{i}"), None, None)
            .await;
        assert_eq!(body["roomId"].as_str(), Some(room.as_str()));
    }
    for (i, _) in results.iter().filter(|(_, (s, _))| *s == 404) {
        assert_eq!(
            t.call("GET", &format!("/getRoomId?urlPath=team-{i}"), None, None)
                .await
                .0,
            404
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_ready_rooms_never_hide_a_live_one() {
    let t = TestStack::start().await;
    // More expired-but-not-yet-deleted ready rooms than one read of the pool takes (16)...
    for _ in 0..18 {
        t.warm_room().await;
    }
    t.clock.advance(2 * 3600 + 601);
    // ...and one live ready room.
    let live = t.warm_room().await;
    let (status, body) = t
        .call(
            "PATCH",
            "/claimRoom",
            Some(r#"{"urlPath":"after-hours"}"#),
            None,
        )
        .await;
    assert_eq!(
        (status, body["roomId"].as_str()),
        (200, Some(live.as_str())),
        "{body}"
    );
}
