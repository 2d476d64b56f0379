//! The shipping process manager: shipment facts drive the order. Pure: the
//! runtime reads a shipment event, calls [`order_command_for`] and sends what
//! it returns to the order's stream.
//!
//! | shipment becomes               | order command        |
//! |--------------------------------|----------------------|
//! | `IN_TRANSIT`, `OUT_FOR_DELIVERY` | `MarkOrderShipped`   |
//! | `DELIVERED`                    | `MarkOrderDelivered` |
//! | `CREATED`, `RETURNED`, `LOST`  | nothing              |
//!
//! Decisions:
//! - A delivery always ends the order DELIVERED, even when the in-transit
//!   notice was missed: the order accepts `MarkOrderDelivered` from CONFIRMED
//!   and records `OrderShipped` then `OrderDelivered`.
//! - `OUT_FOR_DELIVERY` also sends `MarkOrderShipped`, a no-op when the order
//!   already shipped, so one lost notice does not leave the order behind.
//! - Returned and lost parcels send nothing: refunding or reshipping is a
//!   human decision, not an automatic one.
//! - Replays and redeliveries are safe: the order treats a repeated notice
//!   from the same shipment as a no-op and appends nothing.

use uuid::Uuid;

use crate::domain::order::OrderCommand;
use crate::domain::shipment::{ShipmentEvent, ShipmentStatus};

/// A command for the order stream `order_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderDispatch {
    pub order_id: Uuid,
    pub command: OrderCommand,
}

