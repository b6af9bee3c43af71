//! IAM from template.yaml, enforced by the local stack: each function's AWS calls are judged
//! by its own policies, and a call the template does not allow fails as AccessDenied.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::json;
use switchboard::model::Role;
use switchboard_tests::switchboard_local::{Stack, sdk_config_for};
use switchboard_tests::*;

fn function(stack: &Stack, logical_id: &str) -> switchboard::Deps {
    stack
        .function_deps(logical_id)
        .unwrap_or_else(|| panic!("the stack runs {logical_id}"))
}

fn assert_denied(error: &str, action: &str, resource: &str) {
    assert!(
        error.contains("AccessDenied")
            && error.contains(&format!(
                "is not authorized to perform: {action} on resource: {resource}"
            )),
        "expected AccessDenied for {action} on {resource}, got: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_outside_a_functions_policy_is_access_denied() {
    let t = TestStack::start().await;
    let tables = t.store().tables().clone();
    let table_arn = |name: &str| format!("arn:aws:dynamodb:us-east-1:000000000000:table/{name}");

    // getRoomId reads paths and rooms, and nothing else.
    let get_room_id = function(&t.stack, "GetRoomIdFunction");
    assert_eq!(
        get_room_id.store.room_for_path("nowhere").await.unwrap(),
        None
    );
    let error = get_room_id
        .store
        .open_connection("intruder")
        .await
        .unwrap_err()
        .to_string();
    assert_denied(&error, "dynamodb:PutItem", &table_arn(&tables.connections));
    assert!(
        t.store().connection("intruder").await.unwrap().is_none(),
        "nothing written"
    );

    // claimRoom may query the WarmPool index, not IdleHosts.
    let claim_room = function(&t.stack, "ClaimRoomFunction");
    let error = claim_room
        .store
        .reserve_idle_host(&["local".to_string()], 20)
        .await
        .unwrap_err()
        .to_string();
    assert_denied(
        &error,
        "dynamodb:Query",
        &format!("{}/index/IdleHosts", table_arn(&tables.hosts)),
    );

    // identify may read members and write its transaction; status may not.
    let status = function(&t.stack, "StatusFunction");
    let error = status
        .store
        .join_room("c-status", "room", "peer", Role::Client, 50)
        .await
        .unwrap_err()
        .to_string();
    assert_denied(&error, "dynamodb:GetItem", &table_arn(&tables.members));
    let identify = function(&t.stack, "IdentifyFunction");
    t.store().open_connection("c-identify").await.unwrap();
    identify
        .store
        .join_room("c-identify", "room", "peer", Role::Client, 50)
        .await
        .expect("identify's own transaction");

    // ECS: only createRoom runs tasks, and only in its cluster. (handshake has no ECS
    // settings of its own: it tries createRoom's.)
    let handshake = function(&t.stack, "HandshakeFunction");
    assert!(
        handshake.config.ecs.is_none(),
        "handshake is not given ECS settings"
    );
    let create_room = function(&t.stack, "CreateRoomFunction");
    let error = switchboard::ecs::run_task(
        handshake.ecs(),
        create_room.config.ecs.as_ref(),
        switchboard::ecs::Launch {
            server_id: "4f9b1a52-7c3e-4d7a-9a51-0d7e5b6c8a21",
            environment: &[],
            command: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert_denied(
        &error,
        "ecs:RunTask",
        "arn:aws:ecs:us-east-1:000000000000:task-definition/switchboard-sfu:1",
    );
    let error = create_room
        .ecs()
        .run_task()
        .cluster("someone-elses")
        .task_definition("switchboard-sfu")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| switchboard::error::error_chain(&e))
        .unwrap_err();
    assert!(
        error.contains("AccessDenied"),
        "RunTask outside the ecs:cluster condition: {error}"
    );
    assert!(t.stack.tasks().is_empty(), "no task started");

    // @connections: $connect posts nothing, so it may not; identify may POST but not GET.
    let connect = function(&t.stack, "ConnectFunction");
    let error = connect
        .sockets
        .post(None, "someone", &json!({ "type": "hello" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("AccessDenied"), "{error}");
    let management = |principal: &'static str| {
        let url = t.stack.ws_url.replace("ws://", "http://");
        async move {
            aws_sdk_apigatewaymanagement::Client::from_conf(
                aws_sdk_apigatewaymanagement::config::Builder::from(
                    &sdk_config_for(principal).await,
                )
                .endpoint_url(url)
                .build(),
            )
        }
    };
    let error = management("IdentifyFunction")
        .await
        .get_connection()
        .connection_id("someone")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| switchboard::error::error_chain(&e))
        .unwrap_err();
    assert_denied(
        &error,
        "execute-api:ManageConnections",
        "arn:aws:execute-api:us-east-1:000000000000:local/local/GET/@connections/someone",
    );

    // A principal that is no function of the template may do nothing.
    let stranger = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk_config_for("Mallory").await)
            .endpoint_url(&t.stack.dynamodb_url)
            .build(),
    );
    let error = stranger
        .get_item()
        .table_name(&tables.rooms)
        .key(
            "roomId",
            aws_sdk_dynamodb::types::AttributeValue::S("r".into()),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| switchboard::error::error_chain(&e))
        .unwrap_err();
    assert_denied(&error, "dynamodb:GetItem", &table_arn(&tables.rooms));
}

