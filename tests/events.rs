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
