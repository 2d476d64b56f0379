//! `shipping_process`: the process manager that moves orders along with
//! their shipments. It owns no table; it runs as a projection so it gets
//! the runtime's checkpoint, retries and dead letters for free.
//!
//! For each `ShipmentStatusChanged` it asks [`order_command_for`] which
//! order command the change calls for and executes it with a commandId
//! derived from the shipment event's id (UUIDv5). Replaying the event — after
//! a crash, a failed batch or a rebuild — finds that command's stored result
//! and appends nothing; a command that changed nothing is a no-op again.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use crate::domain::order::Order;
use crate::domain::shipment::{Shipment, ShipmentEvent};
use crate::domain::shipping_policy::order_command_for;
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::command::{CommandContext, CommandError, CommandExecutor};
use crate::es::envelope::{Actor, EventMetadata, RecordedEvent};
use crate::es::projector::{Projection, ProjectionError};
use crate::es::upcast::Upcasters;

pub const NAME: &str = "shipping_process";

/// Namespace of the command ids derived from shipment event ids.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7466_6f6c_6400_0000_0000_0003);

/// The command id the process manager uses for the order command that
/// the event `event_id` calls for.
pub fn command_id_for(event_id: Uuid) -> Uuid {
    Uuid::new_v5(&COMMAND_NAMESPACE, event_id.as_bytes())
}

/// A failure of the write side, which the runtime retries until it passes.
fn unavailable(err: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Unavailable(format!("the write side failed: {err}"))
}

pub struct ShippingProcess {
    pub upcasters: Arc<Upcasters>,
    /// Executes on the write side; on an embedded single-connection database
    /// it must have a connection of its own (see `app::start`).
    pub commands: Arc<CommandExecutor>,
}

#[async_trait]
impl Projection for ShippingProcess {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Shipment"])
    }

    async fn apply(
        &self,
        _txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        if event.stream.stream_type != Shipment::STREAM_TYPE {
            return Ok(vec![]);
        }
        let decoded: ShipmentEvent = self.upcasters.decode(event)?;
        if !matches!(decoded, ShipmentEvent::ShipmentStatusChanged { .. }) {
            return Ok(vec![]);
        }
        let shipment_id = event.stream.stream_id;
        let shipment = self.commands.load::<Shipment>(shipment_id).await.map_err(unavailable)?;
        let Some(dispatch) = order_command_for(shipment_id, shipment.state.order_id, &decoded)
        else {
            return Ok(vec![]);
        };
        let metadata: Option<EventMetadata> = serde_json::from_value(event.metadata.clone()).ok();
        let ctx = CommandContext {
            command_id: Some(command_id_for(event.event_id)),
            expected_version: None,
            correlation_id: metadata.map(|m| m.correlation_id),
            causation_id: Some(event.event_id),
            actor: Some(Actor { role: "process".into(), sub: Some(NAME.to_owned()) }),
        };
        match self.commands.execute::<Order>(dispatch.order_id, &dispatch.command, &ctx).await {
            Ok(_) => Ok(vec![]),
            // The order refused (e.g. it was cancelled before the parcel
            // left): a business outcome for a human, not a poison event.
            Err(CommandError::Rejected(reason)) => {
                tracing::warn!(
                    order_id = %dispatch.order_id, %shipment_id, error = %reason,
                    "order did not follow its shipment"
                );
                Ok(vec![])
            }
            // The write side failed or stayed contended: it may pass.
            Err(e) => Err(unavailable(e)),
        }
    }
}
