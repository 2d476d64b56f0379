//! After a projector commits, it announces which read-model rows changed.
//! Subscribers reload those rows from the read tables.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// One changed row of a read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The read model, e.g. `account`, `order`, `product`.
    pub model: String,
    pub id: Uuid,
    /// The W3C trace context of the projector apply that changed the row,
    /// when traces are exported: the push to each subscriber continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The port through which changes reach every server process.
pub trait ChangeBus: Send + Sync {
    fn publish(&self, changes: Vec<Change>);
    fn subscribe(&self) -> broadcast::Receiver<Change>;
}

/// In-process bus: enough when projectors and the API share a process.
pub struct LocalChangeBus {
    sender: broadcast::Sender<Change>,
}

impl LocalChangeBus {
    pub fn new(capacity: usize) -> Self {
        LocalChangeBus { sender: broadcast::channel(capacity).0 }
    }
}

impl ChangeBus for LocalChangeBus {
    fn publish(&self, changes: Vec<Change>) {
        for change in changes {
            // No receivers is fine: nobody is subscribed right now.
            let _ = self.sender.send(change);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}
