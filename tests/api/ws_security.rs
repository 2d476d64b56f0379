//! The WebSocket under authentication and limits: who may subscribe to
//! what, in both protocols, the close codes (4403 bad token, 4408 no
//! `connection_init`, 1009 message too big, 4429 too many subscriptions),
//! allowed origins (for CORS too), and mutations sent over the socket.

use std::collections::HashMap;
use std::time::Duration;

use eventfold::http::ws::CONNECTION_INIT_TIMEOUT;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::auth::{Fixtures, projected_fixtures, spawn_secured, spawn_secured_with, token};
use crate::helpers::*;
use crate::shop_helpers::CHANGE_EMAIL;
use crate::subscriptions::WsClient;

const PRODUCT_CHANGED: &str =
    "subscription($id: UUID!) { productStockChanged(id: $id) { id stock } }";
const ACCOUNT_UPDATED: &str = "subscription($id: UUID!) { accountUpdated(id: $id) { id balance } }";
const ORDER_UPDATED: &str =
    "subscription($id: UUID) { orderUpdated(id: $id) { id customer { id email } } }";
const INCREASE: &str =
    "mutation($input: ChangeStockInput!) { increaseStock(input: $input) { id } }";

impl WsClient {
    /// A connection whose `connection_init` carries `bearer` (under
    /// `key`), acknowledged.
    async fn connect_as(app: &TestApp, legacy: bool, key: &str, bearer: Option<&str>) -> Self {
        let mut ws = WsClient::upgrade(app.addr, legacy, None).await.expect("upgrade");
        let payload = match bearer {
            Some(token) => json!({ key: format!("Bearer {token}") }),
            None => json!({}),
        };
        ws.init(payload).await;
        ws
    }

    /// The protocol messages, then the close code, of a connection the
    /// server closes within `limit`.
    async fn closed_within(&mut self, limit: Duration) -> (Vec<Value>, u16) {
        let deadline = Instant::now() + limit;
        let mut messages = Vec::new();
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("not closed within {limit:?}: {messages:?}"));
            match frame {
                Some(Ok(Message::Text(text))) => {
                    messages.push(serde_json::from_str(&text).unwrap())
                }
                Some(Ok(Message::Close(Some(frame)))) => return (messages, frame.code.into()),
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket failed before its close frame: {e}"),
            }
        }
    }

    /// The first answer to operation `id`, started with `query`
    /// (answers to earlier operations are skipped).
    async fn run(&mut self, id: &str, query: &str, variables: Value) -> Value {
        self.subscribe(id, query, variables).await;
        loop {
            let message = self.next_message().await;
            if message["id"] == id && message["type"] != "complete" {
                return message;
            }
        }
    }

    /// Proves the server still serves this connection: a `ping` it answers
    /// after every message sent before. Returns what came before the pong.
    async fn answers_ping(&mut self) -> Vec<Value> {
        self.send(json!({ "type": "ping" })).await;
        let mut before = Vec::new();
        loop {
            let message = self.next_message().await;
            if message["type"] == "pong" {
                return before;
            }
            before.push(message);
        }
    }
}

/// A subscription's first answer: its row, or the code of its error.
fn outcome(message: &Value) -> Result<&Value, &str> {
    let errors = if message["type"] == "error" {
        &message["payload"]
    } else {
        &message["payload"]["errors"]
    };
    match errors.get(0) {
        Some(error) => Err(error.pointer("/extensions/code").and_then(Value::as_str).unwrap_or("")),
        None => Ok(&message["payload"]["data"]),
    }
}

/// One caller's connection and what each of its subscriptions answered.
struct Session {
    who: &'static str,
    ws: WsClient,
    /// The first result or error of each subscription id.
    first: HashMap<String, Value>,
    /// Every row `orderUpdated` without an id brought.
    orders: Vec<Value>,
}

impl Session {
    fn record(&mut self, message: Value) {
        let (Some(id), Some("next" | "data" | "error")) =
            (message["id"].as_str(), message["type"].as_str())
        else {
            return;
        };
        if id == "orders"
            && let Ok(data) = outcome(&message)
        {
            self.orders.push(data["orderUpdated"].clone());
        }
        self.first.entry(id.to_owned()).or_insert(message);
    }

