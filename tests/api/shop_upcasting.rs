//! A stored v1 `CustomerRegistered` (no email) loads and projects as v2.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use crate::shop_helpers::*;

#[tokio::test]
async fn a_v1_customer_registered_inserted_as_raw_json_loads_and_projects_with_no_email() {
    let app = spawn_app().await;
    let id = Uuid::now_v7();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, \
             schema_version, payload, metadata, recorded_at) VALUES ('{}', 'Customer', '{id}', 1, \
             'CustomerRegistered', 1, '{{\"name\": \"Old Timer\"}}', \
             '{{\"correlation_id\": \"{}\"}}', now())",
            Uuid::now_v7(),
            Uuid::now_v7()
        ))
        .await
        .unwrap();

    let projected = eventually(Duration::from_secs(10), || async {
        let row = app.gql(CUSTOMER, json!({ "id": id })).await.ok()["customer"].clone();
        row["name"] == "Old Timer" && row["email"].is_null() && row["version"] == 1
    })
    .await;
    assert!(projected, "the v1 customer never reached customers_view");

    // The aggregate loads through the upcaster: the command is accepted.
    let data = app
        .gql(CHANGE_EMAIL, json!({ "input": { "customerId": id, "email": "old@example.com" } }))
        .await
        .ok();
    assert_eq!(data["changeCustomerEmail"]["version"], 2);
    let (_, position) = payload(&data, "changeCustomerEmail");
    let row = app.gql(CUSTOMER, json!({ "id": id, "p": position })).await.ok();
    assert_eq!(row["customer"]["email"], "old@example.com");

    // And an order of the old customer carries the name it was registered with.
    let (product, _) = stocked_product(&app, "Widget", "1.00", 1).await;
    let data = create_order(&app, &id.to_string(), &[(&product, 1)]).await.ok();
    let (order, position) = payload(&data, "createOrder");
    let customer = order_at(&app, &order, &position).await["customer"].clone();
    assert_eq!(customer, json!({ "id": id, "name": "Old Timer", "email": "old@example.com" }));
    app.stop().await;
}
