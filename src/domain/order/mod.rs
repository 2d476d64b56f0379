//! Orders: created from lines the caller priced beforehand, then confirmed,
//! shipped and delivered, or cancelled before they ship. The order records
//! its invoice and its shipment (in the same append as theirs), and once it
//! has either it can no longer be cancelled. Cancelling tells the command
//! layer which stock reservations to release
//! ([`Order::reservations_to_release`]).

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{MAX_ORDER_LINES, Order, OrderCommand, OrderError, ReservationRelease};
pub use events::{OrderEvent, OrderLine, OrderStatus};