    /// Records what arrives until the connection has been quiet for `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        while let Some(message) = self.ws.next_within(quiet).await {
            self.record(message);
        }
    }

    /// Records what arrives until a row of `orderUpdated` without an id
    /// shows `email` (at most 10 s).
    async fn until_order_with(&mut self, email: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.orders.iter().any(|o| o["customer"]["email"] == email) {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.ws.next_within(left).await;
            let message =
                message.unwrap_or_else(|| panic!("{}: no order row with {email}", self.who));
            self.record(message);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Rows,
    Refused(&'static str),
}
use Expect::{Refused, Rows};

const UNAUTH: Expect = Refused("UNAUTHENTICATED");
const MISSING: Expect = Refused("NOT_FOUND");

/// One subscription of the matrix.
struct Case<'a> {
    /// Its id on each connection.
    id: &'static str,
    query: &'static str,
    field: &'static str,
    /// The row it follows; `None`: every order.
    row: Option<&'a str>,
    /// For (anonymous, customer, clerk, admin).
    expect: [Expect; 4],
}

fn matrix(fx: &Fixtures) -> Vec<Case<'_>> {
    let case = |id, query, field, row, expect| Case { id, query, field, row, expect };
    vec![
        case("product", PRODUCT_CHANGED, "productStockChanged", Some(&fx.product), [Rows; 4]),
        case(
            "my-account",
            ACCOUNT_UPDATED,
            "accountUpdated",
            Some(&fx.my_account),
            [UNAUTH, Rows, Rows, Rows],
        ),
        case(
            "other-account",
            ACCOUNT_UPDATED,
            "accountUpdated",
            Some(&fx.other_account),
            [UNAUTH, MISSING, Rows, Rows],
        ),
        case(
            "my-order",
            ORDER_UPDATED,
            "orderUpdated",
            Some(&fx.my_order),
            [UNAUTH, Rows, Rows, Rows],
        ),
        case(
            "other-order",
            ORDER_UPDATED,
            "orderUpdated",
            Some(&fx.other_order),
            [UNAUTH, MISSING, Rows, Rows],
        ),
        case("orders", ORDER_UPDATED, "orderUpdated", None, [UNAUTH, Rows, Rows, Rows]),
    ]
}

/// One change to every row the matrix follows, made over HTTP as an admin;
/// an order row changes with its customer's email.
async fn change_everything(app: &TestApp, fx: &Fixtures, round: u32) {
    let changes = [
        (INCREASE, json!({ "input": { "productId": fx.product, "amount": 1, "reason": "count" } })),
        (DEPOSIT, json!({ "input": { "accountId": fx.my_account, "amount": "1" } })),
        (DEPOSIT, json!({ "input": { "accountId": fx.other_account, "amount": "1" } })),
        (
            CHANGE_EMAIL,
            json!({ "input": { "customerId": fx.me, "email": format!("me-{round}@example.com") } }),
        ),
        (
            CHANGE_EMAIL,
            json!({ "input": { "customerId": fx.other, "email": format!("other-{round}@example.com") } }),
        ),
    ];
    for (mutation, variables) in changes {
        app.gql(mutation, variables).await.ok();
    }
}

