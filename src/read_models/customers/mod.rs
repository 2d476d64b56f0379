//! `customers_view`: one row per customer with the current email.

mod projector;
pub mod query;

pub use projector::{CustomersProjection, NAME};
