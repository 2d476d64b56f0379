//! Process managers: projections that own no table but react to events
//! with commands on the write side. They run in the projection runtime, so
//! they get its checkpoints, retries and dead letters.
//!
//! - [`shipping`]: moves orders along with their shipments.

use std::sync::Arc;

use crate::es::command::CommandExecutor;
use crate::es::projector::Projection;
use crate::es::upcast::Upcasters;

pub mod shipping;

pub use shipping::ShippingProcess;

/// Every process manager. `commands` is what they execute their commands with.
pub fn all(upcasters: Arc<Upcasters>, commands: Arc<CommandExecutor>) -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(ShippingProcess { upcasters, commands })]
}
