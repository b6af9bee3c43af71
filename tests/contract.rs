//! docs/openapi.yaml and docs/asyncapi.yaml against template.yaml, and the checks the harness
//! runs on every response and frame, shown to refuse what breaks the documents.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use switchboard_local::{Template, workspace_root};
use switchboard_tests::contract::{FrameContract, HttpContract, load_yaml};

fn template() -> Template {
    Template::load(&workspace_root().join("template.yaml")).expect("template.yaml parses")
}

#[test]
fn openapi_documents_exactly_the_http_routes_of_the_template() {
    let declared: BTreeSet<(String, String)> = template()
        .http_routes()
        .unwrap()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let contract = HttpContract::get();
    let documented: BTreeSet<(String, String)> = contract
        .operations
        .iter()
        .filter(|o| !o.pending)
        .map(|o| (o.method.clone(), o.path.clone()))
        .collect();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty(),
        "template.yaml routes these, docs/openapi.yaml does not document them: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "docs/openapi.yaml documents these, template.yaml does not route them: {unrouted:?}"
    );
    // Operations documented ahead of their route carry x-switchboard-pending: true; the mark
    // must go when the route lands, so that the route is held to the document from then on.
    let landed: Vec<_> = contract
        .operations
        .iter()
        .filter(|o| o.pending && declared.contains(&(o.method.clone(), o.path.clone())))
        .map(|o| format!("{} {}", o.method, o.path))
        .collect();
    assert!(
        landed.is_empty(),
        "template.yaml now routes {landed:?}: remove x-switchboard-pending from them in docs/openapi.yaml"
    );
}

#[test]
fn asyncapi_documents_every_websocket_route_of_the_template() {
    let doc = load_yaml("asyncapi.yaml");
    let actions: BTreeSet<String> = doc["components"]["messages"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|m| {
            let reference = m["payload"]["$ref"].as_str()?;
            let schema = doc.pointer(reference.trim_start_matches('#'))?;
            schema["properties"]["action"]["const"]
                .as_str()
                .map(String::from)
        })
        .collect();
    for route in template().ws_routes().unwrap() {
        if route.route_key.starts_with('$') {
            continue;
        }
        assert!(
            actions.contains(&route.route_key),
            "template.yaml routes the action {:?}; docs/asyncapi.yaml has no inbound message for it (has {actions:?})",
            route.route_key
        );
    }
    assert!(actions.contains("ping"), "ping ($default) is documented");
    assert_eq!(
        FrameContract::get().types(),
        [
            "clientDisconnect",
            "consumer",
            "error",
            "identified",
            "pong",
            "producer",
            "session",
            "sfuDisconnect"
        ],
        "the outbound frame types"
    );
}

#[test]
fn every_documented_response_has_a_compiling_schema_and_errors_are_documented() {
    let contract = HttpContract::get();
    for operation in &contract.operations {
        let route = format!("{} {}", operation.method, operation.path);
        // Each documented outage answer needs Retry-After.
        let unavailable = contract.check(
            &operation.method,
            &operation.path,
            503,
            &[("content-type".into(), "application/json".into())],
            &error_body(
                &operation.path,
                "Service temporarily unavailable; retry shortly",
            ),
        );
        let error = unavailable.expect_err(&format!("{route}: a 503 without Retry-After"));
        assert!(error.contains("Retry-After"), "{route}: {error}");
        contract
            .check(
                &operation.method,
                &operation.path,
                503,
                &[
                    ("content-type".into(), "application/json".into()),
                    ("retry-after".into(), "2".into()),
                ],
                &error_body(
                    &operation.path,
                    "Service temporarily unavailable; retry shortly",
                ),
            )
            .unwrap_or_else(|e| panic!("{route}: {e}"));
        // A 500 carries only a message.
        contract
            .check(
                &operation.method,
                &operation.path,
                500,
                &[("content-type".into(), "application/json".into())],
                &error_body(&operation.path, "Something broke on the server"),
            )
            .unwrap_or_else(|e| panic!("{route}: {e}"));
    }
}

fn error_body(path: &str, message: &str) -> Value {
    if path.starts_with("/api/") {
        json!({ "success": false, "message": message })
    } else {
        json!({ "message": message })
    }
}

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

