use serde_json::json;

use super::*;
use crate::es::aggregate::{DomainEvent, RejectionKind};
use crate::es::testing::AggregateTest;
use crate::es::upcast::encode;

type CustomerTest = AggregateTest<Customer>;

fn registered(email: Option<&str>) -> CustomerEvent {
    CustomerEvent::CustomerRegistered { name: "Ada".into(), email: email.map(Into::into) }
}

fn register(name: &str, email: &str) -> CustomerCommand {
    CustomerCommand::RegisterCustomer { name: name.into(), email: email.into() }
}

fn change(email: &str) -> CustomerCommand {
    CustomerCommand::ChangeCustomerEmail { email: email.into() }
}

#[test]
fn registering_records_a_trimmed_name_and_a_normalised_email() {
    CustomerTest::given_no_events()
        .when(&register("  Ada ", " Ada@Example.COM "))
        .then_expect_events(&[registered(Some("ada@example.com"))]);
}

#[test]
fn registering_twice_is_an_invalid_state() {
    CustomerTest::given(&[registered(Some("a@b.co"))])
        .when(&register("Ada", "a@b.co"))
        .then_expect_rejection(CustomerError::AlreadyRegistered)
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn an_empty_or_overlong_name_is_a_validation_error() {
    let customer = CustomerTest::given_no_events();
    for name in ["   ".to_owned(), "x".repeat(201)] {
        customer
            .when(&register(&name, "a@b.co"))
            .then_expect_rejection(CustomerError::InvalidName)
            .then_expect_rejection_kind(RejectionKind::Validation);
    }
    customer.when(&register(&"x".repeat(200), "a@b.co")).then_expect_accepted();
}

#[test]
fn malformed_emails_are_validation_errors() {
    let long = format!("{}@example.com", "a".repeat(243));
    for email in [
        "",
        "ada",
        "@b.co",
        "ada@",
        "ada@localhost",
        "a@@b.co",
        "a@b@c.co",
        "a b@c.co",
        "a@b..co",
        "a@.b.co",
        "a@b.co.",
        &long,
    ] {
        CustomerTest::given_no_events()
            .when(&register("Ada", email))
            .then_expect_rejection(CustomerError::InvalidEmail)
            .then_expect_rejection_kind(RejectionKind::Validation);
    }
    let longest = format!("{}@example.com", "a".repeat(242));
    assert_eq!(normalize_email(&longest).unwrap().len(), MAX_EMAIL);
}

#[test]
fn changing_the_email_of_an_unknown_customer_is_not_found() {
    CustomerTest::given_no_events()
        .when(&change("a@b.co"))
        .then_expect_rejection(CustomerError::NotFound)
        .then_expect_rejection_kind(RejectionKind::NotFound);
}

#[test]
fn changing_the_email_records_the_normalised_address() {
    CustomerTest::given(&[registered(Some("a@b.co"))])
        .when(&change(" New@B.co"))
        .then_expect_events(&[CustomerEvent::CustomerEmailChanged { email: "new@b.co".into() }])
        .then_state(|customer| assert_eq!(customer.email.as_deref(), Some("new@b.co")));
}

#[test]
fn changing_to_the_same_email_produces_no_events() {
    CustomerTest::given(&[
        registered(Some("old@b.co")),
        CustomerEvent::CustomerEmailChanged { email: "a@b.co".into() },
    ])
    .when(&change("  A@B.CO "))
    .then_expect_events(&[]);
}

#[test]
fn a_customer_without_an_email_can_be_given_one() {
    CustomerTest::given(&[registered(None)])
        .when(&change("a@b.co"))
        .then_expect_events(&[CustomerEvent::CustomerEmailChanged { email: "a@b.co".into() }]);
}

#[test]
fn customer_registered_is_schema_version_two_under_a_stable_type() {
    let event = registered(Some("a@b.co"));
    assert_eq!(encode(&event).unwrap().0, "CustomerRegistered");
    assert_eq!(event.schema_version(), 2);
    let changed = CustomerEvent::CustomerEmailChanged { email: "a@b.co".into() };
    assert_eq!(changed.schema_version(), 1);
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"type": "CustomerRegistered", "data": {"name": "Ada", "email": "a@b.co"}})
    );
}

#[test]
fn a_v1_payload_is_upcast_to_v2_with_an_unknown_email() {
    let upcast = upcast_customer_registered_v1(json!({"name": "Ada"}));
    assert_eq!(upcast, json!({"name": "Ada", "email": null}));

    let tagged = json!({"type": "CustomerRegistered", "data": {"name": "Ada"}});
    let upcast = upcast_customer_registered_v1(tagged);
    assert_eq!(
        upcast,
        json!({"type": "CustomerRegistered", "data": {"name": "Ada", "email": null}})
    );
    let event: CustomerEvent = serde_json::from_value(upcast).unwrap();
    assert_eq!(event, registered(None));
}

#[test]
fn upcasting_a_v2_payload_changes_nothing() {
    let v2 = json!({"name": "Ada", "email": "a@b.co"});
    assert_eq!(upcast_customer_registered_v1(v2.clone()), v2);
    let unknown = json!({"name": "Ada", "email": null});
    assert_eq!(upcast_customer_registered_v1(unknown.clone()), unknown);
}

#[test]
fn customer_state_round_trips_through_a_snapshot() {
    let customer = CustomerTest::given(&[registered(Some("a@b.co"))]);
    let snapshot = serde_json::to_value(customer.state()).unwrap();
    assert_eq!(&serde_json::from_value::<Customer>(snapshot).unwrap(), customer.state());
}
