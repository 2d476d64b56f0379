use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{ShipmentEvent, ShipmentStatus};
use crate::domain::input::{MAX_TEXT, trimmed_text};
use crate::es::aggregate::{Aggregate, Rejection, RejectionKind};

/// Longest tracking code accepted.
pub const MAX_TRACKING_CODE: usize = 64;

/// What a shipment command may ask. The caller generates the tracking code.
#[derive(Debug, Clone, PartialEq)]
pub enum ShipmentCommand {
    CreateShipment {
        order_id: Uuid,
        carrier: String,
        tracking_code: String,
    },
    /// Moves the shipment along the table in [`ShipmentStatus::can_become`];
    /// the current status again is a no-op.
    UpdateShipmentStatus {
        status: ShipmentStatus,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShipmentError {
    /// `INVALID_STATE`: a shipment is created once.
    #[error("shipment already exists")]
    AlreadyCreated,
    /// `NOT_FOUND`: UpdateShipmentStatus needs an existing shipment.
    #[error("shipment does not exist")]
    NotFound,
    /// `VALIDATION_ERROR`: a required text is empty or too long.
    #[error("{field} must be between 1 and {max} characters")]
    InvalidText { field: &'static str, max: usize },
    /// `INVALID_STATE`: the transition is not in the table.
    #[error("a shipment cannot go from {from} to {to}")]
    IllegalTransition { from: ShipmentStatus, to: ShipmentStatus },
}

impl Rejection for ShipmentError {
    fn kind(&self) -> RejectionKind {
        match self {
            ShipmentError::AlreadyCreated | ShipmentError::IllegalTransition { .. } => {
                RejectionKind::InvalidState
            }
            ShipmentError::NotFound => RejectionKind::NotFound,
            ShipmentError::InvalidText { .. } => RejectionKind::Validation,
        }
    }
}

/// The state a decision needs, plus what the shipment says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    /// `None` until `ShipmentCreated`.
    pub status: Option<ShipmentStatus>,
    pub order_id: Uuid,
    pub carrier: String,
    pub tracking_code: String,
}

fn checked_text(value: &str, field: &'static str, max: usize) -> Result<String, ShipmentError> {
    trimmed_text(value, max).ok_or(ShipmentError::InvalidText { field, max })
}

impl Aggregate for Shipment {
    const STREAM_TYPE: &'static str = "Shipment";
    type Command = ShipmentCommand;
    type Event = ShipmentEvent;
    type Error = ShipmentError;

    /// A shipment travels with its order, so the order view sees
    /// `OrderCreated` before any shipment event even when partitioned.
    fn partition_key(&self, id: Uuid) -> Uuid {
        if self.status.is_some() { self.order_id } else { id }
    }

    fn command_name(command: &ShipmentCommand) -> &'static str {
        match command {
            ShipmentCommand::CreateShipment { .. } => "CreateShipment",
            ShipmentCommand::UpdateShipmentStatus { .. } => "UpdateShipmentStatus",
        }
    }

    fn handle(&self, command: &ShipmentCommand) -> Result<Vec<ShipmentEvent>, ShipmentError> {
        match command {
            ShipmentCommand::CreateShipment { order_id, carrier, tracking_code } => {
                if self.status.is_some() {
                    return Err(ShipmentError::AlreadyCreated);
                }
                Ok(vec![ShipmentEvent::ShipmentCreated {
                    order_id: *order_id,
                    carrier: checked_text(carrier, "carrier", MAX_TEXT)?,
                    tracking_code: checked_text(tracking_code, "trackingCode", MAX_TRACKING_CODE)?,
                }])
            }
            ShipmentCommand::UpdateShipmentStatus { status: to } => {
                let from = self.status.ok_or(ShipmentError::NotFound)?;
                if from == *to {
                    return Ok(vec![]);
                }
                if !from.can_become(*to) {
                    return Err(ShipmentError::IllegalTransition { from, to: *to });
                }
                Ok(vec![ShipmentEvent::ShipmentStatusChanged { from, to: *to }])
            }
        }
    }

    fn apply(&mut self, event: &ShipmentEvent) {
        match event {
            ShipmentEvent::ShipmentCreated { order_id, carrier, tracking_code } => {
                self.status = Some(ShipmentStatus::Created);
                self.order_id = *order_id;
                self.carrier = carrier.clone();
                self.tracking_code = tracking_code.clone();
            }
            ShipmentEvent::ShipmentStatusChanged { to, .. } => self.status = Some(*to),
        }
    }
}