/// The order command that `event`, from shipment `shipment_id` carrying order
/// `order_id`, calls for, if any. See the module table.
pub fn order_command_for(
    shipment_id: Uuid,
    order_id: Uuid,
    event: &ShipmentEvent,
) -> Option<OrderDispatch> {
    let ShipmentEvent::ShipmentStatusChanged { to, .. } = event else {
        return None;
    };
    let command = match to {
        ShipmentStatus::InTransit | ShipmentStatus::OutForDelivery => {
            OrderCommand::MarkOrderShipped { shipment_id }
        }
        ShipmentStatus::Delivered => OrderCommand::MarkOrderDelivered { shipment_id },
        ShipmentStatus::Created | ShipmentStatus::Returned | ShipmentStatus::Lost => return None,
    };
    Some(OrderDispatch { order_id, command })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::money::Money;
    use crate::domain::order::{Order, OrderEvent, OrderLine, OrderStatus};
    use crate::es::testing::AggregateTest;
    use ShipmentStatus::{Created, Delivered, InTransit, Lost, OutForDelivery, Returned};

    const ORDER: Uuid = Uuid::from_u128(0x0D);
    const SHIPMENT: Uuid = Uuid::from_u128(0x5A);

    /// The history of an order that was created and confirmed.
    fn confirmed_order() -> Vec<OrderEvent> {
        vec![
            OrderEvent::OrderCreated {
                customer_id: Uuid::from_u128(0xC0),
                items: vec![OrderLine {
                    product_id: Uuid::from_u128(1),
                    product_name: "Widget".into(),
                    unit_price: Money::positive(Decimal::from_str("9.99").unwrap(), "p").unwrap(),
                    quantity: 1,
                }],
                total: Money::positive(Decimal::from_str("9.99").unwrap(), "t").unwrap(),
            },
            OrderEvent::OrderConfirmed,
        ]
    }

    fn changed(from: ShipmentStatus, to: ShipmentStatus) -> ShipmentEvent {
        ShipmentEvent::ShipmentStatusChanged { from, to }
    }

    fn command_for(event: &ShipmentEvent) -> Option<OrderCommand> {
        order_command_for(SHIPMENT, ORDER, event).map(|dispatch| {
            assert_eq!(dispatch.order_id, ORDER);
            dispatch.command
        })
    }

    /// Runs the policy over `shipment_events` against the order whose
    /// history is `order`: given that history, when each command, the events
    /// the order decides are appended to it. Returns every event appended.
    fn drive(order: &mut Vec<OrderEvent>, shipment_events: &[ShipmentEvent]) -> Vec<OrderEvent> {
        let mut appended = vec![];
        for command in shipment_events.iter().filter_map(command_for) {
            let events = AggregateTest::<Order>::given(order).when(&command).events();
            order.extend_from_slice(&events);
            appended.extend(events);
        }
        appended
    }

    fn status(order: &[OrderEvent]) -> Option<OrderStatus> {
        AggregateTest::<Order>::given(order).state().status
    }

    #[test]
    fn in_transit_and_out_for_delivery_mark_the_order_shipped() {
        let shipped = Some(OrderCommand::MarkOrderShipped { shipment_id: SHIPMENT });
        assert_eq!(command_for(&changed(Created, InTransit)), shipped);
        assert_eq!(command_for(&changed(InTransit, OutForDelivery)), shipped);
    }

    #[test]
    fn delivered_marks_the_order_delivered() {
        let delivered = Some(OrderCommand::MarkOrderDelivered { shipment_id: SHIPMENT });
        assert_eq!(command_for(&changed(OutForDelivery, Delivered)), delivered);
        assert_eq!(command_for(&changed(InTransit, Delivered)), delivered);
    }

    #[test]
    fn creation_returns_and_losses_send_nothing() {
        let created = ShipmentEvent::ShipmentCreated {
            order_id: ORDER,
            carrier: "Correios".into(),
            tracking_code: "BR1".into(),
        };
        assert_eq!(command_for(&created), None);
        assert_eq!(command_for(&changed(InTransit, Returned)), None);
        assert_eq!(command_for(&changed(OutForDelivery, Lost)), None);
    }

    #[test]
    fn a_full_shipment_history_takes_a_confirmed_order_to_delivered() {
        let history = [
            changed(Created, InTransit),
            changed(InTransit, OutForDelivery),
            changed(OutForDelivery, Delivered),
        ];
        let mut order = confirmed_order();
        let appended = drive(&mut order, &history);
        assert_eq!(
            appended,
            vec![
                OrderEvent::OrderShipped { shipment_id: SHIPMENT },
                OrderEvent::OrderDelivered { shipment_id: SHIPMENT },
            ]
        );
        assert_eq!(status(&order), Some(OrderStatus::Delivered));
    }

    #[test]
    fn an_order_that_recorded_its_shipment_and_invoice_still_ends_delivered() {
        let mut order = confirmed_order();
        order.push(OrderEvent::OrderShipmentCreated { shipment_id: SHIPMENT });
        order.push(OrderEvent::OrderInvoiced { invoice_id: Uuid::from_u128(0x1B) });
        let history = [changed(Created, InTransit), changed(InTransit, Delivered)];
        assert_eq!(drive(&mut order, &history).len(), 2);
        assert_eq!(status(&order), Some(OrderStatus::Delivered));
    }

    #[test]
    fn replaying_the_policy_commands_appends_no_extra_events() {
        let history = [changed(Created, InTransit), changed(InTransit, Delivered)];
        let mut order = confirmed_order();
        assert_eq!(drive(&mut order, &history).len(), 2);
        let before = order.clone();
        assert_eq!(drive(&mut order, &history), vec![]);
        assert_eq!(order, before);
    }

    #[test]
    fn a_delivery_whose_in_transit_notice_was_missed_still_ends_delivered() {
        let mut order = confirmed_order();
        let appended = drive(&mut order, &[changed(OutForDelivery, Delivered)]);
        assert_eq!(
            appended,
            vec![
                OrderEvent::OrderShipped { shipment_id: SHIPMENT },
                OrderEvent::OrderDelivered { shipment_id: SHIPMENT },
            ]
        );
        assert_eq!(status(&order), Some(OrderStatus::Delivered));
        let late = [changed(Created, InTransit), changed(InTransit, OutForDelivery)];
        assert_eq!(drive(&mut order, &late), vec![]);
        assert_eq!(status(&order), Some(OrderStatus::Delivered));
    }
}
