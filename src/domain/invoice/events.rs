use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::money::Money;
use crate::es::aggregate::DomainEvent;

/// Facts about one order's invoice. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InvoiceEvent {
    /// Everything the seed's `InvoiceIssued` message carries to the order
    /// details view: invoice id, order id, URL and issue time.
    InvoiceIssued {
        invoice_id: Uuid,
        order_id: Uuid,
        total: Money,
        url: String,
        issued_at: DateTime<Utc>,
    },
}

impl DomainEvent for InvoiceEvent {}
