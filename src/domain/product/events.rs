use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::money::Money;
use crate::es::aggregate::DomainEvent;

/// Facts about one product. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProductEvent {
    ProductRegistered {
        name: String,
        price: Money,
    },
    StockIncreased {
        amount: u32,
        reason: String,
    },
    StockDecreased {
        amount: u32,
        reason: String,
    },
    /// `quantity` units are held for `order_id` and no longer available.
    StockReserved {
        order_id: Uuid,
        quantity: u32,
    },
    /// The whole reservation of `order_id` is available again.
    StockReleased {
        order_id: Uuid,
        quantity: u32,
    },
}

impl DomainEvent for ProductEvent {}
