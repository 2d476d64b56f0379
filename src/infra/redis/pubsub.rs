//! Best-effort Redis pub/sub shared by the announcements of this process:
//! a publisher that drains a queue into one message at a time, and a
//! subscriber that survives lost connections.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

/// Publishes what arrives on `pending` to `channel` until `shutdown`:
/// everything queued by the time a message goes out is `encode`d into that
/// one message, so a burst costs one PUBLISH. A message that cannot be
/// sent after a few tries is dropped (subscribers must not rely on every
/// message: see [`follow`]).
pub async fn publish_all<T>(
    client: redis::Client,
    channel: String,
    mut pending: mpsc::UnboundedReceiver<T>,
    encode: impl Fn(Vec<T>) -> Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = None;
    loop {
        let first = tokio::select! {
            item = pending.recv() => match item { Some(item) => item, None => return },
            _ = shutdown.changed() => return,
        };
        let mut items = vec![first];
        while let Ok(item) = pending.try_recv() {
            items.push(item);
        }
        let Some(message) = encode(items) else { continue };
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
                    tracing::warn!(error = %e, channel, "announcement failed");
                    conn = None;
                }
            }
        }
    }
}

/// Follows `channel` until `shutdown`, subscribing again after a lost
/// connection. `subscribed` runs after every (re)subscription, since
/// messages published meanwhile were missed; `message` runs for each
/// message.
pub async fn follow(
    client: redis::Client,
    channel: String,
    mut shutdown: watch::Receiver<bool>,
    mut subscribed: impl FnMut(),
    mut message: impl FnMut(String),
) {
    loop {
        let subscription = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscription.await {
            Ok(pubsub) => {
                subscribed();
                let mut messages = pubsub.into_on_message();
                loop {
                    let next = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.changed() => return,
                    };
                    let Some(next) = next else { break };
                    if let Ok(payload) = next.get_payload::<String>() {
                        message(payload);
                    }
                }
                tracing::warn!(channel, "subscription lost; subscribing again");
            }
            Err(e) => tracing::warn!(error = %e, channel, "cannot subscribe; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
