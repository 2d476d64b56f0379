//! Shipments: created for an order with a carrier and a tracking code, then
//! moved along a small legal-transition table ([`ShipmentStatus::can_become`]).
//! Shipment facts drive the order through [`crate::domain::shipping_policy`].

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{MAX_TRACKING_CODE, Shipment, ShipmentCommand, ShipmentError};
pub use events::{ShipmentEvent, ShipmentStatus};
