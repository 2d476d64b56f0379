use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::es::aggregate::DomainEvent;

/// Where a shipment is. Stored and exposed as `CREATED`, `IN_TRANSIT`,
/// `OUT_FOR_DELIVERY`, `DELIVERED`, `RETURNED`, `LOST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    Created,
    InTransit,
    OutForDelivery,
    Delivered,
    Returned,
    Lost,
}

impl ShipmentStatus {
    /// The stable API and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Created => "CREATED",
            ShipmentStatus::InTransit => "IN_TRANSIT",
            ShipmentStatus::OutForDelivery => "OUT_FOR_DELIVERY",
            ShipmentStatus::Delivered => "DELIVERED",
            ShipmentStatus::Returned => "RETURNED",
            ShipmentStatus::Lost => "LOST",
        }
    }

    /// The legal-transition table:
    ///
    /// | from               | to                                                |
    /// |--------------------|---------------------------------------------------|
    /// | `CREATED`          | `IN_TRANSIT`                                      |
    /// | `IN_TRANSIT`       | `OUT_FOR_DELIVERY`, `DELIVERED`, `RETURNED`, `LOST` |
    /// | `OUT_FOR_DELIVERY` | `DELIVERED`, `RETURNED`, `LOST`                   |
    ///
    /// `DELIVERED`, `RETURNED` and `LOST` are final. Staying in the same status
    /// is not a transition: the aggregate treats it as a no-op.
    pub fn can_become(self, next: ShipmentStatus) -> bool {
        use ShipmentStatus::{Created, Delivered, InTransit, Lost, OutForDelivery, Returned};
        matches!(
            (self, next),
            (Created, InTransit)
                | (InTransit, OutForDelivery | Delivered | Returned | Lost)
                | (OutForDelivery, Delivered | Returned | Lost)
        )
    }

    /// Whether no further transition is possible.
    pub fn is_final(self) -> bool {
        matches!(self, ShipmentStatus::Delivered | ShipmentStatus::Returned | ShipmentStatus::Lost)
    }
}

impl std::fmt::Display for ShipmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about one shipment. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ShipmentEvent {
    /// The shipment starts in `CREATED`.
    ShipmentCreated {
        order_id: Uuid,
        carrier: String,
        tracking_code: String,
    },
    ShipmentStatusChanged {
        from: ShipmentStatus,
        to: ShipmentStatus,
    },
}

impl DomainEvent for ShipmentEvent {}