fn ping_from(connection: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "requestContext": {
            "routeKey": "$default",
            "eventType": "MESSAGE",
            "messageDirection": "IN",
            "stage": "local",
            "domainName": "127.0.0.1",
            "connectionId": connection,
            "apiId": "local",
            "requestId": "r",
            "messageId": "m",
            "connectedAt": 1795359600000_i64,
            "requestTimeEpoch": 1795359600000_i64,
            "extendedRequestId": "e",
            "identity": { "sourceIp": "127.0.0.1" },
        },
        "body": r#"{"action":"ping"}"#,
        "isBase64Encoded": false,
    }))
    .expect("a $default event")
}

/// `$default` posts pong and error frames; a post answered 410 removes the target's stale
/// records (its connection, membership, and a serving peer's room with its path or host
/// registration). Its policy must allow exactly that cleanup.
#[tokio::test(flavor = "multi_thread")]
async fn defaults_cleanup_after_a_gone_socket_is_within_its_policy() {
    let t = TestStack::start().await;
    let default_fn = function(&t.stack, "DefaultFunction");

    // An SFU room, claimed by a path, whose SFU's socket is gone without $disconnect.
    let room = t.warm_room().await;
    let sfu_connection = format!("conn-{room}");
    t.store().open_connection(&sfu_connection).await.unwrap();
    t.store()
        .join_room(&sfu_connection, &room, &room, Role::Sfu, 50)
        .await
        .unwrap();
    let (status, claimed) = t
        .call("PATCH", "/claimRoom", Some(r#"{"urlPath":"ghost"}"#), None)
        .await;
    assert_eq!(
        (status, claimed["roomId"].as_str()),
        (200, Some(room.as_str()))
    );

    // A host room whose host's socket is gone likewise.
    t.heartbeat("ghost-host-secret", "ghost-arena", "local", "idle")
        .await;
    let host_connection = "conn-ghost-host";
    t.store().open_connection(host_connection).await.unwrap();
    t.store()
        .join_room(host_connection, "ghost-arena", "host", Role::Host, 50)
        .await
        .unwrap();
    let arena = t.store().room("ghost-arena").await.unwrap().expect("room");
    assert!(
        t.store()
            .attach_host(&arena, "host", host_connection)
            .await
            .unwrap()
    );

    // Each pings; the pong finds no socket (410), and $default cleans up with its own rights.
    for connection in [sfu_connection.as_str(), host_connection] {
        let reply = default::handler(&default_fn, ping_from(connection)).await;
        assert_eq!(reply.status_code, 200);
        assert!(
            t.store().connection(connection).await.unwrap().is_none(),
            "{connection}'s record removed"
        );
    }
    assert!(t.store().member(&room, &room).await.unwrap().is_none());
    // Both rooms wait out the reconnect grace: kept, without a serving socket, with a deadline.
    let sfu_room = t.store().room(&room).await.unwrap().expect("the SFU room");
    assert_eq!(sfu_room.serving_connection, None);
    assert!(sfu_room.deadline.is_some_and(|d| d <= t.clock.now() + 30));
    assert_eq!(
        t.store().room_for_path("ghost").await.unwrap().as_deref(),
        Some(room.as_str()),
        "the path stays during the grace"
    );
    assert!(
        t.store()
            .member("ghost-arena", "host")
            .await
            .unwrap()
            .is_none()
    );
    let arena = t.store().room("ghost-arena").await.unwrap().expect("room");
    assert_eq!(arena.serving_connection, None, "the host left its room");
    assert!(
        t.raw_item(&t.store().tables().hosts, "hostId", "ghost-host-secret")
            .await
            .is_some(),
        "the host's registration waits out the grace"
    );
}
