//! Customers: registered once with a name and an email, which may change.
//! `CustomerRegistered` is at schema version 2; stored v1 payloads (no email)
//! are upcast with [`upcast_customer_registered_v1`].

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Customer, CustomerCommand, CustomerError, MAX_EMAIL, normalize_email};
pub use events::{CustomerEvent, upcast_customer_registered_v1};
