//! Correlation and causation: every event names the business transaction
//! it belongs to and what caused it; `eventsByCorrelation` lists one
//! transaction across streams.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{spawn_secured, token};
use crate::helpers::*;
use crate::shop_helpers::*;

const BY_CORRELATION: &str = "query($id: String!, $first: Int, $after: String) { \
    eventsByCorrelation(id: $id, first: $first, after: $after) { \
    edges { cursor node { position eventId streamType streamId eventType correlationId causationId } } \
    pageInfo { hasNextPage } } }";

/// A GraphQL request with an `X-Correlation-Id` header: the status, the
/// echoed header and the body.
async fn gql_correlated(
    app: &TestApp,
    bearer: &str,
    correlation: &str,
    query: &str,
    variables: Value,
) -> (u16, Option<String>, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .header("x-correlation-id", correlation)
        .bearer_auth(bearer)
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let echoed =
        response.headers().get("x-correlation-id").map(|v| v.to_str().expect("ASCII").to_owned());
    (status, echoed, response.json().await.expect("JSON body"))
}

/// The events of `correlation` once the audit log holds at least `count`.
async fn chain(app: &TestApp, correlation: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let vars = json!({ "id": correlation, "first": 100 });
        let data = app.gql(BY_CORRELATION, vars).await.ok();
        let edges = data["eventsByCorrelation"]["edges"].as_array().cloned().unwrap_or_default();
        if edges.len() >= count {
            return edges.into_iter().map(|e| e["node"].clone()).collect();
        }
        if tokio::time::Instant::now() >= deadline {
            let p = app.gql("{ projections { name position lag status } }", json!({})).await;
            panic!("{count} events never listed: {edges:#?}; projections: {:?}", p.data);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_process_managers_order_command_is_caused_by_the_shipment_event_and_keeps_its_correlation()
 {
    let app = spawn_secured().await;
    let clerk = token("clerk", Some("clerk-1".into()));
    let (_, _, order, _) = confirmed_order(&app).await;
    let data = app.gql(SHIP, json!({ "input": { "orderId": order, "carrier": "DHL" } })).await.ok();
    let (shipment, _) = payload(&data, "createShipment");
    let correlation = format!("delivery-{}", Uuid::new_v4().simple());
    // Each change waits for the order to follow, so the log has a fixed
    // order to compare with.
    for (status, order_status) in [("IN_TRANSIT", "SHIPPED"), ("DELIVERED", "DELIVERED")] {
        let input = json!({ "input": { "shipmentId": shipment, "status": status } });
        let (code, echoed, body) =
            gql_correlated(&app, &clerk, &correlation, SHIPMENT_STATUS, input).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(echoed.as_deref(), Some(correlation.as_str()));
        let followed = eventually(Duration::from_secs(30), || async {
            let data = app.gql(ORDER, json!({ "id": order })).await.ok();
            data["order"]["status"] == order_status
        })
        .await;
        assert!(followed, "the order never became {order_status}");
    }

    // Two shipment changes, each followed by the order command the process
    // manager ran for it: shipped, then delivered.
    let events = chain(&app, &correlation, 4).await;
    let kinds: Vec<_> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ShipmentStatusChanged", "OrderShipped", "ShipmentStatusChanged", "OrderDelivered"]
    );
    for pair in events.chunks(2) {
        let (cause, effect) = (&pair[0], &pair[1]);
        assert_eq!(cause["streamId"], shipment);
        assert_eq!(effect["streamId"], order);
        assert_eq!(effect["causationId"], cause["eventId"], "{effect}");
        assert_eq!(effect["correlationId"], correlation);
        assert_eq!(cause["correlationId"], correlation);
    }
    // The same holds in the stored metadata itself.
    let stored = app
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM events WHERE metadata->>'correlation_id' = '{correlation}'"
        ))
        .await;
    assert_eq!(stored, 4);

    // Paged one by one, the chain comes in the same order.
    let mut after: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let vars = json!({ "id": correlation, "first": 1, "after": after });
        let data = app.gql(BY_CORRELATION, vars).await.ok();
        let connection = &data["eventsByCorrelation"];
        let Some(edge) = connection["edges"].as_array().unwrap().first().cloned() else { break };
        paged.push(edge["node"].clone());
        after = edge["cursor"].as_str().map(str::to_owned);
        if connection["pageInfo"]["hasNextPage"] == false {
            break;
        }
    }
    assert_eq!(paged, events);
    app.stop().await;
}

