//! Orders: created from lines the caller priced beforehand, then confirmed,
//! shipped and delivered, or cancelled before they ship. Cancelling tells the
//! command layer which stock reservations to release
//! ([`Order::reservations_to_release`]).

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{MAX_ORDER_LINES, Order, OrderCommand, OrderError, ReservationRelease};
pub use events::{OrderEvent, OrderLine, OrderStatus};
