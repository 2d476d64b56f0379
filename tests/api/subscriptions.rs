//! Subscriptions over WebSocket, in both protocols async-graphql speaks.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

use crate::helpers::*;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal GraphQL-over-WebSocket client.
pub(crate) struct WsClient {
    pub(crate) socket: Socket,
    pub(crate) legacy: bool,
}

impl WsClient {
    pub(crate) async fn connect(app: &TestApp, legacy: bool) -> Self {
        Self::connect_to(app.addr, legacy).await
    }

    pub(crate) async fn connect_to(addr: std::net::SocketAddr, legacy: bool) -> Self {
        let mut client = Self::upgrade(addr, legacy, None).await.expect("websocket connects");
        client.init(json!({})).await;
        client
    }

    /// The upgrade alone (with `origin` as its `Origin` header), before
    /// any `connection_init`.
    pub(crate) async fn upgrade(
        addr: std::net::SocketAddr,
        legacy: bool,
        origin: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
        let protocol = if legacy { "graphql-ws" } else { "graphql-transport-ws" };
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        if let Some(origin) = origin {
            request.headers_mut().insert("Origin", HeaderValue::from_str(origin).unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(request).await?;
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Ok(WsClient { socket, legacy })
    }

    /// Sends `connection_init` with `payload` and expects the ack.
    pub(crate) async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        let ack = self.next_message().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.unwrap();
    }

    pub(crate) async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } })).await;
    }

    /// The next protocol message (pings answered, keep-alives skipped), within 10 s.
    pub(crate) async fn next_message(&mut self) -> Value {
        self.next_within(Duration::from_secs(10)).await.expect("a websocket message within 10 s")
    }

    /// The next protocol message (pings answered, keep-alives skipped), if
    /// one comes within `limit`.
    pub(crate) async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?
                .expect("socket open")
                .expect("valid frame");
            let Message::Text(text) = message else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("ping") => self.send(json!({ "type": "pong" })).await,
                Some("ka") => {}
                _ => return Some(value),
            }
        }
    }

    /// The payload data of the next `next`/`data` message.
    pub(crate) async fn next_data(&mut self) -> Value {
        let message = self.next_message().await;
        let expected = if self.legacy { "data" } else { "next" };
        assert_eq!(message["type"], expected, "{message}");
        message["payload"]["data"].clone()
    }
}

const ACCOUNT_UPDATED: &str =
    "subscription($id: UUID!) { accountUpdated(id: $id) { id balance version } }";

async fn account_updates_arrive(legacy: bool) {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    let (other, position) = open_account(&app, "Bob", "10", "0").await;
    // Let the projector announce both openings before we listen.
    account_at(&app, &other, &position).await;
    let mut ws = WsClient::connect(&app, legacy).await;
    ws.subscribe("1", ACCOUNT_UPDATED, json!({ "id": id })).await;
    // Subscribing has no acknowledgement in either protocol: give the
    // server a moment to register it. A change to another account first
    // proves the filter.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.gql(DEPOSIT, json!({ "input": { "accountId": other, "amount": "1" } })).await.ok();
    app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "5" } })).await.ok();
    let first = ws.next_data().await;
    assert_eq!(first["accountUpdated"]["id"], id.as_str());
    assert_eq!(first["accountUpdated"]["balance"], "15.00");
    assert_eq!(first["accountUpdated"]["version"], 2);
    app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "3" } })).await.ok();
    let second = ws.next_data().await;
    assert_eq!(second["accountUpdated"]["balance"], "12.00");
    assert_eq!(second["accountUpdated"]["version"], 3);
    app.stop().await;
}

#[tokio::test]
async fn account_updated_pushes_the_row_after_each_change() {
    account_updates_arrive(false).await;
}

#[tokio::test]
async fn account_updated_also_works_over_the_legacy_graphql_ws_protocol() {
    account_updates_arrive(true).await;
}

#[tokio::test]
async fn an_invalid_subscription_gets_a_validation_error() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let mut ws = WsClient::connect(&app, false).await;
    ws.subscribe("1", "subscription { accountUpdated(id: \"x\") { noSuchField } }", json!({}))
        .await;
    let message = ws.next_message().await;
    // async-graphql reports validation failures as a result with errors
    // (then `complete`) rather than an `error` message; accept either.
    let errors = if message["type"] == "error" {
        &message["payload"]
    } else {
        &message["payload"]["errors"]
    };
    assert_eq!(errors[0]["extensions"]["code"], "VALIDATION_ERROR", "{message}");
    assert!(message["payload"]["data"].is_null());
    if message["type"] == "next" {
        assert_eq!(ws.next_message().await["type"], "complete");
    }
    // A well-formed document with a bad argument value fails as a result.
    ws.subscribe("2", "subscription { accountUpdated(id: \"nope\") { id } }", json!({})).await;
    let message = ws.next_message().await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "VALIDATION_ERROR",
        "{message}"
    );
    app.stop().await;
}
