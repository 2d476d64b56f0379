//! Stock and orders: all-or-nothing reservations, releases, and races.

use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use crate::shop_helpers::*;

#[tokio::test]
async fn an_order_whose_second_product_lacks_stock_reserves_nothing_on_the_first() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (plenty, _) = stocked_product(&app, "Plenty", "1.00", 10).await;
    let (scarce, position) = stocked_product(&app, "Scarce", "2.00", 1).await;
    let before = app.event_count().await;

    let res = create_order(&app, &customer, &[(&plenty, 3), (&scarce, 2)]).await;
    assert_eq!(res.code(), Some("INSUFFICIENT_STOCK"), "{res:?}");
    assert_eq!(app.event_count().await, before, "no order, no reservation");
    let first = product_at(&app, &plenty, &position).await;
    assert_eq!((first["stock"].as_i64(), first["reserved"].as_i64()), (Some(10), Some(0)));
    assert_eq!(first["version"], 2);
    let orders = app.gql("{ orders { edges { node { id } } } }", json!({})).await.ok();
    assert!(orders["orders"]["edges"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn cancelling_an_order_restores_the_stock_of_every_product() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (a, _) = stocked_product(&app, "A", "1.00", 5).await;
    let (b, _) = stocked_product(&app, "B", "1.00", 5).await;
    let (order, _) =
        payload(&create_order(&app, &customer, &[(&a, 2), (&b, 5)]).await.ok(), "createOrder");
    app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
    let before = app.event_count().await;

    let data = app
        .gql(CANCEL, json!({ "input": { "orderId": order, "reason": "changed my mind" } }))
        .await
        .ok();
    assert_eq!(data["cancelOrder"]["version"], 3);
    assert_eq!(app.event_count().await, before + 3, "cancel plus one release per product");
    let (_, position) = payload(&data, "cancelOrder");
    for product in [&a, &b] {
        let row = product_at(&app, product, &position).await;
        assert_eq!((row["stock"].as_i64(), row["reserved"].as_i64()), (Some(5), Some(0)));
    }
    assert_eq!(order_at(&app, &order, &position).await["status"], "CANCELLED");

    let again = app.gql(CANCEL, json!({ "input": { "orderId": order, "reason": "again" } })).await;
    assert_eq!(again.code(), Some("INVALID_STATE"));
    assert_eq!(app.event_count().await, before + 3);
    app.stop().await;
}

#[tokio::test]
async fn twenty_clients_racing_for_the_last_ten_units_sell_exactly_ten() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (product, _) = stocked_product(&app, "Last units", "5.00", 10).await;
    let line = [(product.as_str(), 1)];
    let results = join_all((0..20).map(|_| create_order(&app, &customer, &line))).await;
    let sold = results.iter().filter(|r| r.errors.is_empty()).count();
    let refused = results.iter().filter(|r| r.code() == Some("INSUFFICIENT_STOCK")).count();
    assert_eq!((sold, refused), (10, 10), "{results:?}");
    let orders =
        app.scalar_i64("SELECT COUNT(*) FROM events WHERE event_type = 'OrderCreated'").await;
    assert_eq!(orders, 10);
    let data = app
        .gql(INCREASE, json!({ "input": { "productId": product, "amount": 1, "reason": "probe" } }))
        .await
        .ok();
    let row = product_at(&app, &product, &payload(&data, "increaseStock").1).await;
    assert_eq!((row["stock"].as_i64(), row["reserved"].as_i64()), (Some(1), Some(10)));
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_create_order_command_id_places_one_order() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 10).await;
    let command_id = Uuid::now_v7().to_string();
    let input = json!({ "input": { "customerId": customer, "commandId": command_id,
        "items": [{ "productId": product, "quantity": 4 }] } });
    let results = join_all((0..5).map(|_| app.gql(CREATE_ORDER, input.clone()))).await;
    let first = results[0].errors.is_empty().then(|| results[0].data.clone());
    assert!(results.iter().all(|r| Some(r.data.clone()) == first), "{results:?}");
    let before = app.event_count().await;
    app.gql(CREATE_ORDER, input).await.ok();
    assert_eq!(app.event_count().await, before);
    let data = app
        .gql(DECREASE, json!({ "input": { "productId": product, "amount": 6, "reason": "count" } }))
        .await
        .ok();
    let row = product_at(&app, &product, &payload(&data, "decreaseStock").1).await;
    assert_eq!((row["stock"].as_i64(), row["reserved"].as_i64()), (Some(0), Some(4)));
    app.stop().await;
}
