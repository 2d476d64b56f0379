//! Every refused shop command answers with its code and appends nothing.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::shop_helpers::*;

#[tokio::test]
async fn invalid_shop_input_is_a_validation_error_and_appends_nothing() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 5).await;
    let v = "VALIDATION_ERROR";
    refused(&app, REGISTER_CUSTOMER, json!({ "name": " ", "email": "a@b.co" }), v).await;
    refused(&app, REGISTER_CUSTOMER, json!({ "name": "Bob", "email": "bob" }), v).await;
    refused(&app, CHANGE_EMAIL, json!({ "customerId": customer, "email": "x@" }), v).await;
    for price in ["0", "-1", "0.001", "abc"] {
        refused(&app, REGISTER_PRODUCT, json!({ "name": "P", "price": price }), v).await;
    }
    refused(&app, REGISTER_PRODUCT, json!({ "name": "", "price": "1" }), v).await;
    for amount in [0, -1, 1_000_001] {
        let input = json!({ "productId": product, "amount": amount, "reason": "r" });
        refused(&app, INCREASE, input, v).await;
    }
    refused(&app, INCREASE, json!({ "productId": product, "amount": 1, "reason": " " }), v).await;
    let order = |items: Value| json!({ "customerId": customer, "items": items });
    refused(&app, CREATE_ORDER, order(json!([])), v).await;
    refused(&app, CREATE_ORDER, order(json!([{ "productId": product, "quantity": 0 }])), v).await;
    refused(&app, CREATE_ORDER, order(json!([{ "productId": product, "quantity": -2 }])), v).await;
    let twice =
        json!([{ "productId": product, "quantity": 1 }, { "productId": product, "quantity": 1 }]);
    refused(&app, CREATE_ORDER, order(twice), v).await;
    let data = create_order(&app, &customer, &[(&product, 1)]).await.ok();
    let (order_id, _) = payload(&data, "createOrder");
    refused(&app, CANCEL, json!({ "orderId": order_id, "reason": "" }), v).await;
    refused(&app, CONFIRM, json!({ "orderId": order_id, "expectedVersion": -1 }), v).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_customers_products_orders_and_shipments_are_not_found_and_append_nothing() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 5).await;
    let ghost = Uuid::now_v7().to_string();
    let n = "NOT_FOUND";
    refused(&app, CHANGE_EMAIL, json!({ "customerId": ghost, "email": "a@b.co" }), n).await;
    refused(&app, INCREASE, json!({ "productId": ghost, "amount": 1, "reason": "r" }), n).await;
    refused(&app, DECREASE, json!({ "productId": ghost, "amount": 1, "reason": "r" }), n).await;
    let line = |id: &str| json!([{ "productId": id, "quantity": 1 }]);
    refused(&app, CREATE_ORDER, json!({ "customerId": ghost, "items": line(&product) }), n).await;
    refused(&app, CREATE_ORDER, json!({ "customerId": customer, "items": line(&ghost) }), n).await;
    refused(&app, CONFIRM, json!({ "orderId": ghost }), n).await;
    refused(&app, CANCEL, json!({ "orderId": ghost, "reason": "r" }), n).await;
    refused(&app, INVOICE, json!({ "orderId": ghost }), n).await;
    refused(&app, SHIP, json!({ "orderId": ghost, "carrier": "DHL" }), n).await;
    refused(&app, SHIPMENT_STATUS, json!({ "shipmentId": ghost, "status": "IN_TRANSIT" }), n).await;
    for (query, name) in [(CUSTOMER, "customer"), (PRODUCT, "product"), (ORDER, "order")] {
        assert!(app.gql(query, json!({ "id": ghost })).await.ok()[name].is_null());
    }
    app.stop().await;
}

#[tokio::test]
async fn commands_out_of_order_are_invalid_state_or_insufficient_stock_and_append_nothing() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 5).await;
    let i = "INVALID_STATE";
    refused(
        &app,
        DECREASE,
        json!({ "productId": product, "amount": 6, "reason": "r" }),
        "INSUFFICIENT_STOCK",
    )
    .await;
    let data = create_order(&app, &customer, &[(&product, 1)]).await.ok();
    let (order, _) = payload(&data, "createOrder");
    refused(&app, INVOICE, json!({ "orderId": order }), i).await;
    refused(&app, SHIP, json!({ "orderId": order, "carrier": "DHL" }), i).await;
    app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
    refused(&app, CONFIRM, json!({ "orderId": order }), i).await;
    refused(&app, SHIP, json!({ "orderId": order, "carrier": " " }), "VALIDATION_ERROR").await;
    app.gql(INVOICE, json!({ "input": { "orderId": order } })).await.ok();
    refused(&app, INVOICE, json!({ "orderId": order }), i).await;
    let data = app.gql(SHIP, json!({ "input": { "orderId": order, "carrier": "DHL" } })).await.ok();
    let (shipment, _) = payload(&data, "createShipment");
    refused(&app, SHIP, json!({ "orderId": order, "carrier": "UPS" }), i).await;
    let status = |s: &str| json!({ "shipmentId": shipment, "status": s });
    refused(&app, SHIPMENT_STATUS, status("DELIVERED"), i).await;
    let before = app.event_count().await;
    app.gql(SHIPMENT_STATUS, json!({ "input": status("CREATED") })).await.ok();
    assert_eq!(app.event_count().await, before, "the same status again is a no-op");
    refused(&app, REGISTER_CUSTOMER, json!({ "name": "Ada", "email": "a@b.co", "commandId": Uuid::now_v7(), "expectedVersion": 1 }), "CONCURRENCY_CONFLICT").await;
    app.stop().await;
}