async fn subscriptions_obey_the_role_table(legacy: bool) {
    let app = spawn_secured().await;
    let fx = projected_fixtures(&app).await;
    let me = fx.my_token();
    let clerk = token("clerk", Some("bob".into()));
    let admin = token("admin", Some("ops".into()));
    // The clerk spells the payload's key in lower case: any case is accepted.
    let callers = [
        ("anonymous", "Authorization", None),
        ("customer", "Authorization", Some(me.as_str())),
        ("clerk", "authorization", Some(clerk.as_str())),
        ("admin", "Authorization", Some(admin.as_str())),
    ];
    let mut sessions = Vec::new();
    for (who, key, bearer) in callers {
        let mut ws = WsClient::connect_as(&app, legacy, key, bearer).await;
        for case in matrix(&fx) {
            ws.subscribe(case.id, case.query, json!({ "id": case.row })).await;
        }
        sessions.push(Session { who, ws, first: HashMap::new(), orders: Vec::new() });
    }
    // Subscribing is not acknowledged: change every row, round after
    // round, until each subscription has answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    while sessions.iter().any(|s| s.first.len() < matrix(&fx).len()) {
        assert!(Instant::now() < deadline, "no answer to some subscriptions within 30 s");
        round += 1;
        change_everything(&app, &fx, round).await;
        for session in &mut sessions {
            session.drain(Duration::from_millis(300)).await;
        }
    }
    let mut failures = Vec::new();
    for case in matrix(&fx) {
        for (session, expect) in sessions.iter().zip(case.expect) {
            let first = &session.first[case.id];
            let ok = match (expect, outcome(first)) {
                (Rows, Ok(data)) => case.row.is_none_or(|row| data[case.field]["id"] == row),
                (Refused(code), Err(got)) => got == code,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{} as {}: expected {expect:?}, got {first}",
                    case.id, session.who
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} wrong answers:\n{}", failures.len(), failures.join("\n"));
    a_customer_following_every_order_sees_only_its_own(&app, &fx, &mut sessions).await;
    app.stop().await;
}

/// Every subscription is registered by now (each has answered). Another
/// customer's order changes first, and the clerk's connection sees that
/// change, so it has been announced to the customer's subscription too;
/// then the customer's own order changes. Until that row arrives, the
/// customer must have seen only its own orders.
async fn a_customer_following_every_order_sees_only_its_own(
    app: &TestApp,
    fx: &Fixtures,
    sessions: &mut [Session],
) {
    let (theirs, mine) =
        (format!("{}@other.example", Uuid::now_v7()), format!("{}@me.example", Uuid::now_v7()));
    app.gql(CHANGE_EMAIL, json!({ "input": { "customerId": fx.other, "email": theirs } }))
        .await
        .ok();
    let clerk = sessions.iter_mut().find(|s| s.who == "clerk").unwrap();
    clerk.until_order_with(&theirs).await;
    app.gql(CHANGE_EMAIL, json!({ "input": { "customerId": fx.me, "email": mine } })).await.ok();
    let customer = sessions.iter_mut().find(|s| s.who == "customer").unwrap();
    customer.until_order_with(&mine).await;
    for order in &customer.orders {
        assert_eq!(order["customer"]["id"], fx.me.to_string(), "another customer's order: {order}");
    }
}

#[tokio::test]
async fn subscriptions_over_graphql_transport_ws_obey_the_role_table() {
    subscriptions_obey_the_role_table(false).await;
}

#[tokio::test]
async fn subscriptions_over_legacy_graphql_ws_obey_the_role_table() {
    subscriptions_obey_the_role_table(true).await;
}

#[tokio::test]
async fn a_bad_token_in_connection_init_closes_with_4403() {
    let app = spawn_secured_with(|c| c.role = eventfold::app::Role::Api).await;
    for legacy in [false, true] {
        for bearer in ["Bearer not.a.jwt", "Basic YWRtaW46YWRtaW4="] {
            let mut ws = WsClient::upgrade(app.addr, legacy, None).await.expect("upgrade");
            let init = json!({ "type": "connection_init", "payload": { "Authorization": bearer } });
            ws.send(init).await;
            let (messages, code) = ws.closed_within(Duration::from_secs(5)).await;
            assert_eq!(code, 4403, "{bearer} (legacy: {legacy})");
            // The legacy protocol has no close codes of its own: it says
            // why in a connection_error first.
            let said =
                messages.iter().map(|m| m["type"].as_str().unwrap_or("")).collect::<Vec<_>>();
            assert_eq!(said, if legacy { vec!["connection_error"] } else { vec![] });
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_connection_without_connection_init_closes_with_4408_after_ten_seconds() {
    assert_eq!(CONNECTION_INIT_TIMEOUT, Duration::from_secs(10));
    let app = spawn_secured_with(|c| c.role = eventfold::app::Role::Api).await;
    let opened = Instant::now();
    let mut silent = WsClient::upgrade(app.addr, false, None).await.expect("upgrade");
    let mut silent_legacy = WsClient::upgrade(app.addr, true, None).await.expect("upgrade");
    let mut initialised = WsClient::connect_as(&app, false, "Authorization", None).await;
    let limit = Duration::from_secs(12);
    let ((_, code), (said, legacy_code)) =
        tokio::join!(silent.closed_within(limit), silent_legacy.closed_within(limit));
    assert!(opened.elapsed() >= CONNECTION_INIT_TIMEOUT, "closed early: {:?}", opened.elapsed());
    assert_eq!((code, legacy_code), (4408, 4408));
    assert_eq!(said[0]["type"], "connection_error");
    assert!(initialised.answers_ping().await.is_empty(), "an initialised connection stays");
    app.stop().await;
}

/// A `subscribe` message of exactly `size` bytes running `{ __typename }`.
fn message_of(size: usize, id: &str) -> String {
    let message = |padding: &str| {
        json!({ "id": id, "type": "subscribe", "payload": { "query": format!("{{ __typename }}{padding}") } })
            .to_string()
    };
    let bare = message("").len();
    assert!(size > bare + 1);
    message(&format!("\n#{}", "x".repeat(size - bare - 3)))
}

#[tokio::test]
async fn a_message_over_max_body_bytes_closes_with_1009() {
    let app = spawn_app_with(|c| {
        c.role = eventfold::app::Role::Api;
        c.max_body_bytes = 2_048;
    })
    .await;
    let mut ws = WsClient::connect(&app, false).await;
    let at_limit = message_of(2_048, "1");
    assert_eq!(at_limit.len(), 2_048);
    ws.socket.send(Message::Text(at_limit.into())).await.unwrap();
    assert_eq!(ws.next_data().await["__typename"], "Query", "a message at the limit runs");
    for size in [2_049, 100_000] {
        let mut ws = WsClient::connect(&app, false).await;
        ws.socket.send(Message::Text(message_of(size, "2").into())).await.unwrap();
        let (said, code) = ws.closed_within(Duration::from_secs(5)).await;
        assert_eq!(code, 1009, "{size} bytes");
        assert!(said.is_empty(), "{size} bytes did not run: {said:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_101st_subscription_on_a_connection_closes_with_4429() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let mut ws = WsClient::connect(&app, false).await;
    // A query is an operation too, until the server completes it.
    ws.subscribe("query", "{ __typename }", json!({})).await;
    assert_eq!(ws.next_data().await["__typename"], "Query");
    assert_eq!(ws.next_message().await["type"], "complete");
    let product = json!({ "id": Uuid::now_v7() });
    for id in 1..=100 {
        ws.subscribe(&id.to_string(), PRODUCT_CHANGED, product.clone()).await;
    }
    assert!(ws.answers_ping().await.is_empty(), "100 subscriptions are allowed");
    // The client completing one frees its place.
    ws.send(json!({ "id": "1", "type": "complete" })).await;
    ws.subscribe("101", PRODUCT_CHANGED, product.clone()).await;
    ws.answers_ping().await;
    ws.subscribe("102", PRODUCT_CHANGED, product).await;
    let (_, code) = ws.closed_within(Duration::from_secs(5)).await;
    assert_eq!(code, 4429);
    app.stop().await;
}

/// The HTTP status of an upgrade carrying `origin`.
async fn upgrade_status(app: &TestApp, origin: Option<&str>) -> u16 {
    match WsClient::upgrade(app.addr, false, origin).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// The `Access-Control-Allow-Origin` of a CORS preflight from `origin`.
async fn cors_allows(app: &TestApp, origin: &str) -> Option<String> {
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    let allowed = response.headers().get("access-control-allow-origin");
    allowed.map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn origins_not_allowed_may_neither_upgrade_nor_read_responses() {
    let app = spawn_secured_with(|c| {
        c.role = eventfold::app::Role::Api;
        c.allowed_origins = vec!["https://shop.example".into(), "http://localhost:3000".into()];
    })
    .await;
    let own = format!("http://{}", app.addr);
    for (origin, status) in [
        (Some("http://evil.example"), 403),
        (Some(own.as_str()), 101),
        (Some("https://shop.example"), 101),
        (Some("http://localhost:3000"), 101),
        (None, 101),
    ] {
        assert_eq!(upgrade_status(&app, origin).await, status, "{origin:?}");
    }
    for (origin, allowed) in
        [("http://evil.example", false), (&own, true), ("https://shop.example", true)]
    {
        let expected = allowed.then(|| origin.to_owned());
        assert_eq!(cors_allows(&app, origin).await, expected, "{origin}");
    }
    app.stop().await;
}

#[tokio::test]
async fn by_default_only_the_servers_own_origin_may_upgrade_but_any_in_open_mode() {
    let secured = spawn_secured_with(|c| c.role = eventfold::app::Role::Api).await;
    let own = format!("http://{}", secured.addr);
    assert_eq!(upgrade_status(&secured, Some("http://evil.example")).await, 403);
    assert_eq!(upgrade_status(&secured, Some("https://shop.example")).await, 403);
    assert_eq!(upgrade_status(&secured, Some(&own)).await, 101);
    secured.stop().await;
    let open = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    assert_eq!(upgrade_status(&open, Some("http://evil.example")).await, 101);
    open.stop().await;
}

#[tokio::test]
async fn operations_over_the_websocket_run_as_the_connections_caller() {
    let app = spawn_secured().await;
    let fx = projected_fixtures(&app).await;
    let me = fx.my_token();
    let mut ws = WsClient::connect_as(&app, false, "Authorization", Some(&me)).await;
    let before = app.event_count().await;
    let theirs = json!({ "input": { "accountId": fx.other_account, "amount": "1" } });
    let refused = ws.run("1", DEPOSIT, theirs).await;
    assert_eq!(outcome(&refused), Err("NOT_FOUND"), "{refused}");
    assert_eq!(app.event_count().await, before, "a refused command appends nothing");
    let mine = json!({ "input": { "accountId": fx.my_account, "amount": "1" } });
    let message = ws.run("2", DEPOSIT, mine).await;
    assert_eq!(outcome(&message).unwrap()["depositMoney"]["id"], fx.my_account.as_str());
    // Introspection is for staff over the socket too.
    let message = ws.run("3", "{ __schema { queryType { name } } }", json!({})).await;
    assert!(message["payload"]["data"]["__schema"].is_null(), "{message}");
    app.stop().await;
}
