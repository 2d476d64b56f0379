//! Subscription announcements over Redis pub/sub: projectors publish the
//! changed rows; every server process forwards what it hears to its local
//! subscribers, which reload the rows from the read tables.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};

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
        let (outbox, mut pending) = tokio::sync::mpsc::unbounded_channel::<Vec<Change>>();
        let publisher = {
            let (client, channel, mut shutdown) =
                (client.clone(), channel.clone(), shutdown.clone());
            async move {
                let mut conn = None;
                loop {
                    let batch = tokio::select! {
                        b = pending.recv() => match b { Some(b) => b, None => return },
                        _ = shutdown.changed() => return,
                    };
                    let Ok(message) = serde_json::to_string(&batch) else { continue };
                    // Announcements are best effort: a lost one only delays a
                    // push until the next change of that row.
                    for _ in 0..3 {
                        if conn.is_none() {
                            conn = super::connection(&client).await.ok();
                        }
                        let Some(c) = conn.as_mut() else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        };
                        let sent: redis::RedisResult<i64> =
                            redis::cmd("PUBLISH").arg(&channel).arg(&message).query_async(c).await;
                        match sent {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "change announcement failed");
                                conn = None;
                            }
                        }
                    }
                }
            }
        };
        tokio::spawn(publisher);
        tokio::spawn(listen(client, channel, local.clone(), shutdown));
        Arc::new(RedisChangeBus { local, outbox })
    }
}

async fn listen(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<Change>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.changed() => return,
                    };
                    let Some(message) = message else { break };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    if let Ok(changes) = serde_json::from_str::<Vec<Change>>(&payload) {
                        for change in changes {
                            let _ = local.send(change);
                        }
                    }
                }
                tracing::warn!("change subscription lost; resubscribing");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to changes; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
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
