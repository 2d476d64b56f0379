//! The domain: aggregates, commands, events and rules. Pure Rust: no SQL, no
//! GraphQL, no Redis. Every bounded context has its own module.
//!
//! - [`bank`]: the seed's bank accounts.
//! - The shop: [`customer`], [`product`] (stock and reservations), [`order`],
//!   [`invoice`] (one per order), [`shipment`], and [`shipping_policy`], the
//!   process manager that turns shipment facts into order commands.
//! - Shared values: [`money`], [`input`] (bounded texts and quantities).

pub mod bank;
pub mod customer;
pub mod input;
pub mod invoice;
pub mod money;
pub mod order;
pub mod product;
pub mod shipment;
pub mod shipping_policy;
mod upcasters;

pub use upcasters::upcasters;
