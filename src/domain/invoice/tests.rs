use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::domain::money::Money;
use crate::domain::order::OrderStatus;
use crate::es::aggregate::RejectionKind;
use crate::es::testing::AggregateTest;
use crate::es::upcast::encode;

type InvoiceTest = AggregateTest<Invoice>;

fn money(s: &str) -> Money {
    Money::non_negative(Decimal::from_str(s).unwrap(), "test").unwrap()
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 16, 14, 30, 0).unwrap()
}

const URL: &str = "https://invoices.example.com/i/1.pdf";

fn issue(status: OrderStatus, url: &str) -> InvoiceCommand {
    InvoiceCommand::IssueInvoice {
        invoice_id: Uuid::from_u128(1),
        order_id: Uuid::from_u128(2),
        order_status: status,
        total: money("21.50"),
        url: url.into(),
        issued_at: at(),
    }
}

fn issued() -> InvoiceEvent {
    InvoiceEvent::InvoiceIssued {
        invoice_id: Uuid::from_u128(1),
        order_id: Uuid::from_u128(2),
        total: money("21.50"),
        url: URL.into(),
        issued_at: at(),
    }
}

#[test]
fn issuing_for_a_confirmed_order_records_id_total_url_and_the_given_time() {
    InvoiceTest::given_no_events()
        .when(&issue(OrderStatus::Confirmed, URL))
        .then_expect_events(&[issued()])
        .then_state(|invoice| {
            assert_eq!(invoice.invoice_id, Some(Uuid::from_u128(1)));
            assert_eq!(invoice.issued_at, Some(at()));
        });
}

#[test]
fn shipped_and_delivered_orders_can_still_be_invoiced() {
    for status in [OrderStatus::Shipped, OrderStatus::Delivered] {
        InvoiceTest::given_no_events().when(&issue(status, URL)).then_expect_events(&[issued()]);
    }
}

#[test]
fn pending_and_cancelled_orders_cannot_be_invoiced() {
    for status in [OrderStatus::Pending, OrderStatus::Cancelled] {
        InvoiceTest::given_no_events()
            .when(&issue(status, URL))
            .then_expect_rejection(InvoiceError::OrderNotInvoiceable(status))
            .then_expect_rejection_kind(RejectionKind::InvalidState);
    }
}

#[test]
fn issuing_twice_for_an_order_is_an_invalid_state() {
    InvoiceTest::given(&[issued()])
        .when(&issue(OrderStatus::Confirmed, URL))
        .then_expect_rejection(InvoiceError::AlreadyIssued(Uuid::from_u128(1)))
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn a_zero_total_is_a_validation_error() {
    let mut command = issue(OrderStatus::Confirmed, URL);
    let InvoiceCommand::IssueInvoice { total, .. } = &mut command;
    *total = Money::ZERO;
    InvoiceTest::given_no_events()
        .when(&command)
        .then_expect_rejection(InvoiceError::TotalNotPositive)
        .then_expect_rejection_kind(RejectionKind::Validation);
}

#[test]
fn a_url_that_is_not_absolute_http_is_a_validation_error() {
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
    for url in [
        "",
        "invoices/1.pdf",
        "ftp://example.com/1",
        "https://",
        "https:///x",
        "https://a b",
        &long,
    ] {
        InvoiceTest::given_no_events()
            .when(&issue(OrderStatus::Confirmed, url))
            .then_expect_rejection(InvoiceError::InvalidUrl)
            .then_expect_rejection_kind(RejectionKind::Validation);
    }
    let padded = format!("  {URL} ");
    InvoiceTest::given_no_events()
        .when(&issue(OrderStatus::Confirmed, &padded))
        .then_expect_events(&[issued()]);
}

#[test]
fn invoice_issued_has_a_stable_type_and_round_trips() {
    assert_eq!(encode(&issued()).unwrap().0, "InvoiceIssued");
    let json = serde_json::to_value(issued()).unwrap();
    assert_eq!(json["data"]["issued_at"], "2025-01-16T14:30:00Z");
    assert_eq!(serde_json::from_value::<InvoiceEvent>(json).unwrap(), issued());
    let invoice = InvoiceTest::given(&[issued()]);
    let snapshot = serde_json::to_value(invoice.state()).unwrap();
    assert_eq!(&serde_json::from_value::<Invoice>(snapshot).unwrap(), invoice.state());
}
