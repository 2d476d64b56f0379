use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::es::aggregate::RejectionKind;
use crate::es::testing::AggregateTest;
use crate::es::upcast::encode;
use ShipmentStatus::{Created, Delivered, InTransit, Lost, OutForDelivery, Returned};

type ShipmentTest = AggregateTest<Shipment>;

const ALL: [ShipmentStatus; 6] = [Created, InTransit, OutForDelivery, Delivered, Returned, Lost];

fn created() -> ShipmentEvent {
    ShipmentEvent::ShipmentCreated {
        order_id: Uuid::from_u128(2),
        carrier: "Correios".into(),
        tracking_code: "BR123456789".into(),
    }
}

fn changed(from: ShipmentStatus, to: ShipmentStatus) -> ShipmentEvent {
    ShipmentEvent::ShipmentStatusChanged { from, to }
}

fn update(status: ShipmentStatus) -> ShipmentCommand {
    ShipmentCommand::UpdateShipmentStatus { status }
}

/// A history that leads from creation to `status` along legal transitions.
fn history_to(status: ShipmentStatus) -> Vec<ShipmentEvent> {
    let path: &[ShipmentStatus] = match status {
        Created => &[],
        InTransit => &[InTransit],
        OutForDelivery => &[InTransit, OutForDelivery],
        Delivered | Returned | Lost => &[InTransit, OutForDelivery, status],
    };
    let mut events = vec![created()];
    let mut from = Created;
    for &to in path {
        events.push(changed(from, to));
        from = to;
    }
    events
}

#[test]
fn creating_a_shipment_records_order_carrier_and_tracking_code() {
    let command = ShipmentCommand::CreateShipment {
        order_id: Uuid::from_u128(2),
        carrier: " Correios ".into(),
        tracking_code: "BR123456789 ".into(),
    };
    ShipmentTest::given_no_events()
        .when(&command)
        .then_expect_events(&[created()])
        .then_state(|shipment| assert_eq!(shipment.status, Some(Created)));
}

#[test]
fn creating_twice_is_an_invalid_state() {
    let command = ShipmentCommand::CreateShipment {
        order_id: Uuid::from_u128(2),
        carrier: "Correios".into(),
        tracking_code: "X".into(),
    };
    ShipmentTest::given(&[created()])
        .when(&command)
        .then_expect_rejection(ShipmentError::AlreadyCreated)
        .then_expect_rejection_kind(RejectionKind::InvalidState);
}

#[test]
fn an_empty_carrier_or_an_overlong_tracking_code_is_a_validation_error() {
    let create = |carrier: &str, tracking_code: String| ShipmentCommand::CreateShipment {
        order_id: Uuid::from_u128(2),
        carrier: carrier.into(),
        tracking_code,
    };
    let shipment = ShipmentTest::given_no_events();
    shipment
        .when(&create(" ", "X".into()))
        .then_expect_rejection(ShipmentError::InvalidText { field: "carrier", max: 200 })
        .then_expect_rejection_kind(RejectionKind::Validation);
    shipment.when(&create("Correios", "X".repeat(65))).then_expect_rejection(
        ShipmentError::InvalidText { field: "trackingCode", max: MAX_TRACKING_CODE },
    );
}

#[test]
fn updating_a_missing_shipment_is_not_found() {
    ShipmentTest::given_no_events()
        .when(&update(InTransit))
        .then_expect_rejection(ShipmentError::NotFound)
        .then_expect_rejection_kind(RejectionKind::NotFound);
}

#[test]
fn the_transition_table_allows_exactly_the_documented_moves() {
    let legal = [
        (Created, InTransit),
        (InTransit, OutForDelivery),
        (InTransit, Delivered),
        (InTransit, Returned),
        (InTransit, Lost),
        (OutForDelivery, Delivered),
        (OutForDelivery, Returned),
        (OutForDelivery, Lost),
    ];
    for from in ALL {
        for to in ALL {
            assert_eq!(from.can_become(to), legal.contains(&(from, to)), "{from} -> {to}");
        }
    }
}

#[test]
fn every_legal_transition_is_recorded_with_from_and_to() {
    for from in ALL {
        for to in ALL.into_iter().filter(|&to| from.can_become(to)) {
            ShipmentTest::given(&history_to(from))
                .when(&update(to))
                .then_expect_events(&[changed(from, to)]);
        }
    }
}

#[test]
fn every_illegal_transition_is_an_invalid_state() {
    for from in ALL {
        for to in ALL.into_iter().filter(|&to| to != from && !from.can_become(to)) {
            ShipmentTest::given(&history_to(from))
                .when(&update(to))
                .then_expect_rejection(ShipmentError::IllegalTransition { from, to })
                .then_expect_rejection_kind(RejectionKind::InvalidState);
        }
    }
}

#[test]
fn the_same_status_again_produces_no_events() {
    for status in ALL {
        ShipmentTest::given(&history_to(status)).when(&update(status)).then_expect_events(&[]);
    }
}

#[test]
fn delivered_returned_and_lost_are_final() {
    for status in [Delivered, Returned, Lost] {
        assert!(status.is_final());
        let shipment = ShipmentTest::given(&history_to(status));
        assert_eq!(shipment.state().status, Some(status));
        for to in ALL.into_iter().filter(|&to| to != status) {
            shipment.when(&update(to)).then_expect_rejection_kind(RejectionKind::InvalidState);
        }
    }
    assert!(![Created, InTransit, OutForDelivery].into_iter().any(ShipmentStatus::is_final));
}

#[test]
fn shipment_events_have_stable_types_and_screaming_statuses() {
    assert_eq!(encode(&created()).unwrap().0, "ShipmentCreated");
    let event = changed(InTransit, OutForDelivery);
    assert_eq!(encode(&event).unwrap().0, "ShipmentStatusChanged");
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"type": "ShipmentStatusChanged", "data": {"from": "IN_TRANSIT", "to": "OUT_FOR_DELIVERY"}})
    );
    let shipment = ShipmentTest::given(&history_to(Delivered));
    let snapshot = serde_json::to_value(shipment.state()).unwrap();
    assert_eq!(&serde_json::from_value::<Shipment>(snapshot).unwrap(), shipment.state());
}
