//! The order flow end to end over HTTP, with the process manager.

use serde_json::json;

use crate::helpers::*;
use crate::shop_helpers::*;

#[tokio::test]
async fn the_full_order_flow_shows_invoice_and_shipping_and_ends_delivered() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada Lovelace", "Ada@Example.com").await;
    let (widget, _) = stocked_product(&app, "Widget", "9.99", 10).await;
    let (gadget, _) = stocked_product(&app, "Gadget", "0.50", 5).await;

    let data = create_order(&app, &customer, &[(&widget, 2), (&gadget, 3)]).await.ok();
    assert_eq!(data["createOrder"]["version"], 1);
    let (order_id, position) = payload(&data, "createOrder");
    let order = order_at(&app, &order_id, &position).await;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["total"], "21.48");
    assert_eq!(order["customer"]["name"], "Ada Lovelace");
    assert_eq!(order["customer"]["email"], "ada@example.com");
    assert_eq!(
        order["items"],
        json!([
            { "productId": widget, "productName": "Widget", "quantity": 2, "unitPrice": "9.99" },
            { "productId": gadget, "productName": "Gadget", "quantity": 3, "unitPrice": "0.50" },
        ])
    );
    assert!(order["invoice"].is_null() && order["shipping"].is_null());
    let stock = product_at(&app, &widget, &position).await;
    assert_eq!((stock["stock"].as_i64(), stock["reserved"].as_i64()), (Some(8), Some(2)));

    let data = app.gql(CONFIRM, json!({ "input": { "orderId": order_id } })).await.ok();
    assert_eq!(data["confirmOrder"]["version"], 2);

    let data = app.gql(INVOICE, json!({ "input": { "orderId": order_id } })).await.ok();
    let (invoice_stream, position) = payload(&data, "issueInvoice");
    assert_eq!(invoice_stream, order_id, "the invoice stream is keyed by the order");
    let order = order_at(&app, &order_id, &position).await;
    assert_eq!(order["status"], "CONFIRMED");
    let invoice = &order["invoice"];
    let invoice_id = invoice["id"].as_str().unwrap();
    assert_eq!(invoice["url"], format!("http://127.0.0.1:8000/invoices/{invoice_id}.pdf"));
    assert!(invoice["issuedAt"].as_str().is_some());

    let data =
        app.gql(SHIP, json!({ "input": { "orderId": order_id, "carrier": "DHL" } })).await.ok();
    let (shipment_id, position) = payload(&data, "createShipment");
    let order = order_at(&app, &order_id, &position).await;
    let shipping = &order["shipping"];
    assert_eq!(shipping["id"], shipment_id.as_str());
    assert_eq!(shipping["carrier"], "DHL");
    assert_eq!(shipping["status"], "CREATED");
    assert!(shipping["trackingCode"].as_str().unwrap().starts_with("EF"));

    let status = |status: &str| json!({ "input": { "shipmentId": shipment_id, "status": status } });
    app.gql(SHIPMENT_STATUS, status("IN_TRANSIT")).await.ok();
    let order = order_with_status(&app, &order_id, "SHIPPED").await;
    assert_eq!(order["shipping"]["status"], "IN_TRANSIT");
    app.gql(SHIPMENT_STATUS, status("OUT_FOR_DELIVERY")).await.ok();
    app.gql(SHIPMENT_STATUS, status("DELIVERED")).await.ok();
    let order = order_with_status(&app, &order_id, "DELIVERED").await;
    assert_eq!(order["shipping"]["status"], "DELIVERED");
    assert_eq!(order["invoice"]["id"], invoice_id);
    // Created, confirmed, invoiced, shipment created, shipped, delivered:
    // OUT_FOR_DELIVERY added nothing.
    assert_eq!(order["version"], 6);
    let order_events = app
        .scalar_i64(&format!("SELECT COUNT(*) FROM events WHERE stream_id = '{order_id}'"))
        .await;
    assert_eq!(order_events, 7, "six order events and the invoice");
    app.stop().await;
}

