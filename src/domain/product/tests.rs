use std::str::FromStr;

use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::domain::input::MAX_QUANTITY;
use crate::domain::money::Money;
use crate::es::aggregate::RejectionKind;
use crate::es::testing::AggregateTest;
use crate::es::upcast::encode;

type ProductTest = AggregateTest<Product>;

fn money(s: &str) -> Money {
    Money::non_negative(Decimal::from_str(s).unwrap(), "test").unwrap()
}

fn order(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn registered() -> ProductEvent {
    ProductEvent::ProductRegistered { name: "Widget".into(), price: money("9.99") }
}

fn increased(amount: u32) -> ProductEvent {
    ProductEvent::StockIncreased { amount, reason: "supplier delivery".into() }
}

fn reserved(n: u128, quantity: u32) -> ProductEvent {
    ProductEvent::StockReserved { order_id: order(n), quantity }
}

fn decrease(amount: u32) -> ProductCommand {
    ProductCommand::DecreaseStock { amount, reason: "online sale".into() }
}

fn reserve(n: u128, quantity: u32) -> ProductCommand {
    ProductCommand::ReserveStock { order_id: order(n), quantity }
}

#[test]
fn registering_records_the_trimmed_name_and_the_price() {
    let command = ProductCommand::RegisterProduct { name: " Widget ".into(), price: money("9.99") };
    ProductTest::given_no_events().when(&command).then_expect_events(&[registered()]);
}

#[test]
fn registering_twice_is_an_invalid_state() {
    let command = ProductCommand::RegisterProduct { name: "Widget".into(), price: money("1") };
    ProductTest::given(&[registered()])
        .when(&command)
        .then_expect_rejection(ProductError::AlreadyRegistered)
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn a_zero_price_or_an_empty_name_is_a_validation_error() {
    let product = ProductTest::given_no_events();
    let free = ProductCommand::RegisterProduct { name: "Widget".into(), price: Money::ZERO };
    product.when(&free).then_expect_rejection(ProductError::PriceNotPositive);
    let unnamed = ProductCommand::RegisterProduct { name: " ".into(), price: money("1") };
    product
        .when(&unnamed)
        .then_expect_rejection(ProductError::InvalidText("name"))
        .then_expect_rejection_kind(RejectionKind::Validation);
}

#[test]
fn stock_commands_on_an_unregistered_product_are_not_found() {
    let product = ProductTest::given_no_events();
    for command in [
        ProductCommand::IncreaseStock { amount: 1, reason: "r".into() },
        decrease(1),
        reserve(1, 1),
        ProductCommand::ReleaseStock { order_id: order(1) },
    ] {
        product
            .when(&command)
            .then_expect_rejection(ProductError::NotFound)
            .then_expect_rejection_kind(RejectionKind::NotFound);
    }
}

#[test]
fn stock_follows_the_seed_example_of_one_hundred_minus_twenty_five_plus_fifty() {
    let product = ProductTest::given(&[
        registered(),
        increased(100),
        ProductEvent::StockDecreased { amount: 25, reason: "online order #12345".into() },
        ProductEvent::StockIncreased { amount: 50, reason: "customer return".into() },
    ]);
    assert_eq!(product.state().available, 125);
    assert_eq!(product.state().on_hand(), 125);
}

#[test]
fn increasing_stock_records_amount_and_trimmed_reason() {
    let command =
        ProductCommand::IncreaseStock { amount: 100, reason: " supplier delivery ".into() };
    ProductTest::given(&[registered()]).when(&command).then_expect_events(&[increased(100)]);
}

#[test]
fn zero_or_more_than_a_million_units_per_operation_is_a_validation_error() {
    let product = ProductTest::given(&[registered(), increased(MAX_QUANTITY)]);
    for amount in [0, MAX_QUANTITY + 1] {
        let up = ProductCommand::IncreaseStock { amount, reason: "r".into() };
        product.when(&up).then_expect_rejection(ProductError::InvalidQuantity("amount"));
        product.when(&decrease(amount)).then_expect_rejection_kind(RejectionKind::Validation);
        product
            .when(&reserve(1, amount))
            .then_expect_rejection(ProductError::InvalidQuantity("quantity"));
    }
    product.when(&decrease(MAX_QUANTITY)).then_expect_accepted();
}

#[test]
fn an_empty_or_overlong_reason_is_a_validation_error() {
    let product = ProductTest::given(&[registered(), increased(10)]);
    for reason in ["  ".to_owned(), "r".repeat(201)] {
        let command = ProductCommand::DecreaseStock { amount: 1, reason };
        product.when(&command).then_expect_rejection(ProductError::InvalidText("reason"));
    }
}

#[test]
fn decreasing_up_to_the_available_stock_is_allowed() {
    ProductTest::given(&[registered(), increased(10)])
        .when(&decrease(10))
        .then_expect_events(&[ProductEvent::StockDecreased {
            amount: 10,
            reason: "online sale".into(),
        }])
        .then_state(|product| assert_eq!(product.available, 0));
}

#[test]
fn decreasing_beyond_the_available_stock_is_insufficient_stock_and_appends_nothing() {
    ProductTest::given(&[registered(), increased(10), reserved(1, 4)])
        .when(&decrease(7))
        .then_expect_rejection(ProductError::InsufficientStock { requested: 7, available: 6 })
        .then_expect_rejection_kind(RejectionKind::InsufficientStock);
}

#[test]
fn reserving_holds_units_for_the_order() {
    ProductTest::given(&[registered(), increased(10)])
        .when(&reserve(1, 4))
        .then_expect_events(&[reserved(1, 4)])
        .then_state(|product| {
            assert_eq!((product.available, product.reserved(), product.on_hand()), (6, 4, 10));
        });
}

#[test]
fn reserving_beyond_the_available_stock_is_insufficient_stock() {
    ProductTest::given(&[registered(), increased(10), reserved(1, 8)])
        .when(&reserve(2, 3))
        .then_expect_rejection(ProductError::InsufficientStock { requested: 3, available: 2 })
        .then_expect_rejection_kind(RejectionKind::InsufficientStock);
}

#[test]
fn reserving_again_for_the_same_order_and_quantity_produces_no_events() {
    ProductTest::given(&[registered(), increased(10), reserved(1, 4)])
        .when(&reserve(1, 4))
        .then_expect_events(&[]);
}

#[test]
fn reserving_another_quantity_for_an_order_that_holds_stock_is_an_invalid_state() {
    ProductTest::given(&[registered(), increased(10), reserved(1, 4)])
        .when(&reserve(1, 5))
        .then_expect_rejection(ProductError::ReservationConflict {
            order_id: order(1),
            reserved: 4,
        })
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn releasing_returns_the_orders_whole_reservation_to_available_stock() {
    ProductTest::given(&[registered(), increased(10), reserved(1, 4), reserved(2, 3)])
        .when(&ProductCommand::ReleaseStock { order_id: order(1) })
        .then_expect_events(&[ProductEvent::StockReleased { order_id: order(1), quantity: 4 }])
        .then_state(|product| {
            assert_eq!((product.available, product.reserved()), (7, 3));
            assert!(!product.reservations.contains_key(&order(1)));
        });
}

#[test]
fn releasing_an_unknown_or_already_released_reservation_produces_no_events() {
    let product = ProductTest::given(&[
        registered(),
        increased(10),
        reserved(1, 4),
        ProductEvent::StockReleased { order_id: order(1), quantity: 4 },
    ]);
    assert_eq!(product.state().available, 10);
    for n in [1, 2] {
        let release = ProductCommand::ReleaseStock { order_id: order(n) };
        product.when(&release).then_expect_events(&[]);
    }
}

#[test]
fn product_events_have_stable_type_strings_and_a_tagged_shape() {
    let event = reserved(1, 2);
    assert_eq!(encode(&event).unwrap().0, "StockReserved");
    assert_eq!(encode(&increased(1)).unwrap().0, "StockIncreased");
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["type"], "StockReserved");
    assert_eq!(json["data"]["quantity"], 2);
    assert_eq!(serde_json::from_value::<ProductEvent>(json).unwrap(), event);
}

#[test]
fn product_state_with_reservations_round_trips_through_a_snapshot() {
    let product = ProductTest::given(&[registered(), increased(10), reserved(1, 4)]);
    let snapshot = serde_json::to_string(product.state()).unwrap();
    assert_eq!(&serde_json::from_str::<Product>(&snapshot).unwrap(), product.state());
}

/// A product with `MAX_STOCK - short` units on hand, 400,000 of them
/// reserved. The history holds an increase larger than one command may
/// ask: a fold accepts any fact, and it gets there in one event.
fn nearly_full(short: u32) -> Vec<ProductEvent> {
    vec![
        registered(),
        increased(MAX_STOCK as u32),
        ProductEvent::StockDecreased { amount: short, reason: "sold".into() },
        reserved(1, 400_000),
    ]
}

#[test]
fn stock_on_hand_may_reach_the_limit_exactly_but_not_pass_it() {
    let increase = |amount| ProductCommand::IncreaseStock { amount, reason: "delivery".into() };
    let full = ProductTest::given(&nearly_full(MAX_QUANTITY));
    assert_eq!(full.state().on_hand(), MAX_STOCK - u64::from(MAX_QUANTITY));
    full.when(&increase(MAX_QUANTITY)).then_state(|product| {
        assert_eq!(product.on_hand(), MAX_STOCK);
        assert_eq!((product.available, product.reserved()), (MAX_STOCK - 400_000, 400_000));
    });
    ProductTest::given(&nearly_full(MAX_QUANTITY - 1))
        .when(&increase(MAX_QUANTITY))
        .then_expect_rejection(ProductError::StockLimitExceeded)
        .then_expect_rejection_kind(RejectionKind::Validation);
    let message = ProductError::StockLimitExceeded.to_string();
    assert!(message.contains("1000000000 units"), "the message names the limit: {message}");
    assert!(MAX_STOCK <= i32::MAX as u64, "a GraphQL Int holds every count");
}

#[test]
fn reserving_and_releasing_never_pass_the_limit() {
    let full = [nearly_full(0), vec![increased(0)]].concat();
    let product = ProductTest::given(&full);
    assert_eq!(product.state().on_hand(), MAX_STOCK);
    product.when(&reserve(2, MAX_QUANTITY)).then_expect_accepted();
    let release = ProductCommand::ReleaseStock { order_id: order(1) };
    product.when(&release).then_state(|p| assert_eq!(p.on_hand(), MAX_STOCK));
}
