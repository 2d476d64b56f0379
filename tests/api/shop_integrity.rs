//! An order with an invoice or a shipment cannot be cancelled: one step at a
//! time, and when `cancelOrder` races `createShipment` or `issueInvoice`
//! (both sent at the same instant), never both succeed, and the stored
//! events say the same as the answers.

use std::collections::HashSet;

use eventfold::commands::fulfilment::shipment_id_for;
use futures::future::join_all;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
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
    fn query(self) -> &'static str {
        match self {
            Rival::Shipment => SHIP,
            Rival::Invoice => INVOICE,
        }
    }

    fn input(self, order: &str) -> Value {
        match self {
            Rival::Shipment => json!({ "orderId": order, "carrier": "DHL" }),
            Rival::Invoice => json!({ "orderId": order }),
        }
    }

    /// The mutation's field, and what the error messages and the order
    /// view call the rival's result.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Rival::Shipment => ("createShipment", "shipment", "shipping"),
            Rival::Invoice => ("issueInvoice", "invoice", "invoice"),
        }
    }

    async fn send(self, app: &TestApp, order: &str) -> Gql {
        app.gql(self.query(), json!({ "input": self.input(order) })).await
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

/// One step at a time: `rival` succeeds on a confirmed order; retried with
/// its `commandId` it answers the same and appends nothing; a second one is
/// refused; and so is cancelling the order, naming the rival's result.
async fn assert_rival_ends_cancellation(rival: Rival) {
    let (field, noun, view_field) = rival.names();
    let app = spawn_app().await;
    let (_, _, order, _) = confirmed_order(&app).await;
    let mut input = rival.input(&order);
    input["commandId"] = json!(Uuid::now_v7());
    let first = app.gql(rival.query(), json!({ "input": input })).await.ok();
    let before = app.event_count().await;
    let retry = app.gql(rival.query(), json!({ "input": input })).await.ok();
    assert_eq!(retry, first, "the retry answers the first result");
    assert_eq!(app.event_count().await, before, "the retry appended events");
    refused(&app, rival.query(), rival.input(&order), "INVALID_STATE").await;

    let input = json!({ "orderId": order, "reason": "changed my mind" });
    let res = refused(&app, CANCEL, input, "INVALID_STATE").await;
    let message = res.errors[0]["message"].as_str().unwrap();
    assert!(message.contains(noun) && message.contains("cancelled"), "{message}");
    // Created, confirmed, and the rival recorded: the view follows the stream.
    let position = first[field]["position"].as_str().unwrap();
    let view = order_at(&app, &order, position).await;
    assert_eq!((view["status"].as_str(), view["version"].as_i64()), (Some("CONFIRMED"), Some(3)));
    assert!(view[view_field]["id"].is_string(), "{view}");
    app.stop().await;
}

#[tokio::test]
async fn an_invoiced_order_cannot_be_cancelled_and_a_retried_invoice_appends_nothing() {
    assert_rival_ends_cancellation(Rival::Invoice).await;
}

#[tokio::test]
async fn an_order_with_a_shipment_cannot_be_cancelled_and_a_retried_shipment_appends_nothing() {
    assert_rival_ends_cancellation(Rival::Shipment).await;
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
