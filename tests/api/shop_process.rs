//! The shipping process manager is idempotent: replaying it appends nothing.

use std::sync::Arc;

use eventfold::es::command::{CommandExecutor, CommandSettings};
use eventfold::es::envelope::Position;
use eventfold::es::projector::Projection;
use eventfold::es::store::EventStore;
use eventfold::infra::event_store::SeaEventStore;
use eventfold::processes::ShippingProcess;
use sea_orm::TransactionTrait;
use serde_json::json;

use crate::helpers::*;
use crate::shop_helpers::*;

#[tokio::test]
async fn replaying_the_shipping_process_from_the_start_changes_nothing() {
    let app = spawn_app().await;
    let (_, _, order, _) = confirmed_order(&app).await;
    let data = app.gql(SHIP, json!({ "input": { "orderId": order, "carrier": "DHL" } })).await.ok();
    let (shipment, _) = payload(&data, "createShipment");
    for status in ["IN_TRANSIT", "DELIVERED"] {
        let input = json!({ "input": { "shipmentId": shipment, "status": status } });
        app.gql(SHIPMENT_STATUS, input).await.ok();
    }
    order_with_status(&app, &order, "DELIVERED").await;
    let before = app.event_count().await;

    // A second process manager over the same store, from position zero, as
    // after a lost checkpoint or a rebuild.
    let db = eventfold::infra::db::connect(&app.database_url, 4).await.unwrap();
    let store = Arc::new(SeaEventStore::new(db.clone()));
    let upcasters = Arc::new(eventfold::domain::upcasters());
    let commands = Arc::new(CommandExecutor::new(
        store.clone(),
        upcasters.clone(),
        CommandSettings::default(),
    ));
    // Feed every event to the process manager, twice, bypassing any
    // checkpoint: a true replay.
    let process = ShippingProcess { upcasters, commands };
    let mut replayed = 0;
    for _ in 0..2 {
        let mut checkpoint = Position::START;
        loop {
            let batch = store.read_committed(checkpoint, 500).await.unwrap();
            let Some(last) = batch.last().map(|e| e.position) else { break };
            let txn = db.begin().await.unwrap();
            for event in &batch {
                process.apply(&txn, event).await.unwrap();
                replayed += 1;
            }
            txn.commit().await.unwrap();
            checkpoint = last;
        }
    }
    assert!(replayed > 0, "the replay read the log");
    assert_eq!(app.event_count().await, before, "the replay appended events");
    let order = app.gql(ORDER, json!({ "id": order })).await.ok()["order"].clone();
    // Created, confirmed, shipment created, shipped, delivered.
    assert_eq!((order["status"].as_str(), order["version"].as_i64()), (Some("DELIVERED"), Some(5)));
    let shipped = app
        .scalar_i64(
            "SELECT COUNT(*) FROM events WHERE event_type IN ('OrderShipped', 'OrderDelivered')",
        )
        .await;
    assert_eq!(shipped, 2);
    app.stop().await;
}
