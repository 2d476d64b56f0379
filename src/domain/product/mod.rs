//! Products and their stock, as in the seed's `product_stock_events`: stock
//! goes up and down with a reason, and orders hold reservations that are
//! released when the order is cancelled. Stock is never negative.

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{MAX_STOCK, Product, ProductCommand, ProductError};
pub use events::ProductEvent;
