//! Shop calls shared by the shop tests.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) const REGISTER_CUSTOMER: &str = "mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) { id version position } }";
pub(crate) const CHANGE_EMAIL: &str = "mutation($input: ChangeCustomerEmailInput!) { changeCustomerEmail(input: $input) { id version position } }";
pub(crate) const REGISTER_PRODUCT: &str = "mutation($input: RegisterProductInput!) { registerProduct(input: $input) { id version position } }";
pub(crate) const INCREASE: &str =
    "mutation($input: ChangeStockInput!) { increaseStock(input: $input) { id version position } }";
pub(crate) const DECREASE: &str =
    "mutation($input: ChangeStockInput!) { decreaseStock(input: $input) { id version position } }";
pub(crate) const CREATE_ORDER: &str =
    "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id version position } }";
pub(crate) const CONFIRM: &str =
    "mutation($input: ConfirmOrderInput!) { confirmOrder(input: $input) { id version position } }";
pub(crate) const CANCEL: &str =
    "mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { id version position } }";
pub(crate) const INVOICE: &str =
    "mutation($input: IssueInvoiceInput!) { issueInvoice(input: $input) { id version position } }";
pub(crate) const SHIP: &str = "mutation($input: CreateShipmentInput!) { createShipment(input: $input) { id version position } }";
pub(crate) const SHIPMENT_STATUS: &str = "mutation($input: UpdateShipmentStatusInput!) { updateShipmentStatus(input: $input) { id version position } }";

pub(crate) const ORDER: &str = "query($id: UUID!, $p: String) { order(id: $id, minPosition: $p) { id status total createdAt version customer { id name email } items { productId productName quantity unitPrice } invoice { id url issuedAt } shipping { id carrier trackingCode status } } }";
pub(crate) const PRODUCT: &str = "query($id: UUID!, $p: String) { product(id: $id, minPosition: $p) { id name price stock reserved lastUpdated version } }";
pub(crate) const CUSTOMER: &str = "query($id: UUID!, $p: String) { customer(id: $id, minPosition: $p) { id name email registeredAt version } }";

/// Sends `query` with `input`, checks it is refused with `code` and
/// appended nothing, and returns the answer.
pub(crate) async fn refused(app: &TestApp, query: &str, input: Value, code: &str) -> Gql {
    let before = app.event_count().await;
    let res = app.gql(query, json!({ "input": input })).await;
    assert_eq!(res.code(), Some(code), "{input}: {res:?}");
    assert_eq!(app.event_count().await, before, "{input} appended events");
    res
}

/// The `id` and `position` of a successful mutation named `field`.
pub(crate) fn payload(data: &Value, field: &str) -> (String, String) {
    let p = &data[field];
    (p["id"].as_str().unwrap().to_owned(), p["position"].as_str().unwrap().to_owned())
}

pub(crate) async fn register_customer(app: &TestApp, name: &str, email: &str) -> (String, String) {
    let data =
        app.gql(REGISTER_CUSTOMER, json!({ "input": { "name": name, "email": email } })).await.ok();
    payload(&data, "registerCustomer")
}

/// Registers a product and puts `stock` units on hand; returns (id, position).
pub(crate) async fn stocked_product(
    app: &TestApp,
    name: &str,
    price: &str,
    stock: i32,
) -> (String, String) {
    let data =
        app.gql(REGISTER_PRODUCT, json!({ "input": { "name": name, "price": price } })).await.ok();
    let (id, position) = payload(&data, "registerProduct");
    if stock == 0 {
        return (id, position);
    }
    let data = app
        .gql(
            INCREASE,
            json!({ "input": { "productId": id, "amount": stock, "reason": "delivery" } }),
        )
        .await
        .ok();
    (id, payload(&data, "increaseStock").1)
}

pub(crate) async fn create_order(app: &TestApp, customer: &str, items: &[(&str, i32)]) -> Gql {
    let items: Vec<Value> =
        items.iter().map(|(id, q)| json!({ "productId": id, "quantity": q })).collect();
    app.gql(CREATE_ORDER, json!({ "input": { "customerId": customer, "items": items } })).await
}

pub(crate) async fn order_at(app: &TestApp, id: &str, position: &str) -> Value {
    app.gql(ORDER, json!({ "id": id, "p": position })).await.ok()["order"].clone()
}

pub(crate) async fn product_at(app: &TestApp, id: &str, position: &str) -> Value {
    app.gql(PRODUCT, json!({ "id": id, "p": position })).await.ok()["product"].clone()
}

/// Waits (at most 10 s) until the order view shows `status`; returns the order.
pub(crate) async fn order_with_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let order = app.gql(ORDER, json!({ "id": id })).await.ok()["order"].clone();
        if order["status"] == status {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {id} never became {status}: {order}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A customer and a confirmed order of one product; returns (customer,
/// product, order, position of the confirmation).
pub(crate) async fn confirmed_order(app: &TestApp) -> (String, String, String, String) {
    let (customer, _) = register_customer(app, "Ada Lovelace", "ada@example.com").await;
    let (product, _) = stocked_product(app, "Widget", "9.99", 10).await;
    let data = create_order(app, &customer, &[(&product, 2)]).await.ok();
    let (order, _) = payload(&data, "createOrder");
    let data = app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
    let (_, position) = payload(&data, "confirmOrder");
    (customer, product, order, position)
}
