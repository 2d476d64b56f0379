use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::domain::input::MAX_QUANTITY;
use crate::domain::money::{MAX_AMOUNT, Money};
use crate::es::aggregate::RejectionKind;
use crate::es::testing::AggregateTest;
use crate::es::upcast::encode;

type OrderTest = AggregateTest<Order>;

fn money(s: &str) -> Money {
    Money::non_negative(Decimal::from_str(s).unwrap(), "test").unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

const CUSTOMER: u128 = 0xC0;
const SHIPMENT: u128 = 0x5A;

fn line(product: u128, price: &str, quantity: u32) -> OrderLine {
    OrderLine {
        product_id: id(product),
        product_name: format!("Product {product}"),
        unit_price: money(price),
        quantity,
    }
}

fn create(items: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::CreateOrder { customer_id: id(CUSTOMER), items }
}

fn created() -> OrderEvent {
    OrderEvent::OrderCreated {
        customer_id: id(CUSTOMER),
        items: vec![line(1, "10.00", 2), line(2, "0.50", 3)],
        total: money("21.50"),
    }
}

fn shipped(n: u128) -> OrderEvent {
    OrderEvent::OrderShipped { shipment_id: id(n) }
}

fn delivered(n: u128) -> OrderEvent {
    OrderEvent::OrderDelivered { shipment_id: id(n) }
}

fn cancel(reason: &str) -> OrderCommand {
    OrderCommand::CancelOrder { reason: reason.into() }
}

fn mark_shipped(n: u128) -> OrderCommand {
    OrderCommand::MarkOrderShipped { shipment_id: id(n) }
}

fn mark_delivered(n: u128) -> OrderCommand {
    OrderCommand::MarkOrderDelivered { shipment_id: id(n) }
}

fn cancelled() -> OrderEvent {
    OrderEvent::OrderCancelled { reason: "changed my mind".into() }
}

/// `command` is not allowed on the order with `history`, which is in `status`.
fn assert_illegal(history: &[OrderEvent], command: OrderCommand, status: OrderStatus) {
    OrderTest::given(history)
        .when(&command)
        .then_expect_rejection(OrderError::IllegalTransition { status, command: command.name() })
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn creating_an_order_records_the_lines_and_their_total() {
    let mut first = line(1, "10", 2);
    first.product_name = "  Product 1 ".into();
    OrderTest::given_no_events()
        .when(&create(vec![first, line(2, "0.5", 3)]))
        .then_expect_events(&[created()])
        .then_state(|order| {
            assert_eq!(order.status, Some(OrderStatus::Pending));
            assert_eq!(order.total.amount().to_string(), "21.50");
        });
}

#[test]
fn creating_twice_is_an_invalid_state() {
    OrderTest::given(&[created()])
        .when(&create(vec![line(1, "1", 1)]))
        .then_expect_rejection(OrderError::AlreadyCreated)
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn an_order_without_items_or_with_more_than_a_hundred_is_a_validation_error() {
    let order = OrderTest::given_no_events();
    order.when(&create(vec![])).then_expect_rejection(OrderError::InvalidLineCount(0));
    let too_many: Vec<_> = (0..=MAX_ORDER_LINES as u128).map(|n| line(n, "1", 1)).collect();
    order
        .when(&create(too_many))
        .then_expect_rejection(OrderError::InvalidLineCount(101))
        .then_expect_rejection_kind(RejectionKind::Validation);
    let most: Vec<_> = (0..MAX_ORDER_LINES as u128).map(|n| line(n, "1", 1)).collect();
    order.when(&create(most)).then_expect_accepted();
}

#[test]
fn a_zero_or_excessive_quantity_is_a_validation_error() {
    for quantity in [0, MAX_QUANTITY + 1] {
        OrderTest::given_no_events()
            .when(&create(vec![line(7, "1", quantity)]))
            .then_expect_rejection(OrderError::InvalidQuantity(id(7)))
            .then_expect_rejection_kind(RejectionKind::Validation);
    }
}

#[test]
fn the_same_product_on_two_lines_is_rejected_not_merged() {
    let items = vec![line(1, "1", 1), line(2, "1", 1), line(1, "1", 4)];
    OrderTest::given_no_events()
        .when(&create(items))
        .then_expect_rejection(OrderError::DuplicateProduct(id(1)))
        .then_expect_rejection_kind(RejectionKind::Validation);
}

#[test]
fn a_free_line_or_a_nameless_product_is_a_validation_error() {
    let order = OrderTest::given_no_events();
    order
        .when(&create(vec![line(1, "0", 1)]))
        .then_expect_rejection(OrderError::PriceNotPositive(id(1)));
    let mut nameless = line(1, "1", 1);
    nameless.product_name = " ".into();
    order
        .when(&create(vec![nameless]))
        .then_expect_rejection(OrderError::InvalidText("productName"));
}

#[test]
fn a_total_above_the_maximum_amount_is_a_validation_error() {
    let order = OrderTest::given_no_events();
    let max = Money::positive(MAX_AMOUNT, "price").unwrap();
    let at_max = OrderLine { unit_price: max, ..line(1, "1", 1) };
    order.when(&create(vec![at_max.clone()])).then_expect_accepted();
    order
        .when(&create(vec![at_max.clone(), line(2, "0.01", 1)]))
        .then_expect_rejection(OrderError::TotalTooLarge)
        .then_expect_rejection_kind(RejectionKind::Validation);
    let many = OrderLine { quantity: MAX_QUANTITY, ..at_max };
    order.when(&create(vec![many])).then_expect_rejection(OrderError::TotalTooLarge);
}

#[test]
fn commands_on_a_missing_order_are_not_found() {
    let order = OrderTest::given_no_events();
    for command in
        [OrderCommand::ConfirmOrder, cancel("r"), mark_shipped(SHIPMENT), mark_delivered(SHIPMENT)]
    {
        order
            .when(&command)
            .then_expect_rejection(OrderError::NotFound)
            .then_expect_rejection_kind(RejectionKind::NotFound);
    }
}

#[test]
fn confirming_a_pending_order_confirms_it() {
    OrderTest::given(&[created()])
        .when(&OrderCommand::ConfirmOrder)
        .then_expect_events(&[OrderEvent::OrderConfirmed]);
}

#[test]
fn confirming_anything_but_a_pending_order_is_an_invalid_state() {
    use OrderEvent::OrderConfirmed;
    let confirm = || OrderCommand::ConfirmOrder;
    assert_illegal(&[created(), OrderConfirmed], confirm(), OrderStatus::Confirmed);
    assert_illegal(&[created(), cancelled()], confirm(), OrderStatus::Cancelled);
    let shipped_order = [created(), OrderConfirmed, shipped(SHIPMENT)];
    assert_illegal(&shipped_order, confirm(), OrderStatus::Shipped);
}

#[test]
fn a_pending_or_confirmed_order_can_be_cancelled_with_a_reason() {
    for history in [vec![created()], vec![created(), OrderEvent::OrderConfirmed]] {
        OrderTest::given(&history)
            .when(&cancel(" changed my mind "))
            .then_expect_events(&[cancelled()]);
    }
    OrderTest::given(&[created()])
        .when(&cancel("  "))
        .then_expect_rejection(OrderError::InvalidText("reason"))
        .then_expect_rejection_kind(RejectionKind::Validation);
}

#[test]
fn an_order_cannot_be_cancelled_once_shipped_delivered_or_cancelled() {
    let confirmed = [created(), OrderEvent::OrderConfirmed];
    let shipped_order = [confirmed.as_slice(), &[shipped(SHIPMENT)]].concat();
    assert_illegal(&shipped_order, cancel("late"), OrderStatus::Shipped);
    let history = [confirmed.as_slice(), &[shipped(SHIPMENT), delivered(SHIPMENT)]].concat();
    assert_illegal(&history, cancel("late"), OrderStatus::Delivered);
    assert_illegal(&[created(), cancelled()], cancel("again"), OrderStatus::Cancelled);
}

#[test]
fn cancelling_tells_which_reservations_to_release() {
    let order = OrderTest::given(&[created(), OrderEvent::OrderConfirmed]);
    let decision = order.when(&cancel("out of budget")).events();
    assert_eq!(
        order.state().reservations_to_release(&decision),
        vec![
            ReservationRelease { product_id: id(1), quantity: 2 },
            ReservationRelease { product_id: id(2), quantity: 3 },
        ]
    );
}

#[test]
fn decisions_that_do_not_cancel_release_nothing() {
    let order = OrderTest::given(&[created()]);
    let decision = order.when(&OrderCommand::ConfirmOrder).events();
    assert_eq!(order.state().reservations_to_release(&decision), vec![]);
    assert_eq!(order.state().reservations_to_release(&[]), vec![]);
}

#[test]
fn a_confirmed_order_is_marked_shipped_with_its_shipment() {
    OrderTest::given(&[created(), OrderEvent::OrderConfirmed])
        .when(&mark_shipped(SHIPMENT))
        .then_expect_events(&[shipped(SHIPMENT)])
        .then_state(|order| {
            let shipped = (Some(OrderStatus::Shipped), Some(id(SHIPMENT)));
            assert_eq!((order.status, order.shipment_id), shipped);
        });
}

#[test]
fn shipping_a_pending_or_cancelled_order_is_an_invalid_state() {
    assert_illegal(&[created()], mark_shipped(SHIPMENT), OrderStatus::Pending);
    assert_illegal(&[created(), cancelled()], mark_shipped(SHIPMENT), OrderStatus::Cancelled);
}

#[test]
fn marking_shipped_again_by_the_same_shipment_produces_no_events() {
    let base = [created(), OrderEvent::OrderConfirmed, shipped(SHIPMENT)];
    OrderTest::given(&base).when(&mark_shipped(SHIPMENT)).then_expect_events(&[]);
    let done = [base.as_slice(), &[delivered(SHIPMENT)]].concat();
    OrderTest::given(&done).when(&mark_shipped(SHIPMENT)).then_expect_events(&[]);
}

#[test]
fn another_shipment_for_a_shipped_order_is_an_invalid_state() {
    let order = OrderTest::given(&[created(), OrderEvent::OrderConfirmed, shipped(SHIPMENT)]);
    for command in [mark_shipped(0xBAD), mark_delivered(0xBAD)] {
        order
            .when(&command)
            .then_expect_rejection(OrderError::OtherShipment(id(0xBAD)))
            .then_expect_rejection_kind(RejectionKind::InvalidState);
    }
}

#[test]
fn a_shipped_order_is_marked_delivered_once() {
    let base = [created(), OrderEvent::OrderConfirmed, shipped(SHIPMENT)];
    OrderTest::given(&base)
        .when(&mark_delivered(SHIPMENT))
        .then_expect_events(&[delivered(SHIPMENT)])
        .then_state(|done| assert_eq!(done.status, Some(OrderStatus::Delivered)));
    let done = OrderTest::given(&[base.as_slice(), &[delivered(SHIPMENT)]].concat());
    done.when(&mark_delivered(SHIPMENT)).then_expect_events(&[]);
    done.when(&mark_delivered(0xBAD)).then_expect_rejection(OrderError::OtherShipment(id(0xBAD)));
}

#[test]
fn delivering_a_confirmed_order_records_shipped_then_delivered() {
    OrderTest::given(&[created(), OrderEvent::OrderConfirmed])
        .when(&mark_delivered(SHIPMENT))
        .then_expect_events(&[shipped(SHIPMENT), delivered(SHIPMENT)])
        .then_state(|done| assert_eq!(done.status, Some(OrderStatus::Delivered)));
}

#[test]
fn delivering_a_pending_or_cancelled_order_is_an_invalid_state() {
    assert_illegal(&[created()], mark_delivered(SHIPMENT), OrderStatus::Pending);
    let cancelled_order = [created(), OrderEvent::OrderConfirmed, cancelled()];
    assert_illegal(&cancelled_order, mark_delivered(SHIPMENT), OrderStatus::Cancelled);
}

#[test]
fn order_events_have_stable_type_strings_and_a_tagged_shape() {
    assert_eq!(encode(&created()).unwrap().0, "OrderCreated");
    assert_eq!(encode(&OrderEvent::OrderConfirmed).unwrap().0, "OrderConfirmed");
    assert_eq!(
        serde_json::to_value(OrderEvent::OrderConfirmed).unwrap(),
        json!({"type": "OrderConfirmed"})
    );
    let json = serde_json::to_value(created()).unwrap();
    assert_eq!(json["data"]["total"], "21.50");
    assert_eq!(json["data"]["items"][0]["unit_price"], "10.00");
    assert_eq!(serde_json::from_value::<OrderEvent>(json).unwrap(), created());
}

#[test]
fn statuses_are_stored_in_screaming_snake_case() {
    assert_eq!(serde_json::to_value(OrderStatus::Cancelled).unwrap(), json!("CANCELLED"));
    assert_eq!(OrderStatus::Pending.to_string(), "PENDING");
    let order = OrderTest::given(&[created(), OrderEvent::OrderConfirmed, shipped(SHIPMENT)]);
    let snapshot = serde_json::to_value(order.state()).unwrap();
    assert_eq!(snapshot["status"], "SHIPPED");
    assert_eq!(&serde_json::from_value::<Order>(snapshot).unwrap(), order.state());
}

fn invoiced(n: u128) -> OrderEvent {
    OrderEvent::OrderInvoiced { invoice_id: id(n) }
}

fn shipment_created(n: u128) -> OrderEvent {
    OrderEvent::OrderShipmentCreated { shipment_id: id(n) }
}

fn record_invoice(n: u128) -> OrderCommand {
    OrderCommand::RecordInvoice { invoice_id: id(n) }
}

fn record_shipment(n: u128) -> OrderCommand {
    OrderCommand::RecordShipment { shipment_id: id(n) }
}

const INVOICE: u128 = 0x1B;

#[test]
fn an_invoiced_order_cannot_be_cancelled() {
    OrderTest::given(&[created(), OrderEvent::OrderConfirmed, invoiced(INVOICE)])
        .when(&cancel("too late"))
        .then_expect_rejection(OrderError::InvoicedNotCancellable(id(INVOICE)))
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn an_order_with_a_shipment_cannot_be_cancelled() {
    OrderTest::given(&[created(), OrderEvent::OrderConfirmed, shipment_created(SHIPMENT)])
        .when(&cancel("too late"))
        .then_expect_rejection(OrderError::ShipmentNotCancellable(id(SHIPMENT)))
        .then_expect_rejection_kind(RejectionKind::InvalidState);
    let message = OrderError::ShipmentNotCancellable(id(SHIPMENT)).to_string();
    assert!(message.contains("can no longer be cancelled"), "{message}");
}

#[test]
fn a_confirmed_shipped_or_delivered_order_records_its_invoice_once() {
    let confirmed = [created(), OrderEvent::OrderConfirmed];
    let shipped_order = [confirmed.as_slice(), &[shipped(SHIPMENT)]].concat();
    let delivered_order = [shipped_order.as_slice(), &[delivered(SHIPMENT)]].concat();
    for history in [confirmed.to_vec(), shipped_order, delivered_order] {
        let order = OrderTest::given(&history);
        let status = order.state().status;
        order.when(&record_invoice(INVOICE)).then_expect_events(&[invoiced(INVOICE)]).then_state(
            |billed| assert_eq!((billed.invoice_id, billed.status), (Some(id(INVOICE)), status)),
        );
    }
    let billed = OrderTest::given(&[created(), OrderEvent::OrderConfirmed, invoiced(INVOICE)]);
    billed.when(&record_invoice(INVOICE)).then_expect_events(&[]);
    billed
        .when(&record_invoice(0xBAD))
        .then_expect_rejection(OrderError::AlreadyInvoiced(id(INVOICE)))
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn a_pending_or_cancelled_order_records_no_invoice() {
    assert_illegal(&[created()], record_invoice(INVOICE), OrderStatus::Pending);
    assert_illegal(&[created(), cancelled()], record_invoice(INVOICE), OrderStatus::Cancelled);
}

#[test]
fn a_confirmed_order_records_its_shipment_once_and_stays_confirmed() {
    OrderTest::given(&[created(), OrderEvent::OrderConfirmed])
        .when(&record_shipment(SHIPMENT))
        .then_expect_events(&[shipment_created(SHIPMENT)])
        .then_state(|order| {
            let recorded = (Some(OrderStatus::Confirmed), Some(id(SHIPMENT)));
            assert_eq!((order.status, order.shipment_id), recorded);
        });
    let on_its_way =
        OrderTest::given(&[created(), OrderEvent::OrderConfirmed, shipment_created(SHIPMENT)]);
    on_its_way.when(&record_shipment(SHIPMENT)).then_expect_events(&[]);
    on_its_way
        .when(&record_shipment(0xBAD))
        .then_expect_rejection(OrderError::OtherShipment(id(0xBAD)))
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn only_a_confirmed_order_records_a_shipment() {
    assert_illegal(&[created()], record_shipment(SHIPMENT), OrderStatus::Pending);
    assert_illegal(&[created(), cancelled()], record_shipment(SHIPMENT), OrderStatus::Cancelled);
    let shipped_order = [created(), OrderEvent::OrderConfirmed, shipped(SHIPMENT)];
    assert_illegal(&shipped_order, record_shipment(SHIPMENT), OrderStatus::Shipped);
}

#[test]
fn shipping_notices_of_another_shipment_than_the_recorded_one_are_refused() {
    let order =
        OrderTest::given(&[created(), OrderEvent::OrderConfirmed, shipment_created(SHIPMENT)]);
    for command in [mark_shipped(0xBAD), mark_delivered(0xBAD)] {
        order.when(&command).then_expect_rejection(OrderError::OtherShipment(id(0xBAD)));
    }
    order.when(&mark_shipped(SHIPMENT)).then_expect_events(&[shipped(SHIPMENT)]);
    order
        .when(&mark_delivered(SHIPMENT))
        .then_expect_events(&[shipped(SHIPMENT), delivered(SHIPMENT)]);
}

#[test]
fn the_largest_possible_order_is_refused_with_a_message_naming_the_limit() {
    let max = Money::positive(MAX_AMOUNT, "price").unwrap();
    let lines: Vec<_> = (0..MAX_ORDER_LINES as u128)
        .map(|n| OrderLine { unit_price: max, quantity: MAX_QUANTITY, ..line(n, "1", 1) })
        .collect();
    OrderTest::given_no_events()
        .when(&create(lines))
        .then_expect_rejection(OrderError::TotalTooLarge)
        .then_expect_rejection_kind(RejectionKind::Validation);
    let message = OrderError::TotalTooLarge.to_string();
    assert_eq!(message, "order total must not exceed 1000000000000000");
}
