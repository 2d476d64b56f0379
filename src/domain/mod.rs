//! The domain: aggregates, commands, events and rules. Pure Rust: no SQL, no
//! GraphQL, no Redis. Every bounded context has its own module.

pub mod bank;
pub mod customer;
pub mod input;
pub mod invoice;
pub mod money;
pub mod order;
pub mod product;
pub mod shipment;
