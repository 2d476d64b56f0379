//! The production transport: Redis Streams between the event store and the
//! projectors, Redis pub/sub for subscription announcements, Redis keys for
//! leases.
//!
//! - [`relay`]: tails the events table in commit order and publishes each
//!   event to its partition stream, followed by a watermark.
//! - The partition consumers live with the rest of the projection runtime,
//!   in [`crate::infra::projection_runtime`].
//! - [`lease`]: expiring ownership of a key.
//! - [`changes`]: the change bus over pub/sub.
//! - [`progress`]: delivered positions, and checkpoint commits announced
//!   to every process (over [`pubsub`]).

use std::time::Duration;

pub mod changes;
pub mod lease;
pub mod progress;
pub mod pubsub;
pub mod relay;

/// Where and how events travel through Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every key and channel, so deployments can share a Redis.
    pub prefix: String,
    /// Number of partition streams events are spread over.
    pub partitions: u32,
}

impl RedisSettings {
    pub fn stream_key(&self, partition: u32) -> String {
        format!("{}:events:{partition}", self.prefix)
    }

    pub fn changes_channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// Where projectors announce their checkpoint commits.
    pub fn progress_channel(&self) -> String {
        format!("{}:progress", self.prefix)
    }

    pub fn lease_key(&self, what: &str) -> String {
        format!("{}:lease:{what}", self.prefix)
    }

    pub fn workers_key(&self, projection: &str) -> String {
        format!("{}:workers:{projection}", self.prefix)
    }

    /// The Redis key of one partition consumer's delivered position.
    pub fn progress_key(&self, projection: &str, partition: u32) -> String {
        format!("{}:progress:{projection}:{partition}", self.prefix)
    }

    /// The checkpoint key of one partition of a projection.
    pub fn checkpoint_key(projection: &str, partition: u32) -> String {
        format!("{projection}#{partition}")
    }
}

/// The relay's checkpoint, kept in the write database next to the events.
pub const RELAY_CHECKPOINT: &str = "__relay";

/// A connection whose replies may take longer than a blocking read.
pub async fn connection(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Compares two stream entry ids (`ms-seq`).
pub fn entry_id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
