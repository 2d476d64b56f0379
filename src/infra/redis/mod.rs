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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::es::envelope::Position;

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
    /// A PEM root certificate to trust for `rediss://` (a private CA); the
    /// system's roots otherwise.
    pub ca_file: Option<PathBuf>,
}

impl RedisSettings {
    /// A client for `url` (`redis://` or `rediss://`, with a password in
    /// the URL if the server wants one). The URL is never echoed in an
    /// error: it may hold the password.
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        let invalid = |e: redis::RedisError| anyhow::anyhow!("Invalid REDIS_URL ({:?})", e.kind());
        match &self.ca_file {
            None => redis::Client::open(self.url.as_str()).map_err(invalid),
            Some(path) => {
                let root = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("Failed to read REDIS_CA_FILE {}: {e}", path.display())
                })?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(root) };
                redis::Client::build_with_tls(self.url.as_str(), certs).map_err(invalid)
            }
        }
    }

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

/// How far this process's relay has published (read from the event store
/// and appended to the partition streams), while that relay holds the
/// lease (`None` otherwise, and where no relay runs here). Consumers in the
/// same process wait on it, instead of querying the database for the
/// relay's checkpoint, before they trust an entry: what the relay read
/// from the store is as real as what its checkpoint covers, and they need
/// not wait for the checkpoint's commit.
#[derive(Clone)]
pub struct LocalRelay {
    sender: Arc<watch::Sender<Option<Position>>>,
}

impl Default for LocalRelay {
    fn default() -> Self {
        let (sender, _) = watch::channel(None);
        LocalRelay { sender: Arc::new(sender) }
    }
}

impl LocalRelay {
    /// The relay has published up to `position` (`None`: it no longer
    /// holds the lease, or does not know whether it does).
    pub fn set(&self, position: Option<Position>) {
        self.sender.send_if_modified(|p| {
            let changed = *p != position;
            *p = position;
            changed
        });
    }

    /// Waits until this process's relay has published up to `position` or
    /// later, or until `deadline`; returns how far it has published
    /// (`None` right away when it does not hold the lease).
    pub async fn reached(
        &self,
        position: Position,
        deadline: tokio::time::Instant,
    ) -> Option<Position> {
        let mut changes = self.sender.subscribe();
        let reached = changes.wait_for(|p| p.is_none_or(|p| p >= position));
        if let Ok(Ok(p)) = tokio::time::timeout_at(deadline, reached).await {
            return *p;
        }
        // Timed out: whatever it had reached.
        *self.sender.borrow()
    }
}

/// A connection whose replies may take longer than a blocking read.
pub async fn connection(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Whether Redis answers, for readiness: a `PING` on a kept connection,
/// opened again after any failure.
pub struct RedisPing {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisPing {
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        Ok(RedisPing { client: settings.client()?, conn: Default::default() })
    }

    /// `true` when Redis answered `PING` within `limit` (a stopped or
    /// unreachable server makes it `false` after `limit`, never later).
    pub async fn ping(&self, limit: Duration) -> bool {
        let attempt = async {
            let mut conn = self.conn.lock().await;
            if conn.is_none() {
                *conn = connection(&self.client).await.ok();
            }
            let Some(c) = conn.as_mut() else { return false };
            let answered = redis::cmd("PING").query_async::<String>(c).await.is_ok();
            if !answered {
                *conn = None;
            }
            answered
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(answered) => answered,
            Err(_) => {
                // The connection may be stuck; the next probe opens a new one.
                if let Ok(mut conn) = self.conn.try_lock() {
                    *conn = None;
                }
                false
            }
        }
    }
}

/// Compares two stream entry ids (`ms-seq`).
pub fn entry_id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
