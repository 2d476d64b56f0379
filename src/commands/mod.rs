//! Shop use cases that need more than one aggregate. Each loads what it
//! needs through the kernel's executor (the write side, never a read table),
//! puts the looked-up facts into the domain command and appends atomically.
//! No SQL and no GraphQL here: the API maps [`ShopError`] to its codes.
//!
//! - [`orders`]: creating an order reserves stock on every product stream in
//!   the same append; cancelling releases it in the same append.
//! - [`fulfilment`]: invoices (one per order) and shipments (one per order).

use uuid::Uuid;

use crate::domain::customer::CustomerError;
use crate::domain::invoice::InvoiceError;
use crate::domain::order::{OrderError, OrderStatus};
use crate::domain::product::ProductError;
use crate::domain::shipment::ShipmentError;
use crate::es::aggregate::{Rejection, RejectionKind};

pub mod fulfilment;
pub mod orders;

/// Why a shop use case refused; nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    /// `NOT_FOUND`: the order's customer was never registered.
    #[error("customer {0} does not exist")]
    CustomerNotFound(Uuid),
    /// `NOT_FOUND`: an ordered product was never registered.
    #[error("product {0} does not exist")]
    ProductNotFound(Uuid),
    /// `NOT_FOUND`: the order to invoice or ship does not exist.
    #[error("order {0} does not exist")]
    OrderNotFound(Uuid),
    /// `INVALID_STATE`: only a CONFIRMED order gets a shipment.
    #[error("a {0} order cannot be shipped")]
    OrderNotShippable(OrderStatus),
    /// The code of the aggregate that refused.
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    #[error(transparent)]
    Shipment(#[from] ShipmentError),
}

impl Rejection for ShopError {
    fn kind(&self) -> RejectionKind {
        match self {
            ShopError::CustomerNotFound(_)
            | ShopError::ProductNotFound(_)
            | ShopError::OrderNotFound(_) => RejectionKind::NotFound,
            ShopError::OrderNotShippable(_) => RejectionKind::InvalidState,
            ShopError::Customer(e) => e.kind(),
            ShopError::Product(e) => e.kind(),
            ShopError::Order(e) => e.kind(),
            ShopError::Invoice(e) => e.kind(),
            ShopError::Shipment(e) => e.kind(),
        }
    }
}
