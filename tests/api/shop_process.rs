//! The shipping process manager is idempotent: replaying it appends nothing.

use std::sync::Arc;

use eventfold::es::changes::LocalChangeBus;
use eventfold::es::command::{CommandExecutor, CommandSettings};
use eventfold::es::envelope::Position;
use eventfold::infra::event_store::SeaEventStore;
use eventfold::infra::projector_runtime::{ProjectionMonitor, ProjectorRuntime, RuntimeSettings};
use eventfold::projections::ShippingProcess;
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
    let runtime = ProjectorRuntime {
        store,
        read_db: db,
        projection: Arc::new(ShippingProcess { upcasters, commands }),
        changes: Arc::new(LocalChangeBus::new(16)),
        monitor: Arc::new(ProjectionMonitor::default()),
        settings: RuntimeSettings::default(),
    };
    let mut checkpoint = Position::START;
    for _ in 0..2 {
        checkpoint = Position::START;
        runtime.catch_up(&mut checkpoint).await.unwrap();
    }
    assert!(checkpoint > Position::START, "the replay read the log");
    assert_eq!(app.event_count().await, before, "the replay appended events");
    let order = app.gql(ORDER, json!({ "id": order })).await.ok()["order"].clone();
    assert_eq!((order["status"].as_str(), order["version"].as_i64()), (Some("DELIVERED"), Some(4)));
    let shipped = app
        .scalar_i64(
            "SELECT COUNT(*) FROM events WHERE event_type IN ('OrderShipped', 'OrderDelivered')",
        )
        .await;
    assert_eq!(shipped, 2);
    app.stop().await;
}