#[tokio::test]
async fn a_correlation_header_on_a_mutation_is_stored_and_found_and_the_command_id_is_its_cause() {
    let app = spawn_secured().await;
    let admin = app.token.clone().unwrap();
    let (account, _) = open_account(&app, "Ada", "10", "0").await;
    let correlation = format!("req-{}", Uuid::new_v4());
    let command_id = Uuid::now_v7();
    let input =
        json!({ "input": { "accountId": account, "amount": "5", "commandId": command_id } });
    let (status, echoed, body) = gql_correlated(&app, &admin, &correlation, DEPOSIT, input).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echoed.as_deref(), Some(correlation.as_str()));

    let stored = app
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM events WHERE metadata->>'correlation_id' = '{correlation}' \
             AND metadata->>'causation_id' = '{command_id}'"
        ))
        .await;
    assert_eq!(stored, 1, "the deposit's metadata names the header and the command");
    let events = chain(&app, &correlation, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["eventType"], "MoneyDeposited");
    assert_eq!(events[0]["causationId"], command_id.to_string());

    // streamEvents shows both too; a command without commandId has no cause
    // but still a (new) correlation id.
    let history = app
        .gql(
            "query($id: UUID!) { streamEvents(streamType: \"BankAccount\", streamId: $id) \
             { edges { node { eventType correlationId causationId } } } }",
            json!({ "id": account }),
        )
        .await;
    let history = history.ok()["streamEvents"]["edges"].clone();
    let opened = &history[0]["node"];
    assert!(opened["causationId"].is_null(), "{opened}");
    assert!(opened["correlationId"].as_str().is_some_and(|c| c != correlation), "{opened}");
    assert_eq!(history[1]["node"]["correlationId"], correlation);
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_correlation_header_is_refused_and_appends_nothing() {
    let app = spawn_secured().await;
    let admin = app.token.clone().unwrap();
    let (account, _) = open_account(&app, "Ada", "10", "0").await;
    let before = app.event_count().await;
    let too_long = "x".repeat(129);
    for bad in ["two words", too_long.as_str()] {
        let input = json!({ "input": { "accountId": account, "amount": "5" } });
        let (status, _, body) = gql_correlated(&app, &admin, bad, DEPOSIT, input).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION_ERROR", "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("X-Correlation-Id"));
    }
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn only_admins_list_events_by_correlation() {
    let app = spawn_secured().await;
    let customer = token("customer", Some(Uuid::now_v7().to_string()));
    let clerk = token("clerk", Some("clerk-1".into()));
    let vars = json!({ "id": "anything" });
    for (bearer, code) in
        [(None, "UNAUTHENTICATED"), (Some(&customer), "FORBIDDEN"), (Some(&clerk), "FORBIDDEN")]
    {
        let (_, gql) = gql_as(&app, bearer.map(String::as_str), BY_CORRELATION, vars.clone()).await;
        assert_eq!(gql.code(), Some(code), "{:?}", gql.errors);
    }
    let (_, gql) = gql_as(&app, app.token.as_deref(), BY_CORRELATION, vars).await;
    assert_eq!(gql.ok()["eventsByCorrelation"]["edges"], json!([]));
    let (_, gql) =
        gql_as(&app, app.token.as_deref(), BY_CORRELATION, json!({ "id": "x", "after": "nope" }))
            .await;
    assert_eq!(gql.code(), Some("VALIDATION_ERROR"));
    app.stop().await;
}

#[tokio::test]
async fn a_correlation_header_on_the_websocket_upgrade_correlates_its_mutations() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let app = spawn_app().await;
    let (account, _) = open_account(&app, "Ada", "10", "0").await;
    let correlation = format!("ws-{}", Uuid::new_v4());
    let mut request = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    headers.insert("X-Correlation-Id", HeaderValue::from_str(&correlation).unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("upgraded");
    let send = |message: Value| Message::Text(message.to_string().into());
    socket.send(send(json!({ "type": "connection_init", "payload": {} }))).await.unwrap();
    for id in ["1", "2"] {
        let payload = json!({ "query": DEPOSIT, "variables": { "input": { "accountId": account, "amount": "1" } } });
        socket
            .send(send(json!({ "id": id, "type": "subscribe", "payload": payload })))
            .await
            .unwrap();
    }
    // Both operations complete (ack, two results, two completes, in any order).
    let mut completed = 0;
    while completed < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        assert!(message["payload"]["errors"].is_null(), "{message}");
        completed += usize::from(message["type"] == "complete");
    }
    let stored = app
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM events WHERE metadata->>'correlation_id' = '{correlation}'"
        ))
        .await;
    assert_eq!(stored, 2, "both deposits over the socket carry the upgrade's correlation id");
    // `after: "0"` is the start of the log here too, as for `events`.
    assert_eq!(chain(&app, &correlation, 2).await.len(), 2);
    let vars = json!({ "id": correlation, "first": 10, "after": "0" });
    let from_start = app.gql(BY_CORRELATION, vars).await.ok();
    assert_eq!(from_start["eventsByCorrelation"]["edges"].as_array().map(Vec::len), Some(2));
    app.stop().await;
}
