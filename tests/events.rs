//! Handlers called directly, as the Lambda runtime calls them, with events shaped exactly as
//! API Gateway sends them (fixtures in `tests/events/`).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use serde_json::Value;
use switchboard::model::HostStatus;
use switchboard_tests::*;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{name} is an API Gateway event: {e}"))
}

fn body(response_body: Option<Body>) -> Value {
    match response_body {
        Some(Body::Text(text)) => serde_json::from_str(&text).expect("JSON body"),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_api_events_as_api_gateway_sends_them() {
    let t = TestStack::start().await;
    let deps = &t.stack.deps;
    t.store()
        .heartbeat(
            "fixture-host",
            "fixture-host-room",
            "local",
            HostStatus::Idle,
            30,
        )
        .await
        .unwrap();

    let reply = find_match::handler(
        deps,
        fixture::<ApiGatewayV2httpRequest>("http-find-match.json"),
    )
    .await;
    assert_eq!(reply.status_code, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(body(reply.body)["roomId"], "fixture-host-room");

    // A base64-encoded body, as API Gateway sends some payloads.
    t.warm_room().await;
    let reply = claim_room::handler(deps, fixture("http-claim-room-base64.json")).await;
    assert_eq!(reply.status_code, 200);
    let claimed = body(reply.body)["roomId"].clone();
    let reply = get_room_id::handler(deps, fixture("http-get-room-id.json")).await;
    assert_eq!(
        (reply.status_code, body(reply.body)["roomId"].clone()),
        (200, claimed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_events_as_api_gateway_sends_them() {
    let t = TestStack::start().await;
    let deps = &t.stack.deps;
    let connect: ApiGatewayWebsocketProxyRequest = fixture("ws-connect.json");
    assert_eq!(connect.request_context.connected_at, 1795359600000);
    assert_eq!(connect::handler(deps, connect).await.status_code, 200);
    assert!(
        t.store()
            .connection("L0SM9cOFvHcCIhw=")
            .await
            .unwrap()
            .is_some(),
        "$connect recorded the connection"
    );

    // Arbiter's handshake before identify: refused with 400 (the error frame goes to a socket
    // the local gateway never had, which is answered 410 and cleaned up without failing).
    let reply = handshake::handler(deps, fixture("ws-handshake.json")).await;
    assert_eq!(reply.status_code, 400);
    assert!(
        t.store()
            .connection("L0SM9cOFvHcCIhw=")
            .await
            .unwrap()
            .is_none(),
        "a gone socket's records are removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_outlive_api_gateways_two_hour_limit() {
    let t = TestStack::start().await;
    connect::handler(&t.stack.deps, fixture("ws-connect.json")).await;
    let item = t
        .raw_item(
            &t.store().tables().connections,
            "connectionId",
            "L0SM9cOFvHcCIhw=",
        )
        .await
        .expect("recorded");
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    assert!(
        expires > t.clock.now() + 2 * 3600,
        "TTL past API Gateway's 2 h connection limit"
    );
    assert!(expires <= t.clock.now() + 3 * 3600, "and not much longer");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_gives_503s_that_leak_nothing() {
    const MESSAGE: &str = "Service temporarily unavailable; retry shortly";
    // The functions' production wiring, pointed at a DynamoDB that is not there, and at the
    // working stack's @connections endpoint (so error frames reach a real socket).
    let t = TestStack::start().await;
    let room = t.warm_room().await;
    let mut alice = Peer::connect(&t.stack.ws_url, "alice").await;
    let ack = alice
        .identify(serde_json::json!({ "id": "alice", "type": "client", "roomId": room }))
        .await;
    assert_eq!(ack["type"], "identified", "{ack}");
    let alice_connection = t
        .store()
        .member(&room, "alice")
        .await
        .unwrap()
        .expect("alice is a member")
        .connection_id;

    let dead = format!(
        "http://127.0.0.1:{}",
        switchboard_local::dynamodb::free_port().unwrap()
    );
    let sdk = switchboard_local::local_sdk_config().await;
    let deps = switchboard::Deps::new(
        t.stack.deps.config.clone(),
        switchboard::Clock::system(),
        &sdk,
        switchboard::Endpoints {
            dynamodb: Some(dead.clone()),
            management: Some(t.stack.ws_url.replace("ws://", "http://")),
            ..Default::default()
        },
    );

    // HTTP: 503 with Retry-After, and nothing about why in the body.
    let reply = get_room_id::handler(&deps, fixture("http-get-room-id.json")).await;
    assert_eq!(reply.status_code, 503);
    assert!(
        reply.headers.contains_key("retry-after"),
        "{:?}",
        reply.headers
    );
    assert_eq!(body(reply.body), serde_json::json!({ "message": MESSAGE }));
    let reply = find_match::handler(&deps, fixture("http-find-match.json")).await;
    assert_eq!(reply.status_code, 503);
    let retry_after = reply.headers["retry-after"].to_str().unwrap().to_string();
    assert!(
        retry_after
            .parse::<u32>()
            .is_ok_and(|s| (1..=5).contains(&s)),
        "Retry-After in seconds: {retry_after}"
    );
    let reply_body = body(reply.body);
    assert_eq!(
        reply_body,
        serde_json::json!({ "success": false, "message": MESSAGE })
    );
    assert!(
        !reply_body.to_string().contains("127.0.0.1"),
        "no internals in the body"
    );

    // WebSocket: the sender gets an error frame with status 503.
    let mut handshake: ApiGatewayWebsocketProxyRequest = fixture("ws-handshake.json");
    handshake.request_context.connection_id = Some(alice_connection);
    assert_eq!(handshake::handler(&deps, handshake).await.status_code, 503);
    assert_eq!(
        alice.recv("the refusal").await,
        serde_json::json!({ "type": "error", "action": "handshake", "status": 503, "message": MESSAGE })
    );

    // $connect that cannot record the connection refuses the socket.
    let status = connect::handler(&deps, fixture("ws-connect.json"))
        .await
        .status_code;
    assert!(!(200..300).contains(&status), "$connect answered {status}");
}