#[tokio::test]
async fn a_customer_email_change_updates_every_order_row_of_that_customer() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (other, _) = register_customer(&app, "Bob", "bob@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 10).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(
            payload(&create_order(&app, &customer, &[(&product, 1)]).await.ok(), "createOrder").0,
        );
    }
    let bobs = payload(&create_order(&app, &other, &[(&product, 1)]).await.ok(), "createOrder").0;

    let data = app
        .gql(
            CHANGE_EMAIL,
            json!({ "input": { "customerId": customer, "email": "ada@new.example" } }),
        )
        .await
        .ok();
    assert_eq!(data["changeCustomerEmail"]["version"], 2);
    let (_, position) = payload(&data, "changeCustomerEmail");
    for order in &orders {
        let row = order_at(&app, order, &position).await;
        assert_eq!(row["customer"]["email"], "ada@new.example", "order {order}");
        assert_eq!(row["customer"]["name"], "Ada");
    }
    assert_eq!(order_at(&app, &bobs, &position).await["customer"]["email"], "bob@example.com");
    let row = app.gql(CUSTOMER, json!({ "id": customer, "p": position })).await.ok();
    assert_eq!(row["customer"]["email"], "ada@new.example");
    assert_eq!(row["customer"]["version"], 2);
    // An order placed after the change starts with the new email.
    let data = create_order(&app, &customer, &[(&product, 1)]).await.ok();
    let (late, position) = payload(&data, "createOrder");
    assert_eq!(order_at(&app, &late, &position).await["customer"]["email"], "ada@new.example");
    app.stop().await;
}

#[tokio::test]
async fn orders_can_be_filtered_by_customer_and_status_and_paged() {
    let app = spawn_app().await;
    let (ada, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (bob, _) = register_customer(&app, "Bob", "bob@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 100).await;
    let mut adas = Vec::new();
    for _ in 0..5 {
        adas.push(payload(&create_order(&app, &ada, &[(&product, 1)]).await.ok(), "createOrder").0);
    }
    create_order(&app, &bob, &[(&product, 1)]).await.ok();
    let mut last = String::new();
    for order in &adas[..2] {
        let data = app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
        last = payload(&data, "confirmOrder").1;
    }
    let query = "query($first: Int, $after: String, $c: UUID, $s: OrderStatus, $p: String) { orders(first: $first, after: $after, customerId: $c, status: $s, minPosition: $p) { edges { cursor node { id status customer { id } } } pageInfo { hasNextPage endCursor } } }";
    let ids = |data: &serde_json::Value| -> Vec<String> {
        data["orders"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.gql(query, json!({ "p": last })).await.ok();
    assert_eq!(ids(&all).len(), 6);
    let page1 = app.gql(query, json!({ "first": 2, "c": ada })).await.ok();
    assert_eq!(ids(&page1), adas[..2].to_vec());
    assert_eq!(page1["orders"]["pageInfo"]["hasNextPage"], true);
    let cursor = page1["orders"]["pageInfo"]["endCursor"].clone();
    let page2 = app.gql(query, json!({ "first": 10, "c": ada, "after": cursor })).await.ok();
    assert_eq!(ids(&page2), adas[2..].to_vec());
    assert_eq!(page2["orders"]["pageInfo"]["hasNextPage"], false);
    let confirmed = app.gql(query, json!({ "c": ada, "s": "CONFIRMED" })).await.ok();
    assert_eq!(ids(&confirmed), adas[..2].to_vec());
    let pending = app.gql(query, json!({ "s": "PENDING" })).await.ok();
    assert_eq!(ids(&pending).len(), 4);
    let none = app.gql(query, json!({ "c": bob, "s": "CONFIRMED" })).await.ok();
    assert!(ids(&none).is_empty());
    let bad = app.gql(query, json!({ "after": "nope" })).await;
    assert_eq!(bad.code(), Some("VALIDATION_ERROR"));
    let bad = app.gql(query, json!({ "s": "LOST" })).await;
    assert_eq!(bad.code(), Some("VALIDATION_ERROR"));
    app.stop().await;
}

#[tokio::test]
async fn the_order_flow_reaches_delivered_on_the_embedded_sqlite_default() {
    // The process manager runs its command while its projector holds the
    // single SQLite connection: it must not wait for that connection.
    let app = spawn_embedded().await;
    let (_, product, order, _) = confirmed_order(&app).await;
    let data =
        app.gql(SHIP, json!({ "input": { "orderId": order, "carrier": "Post" } })).await.ok();
    let (shipment, _) = payload(&data, "createShipment");
    let input = json!({ "input": { "shipmentId": shipment, "status": "DELIVERED" } });
    app.gql(
        SHIPMENT_STATUS,
        json!({ "input": { "shipmentId": shipment, "status": "IN_TRANSIT" } }),
    )
    .await
    .ok();
    app.gql(SHIPMENT_STATUS, input).await.ok();
    let order = order_with_status(&app, &order, "DELIVERED").await;
    assert_eq!(order["shipping"]["status"], "DELIVERED");
    let data = app
        .gql(INCREASE, json!({ "input": { "productId": product, "amount": 1, "reason": "r" } }))
        .await
        .ok();
    let row = product_at(&app, &product, &payload(&data, "increaseStock").1).await;
    assert_eq!((row["stock"].as_i64(), row["reserved"].as_i64()), (Some(9), Some(2)));
    app.stop().await;
}
