//! How far each partition consumer has delivered, kept in Redis.
//!
//! A watermark tells a partition consumer that every event up to a
//! position has been published; once it has applied what came before it,
//! the partition is "at" that position even if none of those events were
//! its own. Writing that to the read database for every partition of every
//! projection after every relay batch would cost more than the events
//! themselves, so it goes to a Redis key instead (and to the database only
//! now and then). `minPosition` takes, per partition, the later of the two.

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::RedisSettings;
use crate::es::envelope::Position;

pub struct RedisProgress {
    pub settings: RedisSettings,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisProgress {
    pub fn new(settings: RedisSettings) -> anyhow::Result<Self> {
        let client = settings.client()?;
        Ok(RedisProgress { settings, client, conn: Mutex::new(None) })
    }

    /// The delivered position of each key; `None` where unknown or when
    /// Redis cannot be reached (callers then rely on the database alone).
    pub async fn get(&self, keys: &[String]) -> Vec<Option<Position>> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = super::connection(&self.client).await.ok();
        }
        let Some(conn) = guard.as_mut() else { return vec![None; keys.len()] };
        let values: redis::RedisResult<Vec<Option<String>>> =
            redis::cmd("MGET").arg(keys).query_async(conn).await;
        match values {
            Ok(values) => values.into_iter().map(|v| v.and_then(|v| v.parse().ok())).collect(),
            Err(_) => {
                *guard = None;
                vec![None; keys.len()]
            }
        }
    }
}

/// Records that a partition consumer has applied everything up to `position`.
pub async fn record(
    conn: &mut MultiplexedConnection,
    key: &str,
    position: Position,
) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(key).arg(position.to_string()).query_async(conn).await
}
