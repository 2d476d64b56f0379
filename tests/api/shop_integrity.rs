//! An order with an invoice or a shipment cannot be cancelled: one step at a
//! time, and when `cancelOrder` races `createShipment` or `issueInvoice`
//! (both sent at the same instant), never both succeed, and the stored
//! events say the same as the answers.

use std::collections::HashSet;

use eventfold::commands::fulfilment::shipment_id_for;
use futures::future::join_all;
use sea_orm::EntityTrait;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use crate::shop_helpers::*;

/// Orders raced per test.
const RACES: usize = 200;
/// Orders created, or races run, at once.
const WAVE: usize = 25;

/// What races a cancellation.
#[derive(Debug, Clone, Copy)]
enum Rival {
    Shipment,
    Invoice,
}

impl Rival {
    async fn send(self, app: &TestApp, order: &str) -> Gql {
        match self {
            Rival::Shipment => {
                app.gql(SHIP, json!({ "input": { "orderId": order, "carrier": "DHL" } })).await
            }
            Rival::Invoice => app.gql(INVOICE, json!({ "input": { "orderId": order } })).await,
        }
    }

    /// The events that record the rival's success: on its own stream, and
    /// on the order's.
    fn stored(self, order: Uuid) -> [(String, Uuid, String); 2] {
        let (stream_type, stream_id, event_type, on_order) = match self {
            Rival::Shipment => {
                ("Shipment", shipment_id_for(order), "ShipmentCreated", "OrderShipmentCreated")
            }
            Rival::Invoice => ("Invoice", order, "InvoiceIssued", "OrderInvoiced"),
        };
        [
            (stream_type.into(), stream_id, event_type.into()),
            ("Order".into(), order, on_order.into()),
        ]
    }
}

async fn cancel(app: &TestApp, order: &str) -> Gql {
    app.gql(CANCEL, json!({ "input": { "orderId": order, "reason": "changed my mind" } })).await
}

/// `count` confirmed orders of one customer, spread over a few products.
async fn confirmed_orders(app: &TestApp, count: usize) -> Vec<String> {
    let (customer, _) = register_customer(app, "Ada", "ada@example.com").await;
    let mut products = Vec::new();
    for n in 0..10 {
        products.push(stocked_product(app, &format!("Widget {n}"), "9.99", count as i32).await.0);
    }
    let mut orders = Vec::with_capacity(count);
    for wave in (0..count).collect::<Vec<_>>().chunks(WAVE) {
        let placed = join_all(wave.iter().map(|&n| {
            let (customer, product) = (&customer, &products[n % products.len()]);
            async move {
                let data = create_order(app, customer, &[(product, 1)]).await.ok();
                let (order, _) = payload(&data, "createOrder");
                app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
                order
            }
        }))
        .await;
        orders.extend(placed);
    }
    orders
}

/// (stream type, stream id, event type) of every stored event.
async fn stored_events(app: &TestApp) -> HashSet<(String, Uuid, String)> {
    let rows = entity::events::Entity::find().all(&app.db).await.unwrap();
    rows.into_iter().map(|e| (e.stream_type, e.stream_id, e.event_type)).collect()
}

/// Races `cancelOrder` against `rival` on `RACES` confirmed orders: never
/// both succeed, the loser is `INVALID_STATE`, and the events agree.
async fn assert_races_settle(app: &TestApp, rival: Rival) {
    let orders = confirmed_orders(app, RACES).await;
    let mut answers = Vec::with_capacity(RACES);
    for wave in orders.chunks(WAVE) {
        let raced = join_all(wave.iter().map(|order| async move {
            let (cancelled, rivalled) = tokio::join!(cancel(app, order), rival.send(app, order));
            (order.clone(), cancelled, rivalled)
        }))
        .await;
        answers.extend(raced);
    }
    let both = answers.iter().filter(|(_, c, r)| c.errors.is_empty() && r.errors.is_empty());
    let both = both.count();
    eprintln!("{rival:?}: both succeeded in {both} of {RACES} races");
    assert_eq!(both, 0, "cancelOrder and {rival:?} both succeeded in {both} of {RACES} races");

    let stored = stored_events(app).await;
    for (order, cancelled, rivalled) in &answers {
        let id: Uuid = order.parse().unwrap();
        let (cancel_ok, rival_ok) = (cancelled.errors.is_empty(), rivalled.errors.is_empty());
        assert!(cancel_ok != rival_ok, "{order}: exactly one wins: {cancelled:?} {rivalled:?}");
        let loser = if cancel_ok { rivalled } else { cancelled };
        assert_eq!(loser.code(), Some("INVALID_STATE"), "{order}: {loser:?}");
        let was_cancelled = stored.contains(&("Order".into(), id, "OrderCancelled".into()));
        let [own, on_order] = rival.stored(id);
        let rival_stored = (stored.contains(&own), stored.contains(&on_order));
        let expected = (cancel_ok, (rival_ok, rival_ok));
        assert_eq!((was_cancelled, rival_stored), expected, "{order}: stored events");
    }
}

