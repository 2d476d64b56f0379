//! `orderUpdated` and `productStockChanged` push rows after projectors commit.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::shop_helpers::*;
use crate::subscriptions::WsClient;

const ORDER_UPDATED: &str =
    "subscription($id: UUID) { orderUpdated(id: $id) { id status customer { name } } }";
const STOCK_CHANGED: &str =
    "subscription($id: UUID!) { productStockChanged(id: $id) { id stock reserved version } }";

#[tokio::test]
async fn order_updated_and_product_stock_changed_push_the_rows_after_each_change() {
    let app = spawn_app().await;
    let (customer, _) = register_customer(&app, "Ada", "ada@example.com").await;
    let (product, _) = stocked_product(&app, "Widget", "1.00", 10).await;
    let (other, position) = stocked_product(&app, "Other", "1.00", 10).await;
    // Let the projectors announce the set-up before listening.
    product_at(&app, &other, &position).await;

    let mut all_orders = WsClient::connect(&app, false).await;
    all_orders.subscribe("all", ORDER_UPDATED, json!({ "id": null })).await;
    let mut stock = WsClient::connect(&app, false).await;
    stock.subscribe("stock", STOCK_CHANGED, json!({ "id": product })).await;
    // Subscribing has no acknowledgement: give the server a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A change to another product first proves the filter.
    app.gql(INCREASE, json!({ "input": { "productId": other, "amount": 1, "reason": "r" } }))
        .await
        .ok();
    let (order, _) =
        payload(&create_order(&app, &customer, &[(&product, 3)]).await.ok(), "createOrder");
    let pushed = stock.next_data().await["productStockChanged"].clone();
    assert_eq!(pushed["id"], product.as_str());
    assert_eq!((pushed["stock"].as_i64(), pushed["reserved"].as_i64()), (Some(7), Some(3)));
    let pushed = all_orders.next_data().await["orderUpdated"].clone();
    assert_eq!(pushed["id"], order.as_str());
    assert_eq!(pushed["status"], "PENDING");
    assert_eq!(pushed["customer"]["name"], "Ada");

    let mut one_order = WsClient::connect(&app, true).await;
    one_order.subscribe("one", ORDER_UPDATED, json!({ "id": order })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
    assert_eq!(one_order.next_data().await["orderUpdated"]["status"], "CONFIRMED");
    assert_eq!(all_orders.next_data().await["orderUpdated"]["status"], "CONFIRMED");
    app.gql(CANCEL, json!({ "input": { "orderId": order, "reason": "r" } })).await.ok();
    let pushed = stock.next_data().await["productStockChanged"].clone();
    assert_eq!((pushed["stock"].as_i64(), pushed["reserved"].as_i64()), (Some(10), Some(0)));
    assert_eq!(one_order.next_data().await["orderUpdated"]["status"], "CANCELLED");
    app.stop().await;
}