fn headers() -> Vec<(String, String)> {
    JSON.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The checks the harness runs on every response refuse what breaks the document: these are
/// the failures a test would meet.
#[test]
fn the_response_check_refuses_what_the_document_does_not_describe() {
    let contract = HttpContract::get();
    let ice = json!([{ "urls": ["stun:127.0.0.1:3478"] }]);
    let good = json!({ "success": true, "roomId": "r", "signalingUrl": "ws://127.0.0.1:1", "iceServers": ice });
    contract
        .check("POST", "/api/find-match", 200, &headers(), &good)
        .unwrap();

    let mut leaky = good.clone();
    leaky["hostId"] = json!("secret");
    let error = contract
        .check("POST", "/api/find-match", 200, &headers(), &leaky)
        .unwrap_err();
    assert!(error.contains("hostId"), "{error}");

    let error = contract
        .check(
            "POST",
            "/api/find-match",
            404,
            &headers(),
            &json!({ "message": "No available hosts" }),
        )
        .unwrap_err();
    assert!(
        error.contains("success"),
        "matchmaking errors carry success: {error}"
    );

    let error = contract
        .check(
            "GET",
            "/getRoomId?urlPath=x",
            418,
            &headers(),
            &json!({ "message": "teapot" }),
        )
        .unwrap_err();
    assert!(error.contains("documents only"), "{error}");

    let error = contract
        .check(
            "GET",
            "/getRoomId",
            200,
            &[("content-type".into(), "text/plain".into())],
            &json!("hello"),
        )
        .unwrap_err();
    assert!(error.contains("content-type"), "{error}");

    let error = contract
        .check(
            "GET",
            "/nowhere",
            200,
            &headers(),
            &json!({ "message": "x" }),
        )
        .unwrap_err();
    assert!(error.contains("no operation"), "{error}");
    contract
        .check(
            "GET",
            "/nowhere",
            404,
            &headers(),
            &json!({ "message": "Not Found" }),
        )
        .unwrap();

    // A TURN entry without its credential, a room answer without `id`.
    let error = contract
        .check(
            "PATCH",
            "/claimRoom",
            200,
            &headers(),
            &json!({ "roomId": "r", "signalingUrl": "ws://x", "iceServers": [{ "urls": ["turn:x"], "username": "1:r" }] }),
        )
        .unwrap_err();
    assert!(
        error.contains("id") && error.contains("credential"),
        "{error}"
    );

    // Path templates match their parameters.
    contract
        .check(
            "DELETE",
            "/rooms/abc",
            200,
            &headers(),
            &json!({ "message": "Room ended", "roomId": "abc" }),
        )
        .unwrap();
}

#[test]
fn the_frame_check_refuses_what_the_document_does_not_describe() {
    let frames = FrameContract::get();
    for good in [
        json!({ "type": "identified", "id": "a", "roomId": "r" }),
        json!({ "type": "error", "action": "identify", "status": 400, "message": "Missing valid type property" }),
        json!({ "type": "pong" }),
        json!({ "type": "clientDisconnect", "clientId": "a" }),
        json!({ "type": "sfuDisconnect", "sfuId": "r" }),
        json!({ "type": "producer", "sender": "a", "description": { "type": "offer", "sdp": "v=0" }, "anything": [1] }),
        json!({ "type": "session", "id": "s", "env": { "A": "1" }, "args": ["--x"], "ttl": null }),
    ] {
        frames
            .check(&good)
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, why) in [
        (
            json!({ "type": "error", "action": "identify", "status": 418, "message": "x" }),
            "418",
        ),
        (
            json!({ "type": "error", "action": "identify", "status": 400 }),
            "message",
        ),
        (json!({ "type": "identified", "id": "a" }), "roomId"),
        (json!({ "type": "producer", "description": {} }), "sender"),
        (json!({ "type": "welcome" }), "welcome"),
        (
            json!({ "message": "Forbidden", "connectionId": "c" }),
            "no string `type`",
        ),
        (json!({ "type": "pong", "extra": 1 }), "extra"),
    ] {
        let error = frames.check(&bad).expect_err(&bad.to_string());
        assert!(error.contains(why), "{bad}: {error}");
    }
}