/// Sends `query` with `input` and checks it is refused with `code` and
/// appends nothing.
async fn refused(app: &TestApp, query: &str, input: serde_json::Value, code: &str) -> Gql {
    let before = app.event_count().await;
    let res = app.gql(query, json!({ "input": input })).await;
    assert_eq!(res.code(), Some(code), "{input}: {res:?}");
    assert_eq!(app.event_count().await, before, "{input} appended events");
    res
}

#[tokio::test]
async fn an_invoiced_order_cannot_be_cancelled_and_a_retried_invoice_appends_nothing() {
    let app = spawn_app().await;
    let (_, _, order, _) = confirmed_order(&app).await;
    let command_id = Uuid::now_v7();
    let input = json!({ "input": { "orderId": order, "commandId": command_id } });
    let first = app.gql(INVOICE, input.clone()).await.ok();
    let before = app.event_count().await;
    assert_eq!(app.gql(INVOICE, input).await.ok(), first, "the retry answers the first result");
    assert_eq!(app.event_count().await, before, "the retry appended events");
    refused(&app, INVOICE, json!({ "orderId": order }), "INVALID_STATE").await;

    let res = refused(&app, CANCEL, json!({ "orderId": order, "reason": "r" }), "INVALID_STATE");
    let message = res.await.errors[0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("invoice") && message.contains("cancelled"), "{message}");
    // Created, confirmed, invoiced: the order view follows the order stream.
    let position = first["issueInvoice"]["position"].as_str().unwrap();
    let view = order_at(&app, &order, position).await;
    assert_eq!((view["status"].as_str(), view["version"].as_i64()), (Some("CONFIRMED"), Some(3)));
    assert!(view["invoice"]["id"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn an_order_with_a_shipment_cannot_be_cancelled_and_a_retried_shipment_appends_nothing() {
    let app = spawn_app().await;
    let (_, _, order, _) = confirmed_order(&app).await;
    let command_id = Uuid::now_v7();
    let input = json!({ "input": { "orderId": order, "carrier": "DHL", "commandId": command_id } });
    let first = app.gql(SHIP, input.clone()).await.ok();
    let before = app.event_count().await;
    assert_eq!(app.gql(SHIP, input).await.ok(), first, "the retry answers the first result");
    assert_eq!(app.event_count().await, before, "the retry appended events");
    refused(&app, SHIP, json!({ "orderId": order, "carrier": "UPS" }), "INVALID_STATE").await;

    let res = refused(&app, CANCEL, json!({ "orderId": order, "reason": "r" }), "INVALID_STATE");
    let message = res.await.errors[0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("shipment") && message.contains("cancelled"), "{message}");
    let position = first["createShipment"]["position"].as_str().unwrap();
    let view = order_at(&app, &order, position).await;
    assert_eq!((view["status"].as_str(), view["version"].as_i64()), (Some("CONFIRMED"), Some(3)));
    assert_eq!(view["shipping"]["status"], "CREATED");
    app.stop().await;
}

#[tokio::test]
async fn cancelling_racing_a_shipment_never_both_succeed_on_postgres() {
    let app = spawn_app().await;
    assert_races_settle(&app, Rival::Shipment).await;
    app.stop().await;
}

#[tokio::test]
async fn cancelling_racing_an_invoice_never_both_succeed_on_postgres() {
    let app = spawn_app().await;
    assert_races_settle(&app, Rival::Invoice).await;
    app.stop().await;
}

#[tokio::test]
async fn cancelling_racing_a_shipment_never_both_succeed_embedded() {
    let app = spawn_embedded().await;
    assert_races_settle(&app, Rival::Shipment).await;
    app.stop().await;
}

#[tokio::test]
async fn cancelling_racing_an_invoice_never_both_succeed_embedded() {
    let app = spawn_embedded().await;
    assert_races_settle(&app, Rival::Invoice).await;
    app.stop().await;
}
