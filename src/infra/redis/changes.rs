//! Subscription announcements over Redis pub/sub: projectors publish the
//! changed rows; every server process forwards what it hears to its local
//! subscribers, which reload the rows from the read tables.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::pubsub;
use crate::es::changes::{Change, ChangeBus};

pub struct RedisChangeBus {
    local: broadcast::Sender<Change>,
    outbox: tokio::sync::mpsc::UnboundedSender<Vec<Change>>,
}

impl RedisChangeBus {
    /// Starts the publisher and the listener; both end on `shutdown`.
    pub fn start(
        client: redis::Client,
        channel: String,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (local, _) = broadcast::channel(4096);
        let (outbox, pending) = tokio::sync::mpsc::unbounded_channel::<Vec<Change>>();
        // Announcements are best effort: a lost one only delays a push until
        // the next change of that row.
        let encode = |batches: Vec<Vec<Change>>| {
            serde_json::to_string(&batches.into_iter().flatten().collect::<Vec<_>>()).ok()
        };
        tokio::spawn(pubsub::publish_all(
            client.clone(),
            channel.clone(),
            pending,
            encode,
            shutdown.clone(),
        ));
        let heard = local.clone();
        let forward = move |payload: String| {
            if let Ok(changes) = serde_json::from_str::<Vec<Change>>(&payload) {
                for change in changes {
                    let _ = heard.send(change);
                }
            }
        };
        tokio::spawn(pubsub::follow(client, channel, shutdown, || {}, forward));
        Arc::new(RedisChangeBus { local, outbox })
    }
}

impl ChangeBus for RedisChangeBus {
    fn publish(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            let _ = self.outbox.send(changes);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.local.subscribe()
    }
}
