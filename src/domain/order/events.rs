use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::money::Money;
use crate::es::aggregate::DomainEvent;

/// One product on an order, with the name and price the caller looked up when
/// the order was placed: later price changes do not touch existing orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub product_name: String,
    pub unit_price: Money,
    pub quantity: u32,
}

impl OrderLine {
    /// `unit_price * quantity`, or `None` if it does not fit a `Decimal`.
    pub fn subtotal(&self) -> Option<Decimal> {
        self.unit_price.amount().checked_mul(Decimal::from(self.quantity))
    }
}

/// Where an order is in its life. Stored and exposed as `PENDING`,
/// `CONFIRMED`, `SHIPPED`, `DELIVERED`, `CANCELLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    /// The stable API and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about one order. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    /// `total` is the sum of the lines' subtotals, fixed when the order is placed.
    OrderCreated {
        customer_id: Uuid,
        items: Vec<OrderLine>,
        total: Money,
    },
    OrderConfirmed,
    OrderCancelled {
        reason: String,
    },
    OrderShipped {
        shipment_id: Uuid,
    },
    OrderDelivered {
        shipment_id: Uuid,
    },
    /// The order's invoice was issued, in the same append as the invoice's
    /// `InvoiceIssued`: the order is billed and can no longer be cancelled.
    OrderInvoiced {
        invoice_id: Uuid,
    },
    /// A shipment was created for the order, in the same append as the
    /// shipment's `ShipmentCreated`: the order can no longer be cancelled.
    OrderShipmentCreated {
        shipment_id: Uuid,
    },
}

impl DomainEvent for OrderEvent {}
