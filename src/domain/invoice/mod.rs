//! Invoices: one per order (the stream is keyed by the order id), issued only
//! for an order that was confirmed. The caller passes the invoice id, the
//! order's status and the issue time, so the aggregate stays deterministic.

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Invoice, InvoiceCommand, InvoiceError, MAX_URL};
pub use events::InvoiceEvent;
