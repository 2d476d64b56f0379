//! `orders_with_details_view`: one row per order with its customer, items,
//! invoice and shipping, so a page of orders is one query.

mod projector;
pub mod query;

pub use projector::{NAME, OrdersWithDetailsProjection};
