//! `minPosition`: a query waits, bounded, until the projections it reads
//! have applied the event at the given position.
//!
//! Waiting costs no polling. Waiters park on the process's
//! [`ProgressBoard`], which hears of every checkpoint commit: from the
//! appliers of this process, and from projectors elsewhere through the
//! Redis progress channel. One shared refresh per process reads the stored
//! checkpoints: at start, after the progress subscription is (re)made
//! (announcements were missed meanwhile), and, while anyone waits, every
//! [`ReadYourWrites::refresh_every`], as a safety net for lost
//! announcements and for writers that announce nothing (an operator's
//! rebuild). However many requests wait, the database sees that one reader.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use entity::projection_checkpoints;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::projection_runtime::ProgressBoard;
use super::redis::RedisSettings;
use super::redis::progress::RedisProgress;
use crate::es::envelope::Position;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    #[error("projection did not reach the requested position within {0:?}")]
    Timeout(Duration),
}

pub struct ReadYourWrites {
    pub read_db: DatabaseConnection,
    pub board: Arc<ProgressBoard>,
    /// Longest a request waits, for all its `minPosition` fields together.
    pub timeout: Duration,
    /// With a partitioned transport every partition keeps its own
    /// checkpoint, and relay watermarks (recorded in Redis) make them
    /// comparable to any position.
    pub redis: Option<RedisProgress>,
    /// Every projection's name (for the shared refresh).
    pub projections: Vec<&'static str>,
    /// How often the shared refresh runs while anyone waits: a safety net
    /// where progress is announced (projectors in this process, or Redis),
    /// the only way to learn of progress otherwise.
    pub refresh_every: Duration,
    /// Asks for a refresh now (the progress subscription was made again).
    pub resync: Arc<Notify>,
    /// Refreshes made, for `/metrics`.
    pub refreshes: AtomicU64,
}

impl ReadYourWrites {
    /// Resolves once every key of `projection` is at or past `position`,
    /// or fails at `deadline`. Owns what it needs, so several fields of a
    /// request can share it.
    pub fn wait(
        &self,
        projection: &str,
        position: Position,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), WaitError>> + Send + 'static {
        let reached = self.board.reached(self.keys(projection), position);
        let timeout = self.timeout;
        async move {
            tokio::time::timeout_at(deadline, reached)
                .await
                .map_err(|_| WaitError::Timeout(timeout))
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.board.waiting()
    }

    /// Keeps the board current (see the module's documentation) until
    /// `shutdown`.
    pub async fn follow(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut due = true;
        loop {
            if due && let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot read the checkpoints for minPosition waits");
            }
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return Ok(()),
                _ = self.resync.notified() => due = true,
                _ = tokio::time::sleep(self.refresh_every) => due = self.waiting() > 0,
            }
        }
    }

    /// Posts every stored checkpoint to the board: one query, and one MGET
    /// of the delivered positions in Redis.
    pub async fn refresh(&self) -> Result<(), sea_orm::DbErr> {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        for row in projection_checkpoints::Entity::find().all(&self.read_db).await? {
            self.board.advance(&row.name, Position { tx: row.tx_id, pos: row.position });
        }
        if let Some(r) = &self.redis {
            let keys: Vec<String> = self.projections.iter().flat_map(|p| self.keys(p)).collect();
            let progress: Vec<String> =
                self.projections.iter().flat_map(|p| progress_keys(&r.settings, p)).collect();
            for (key, delivered) in keys.iter().zip(r.get(&progress).await) {
                if let Some(position) = delivered {
                    self.board.advance(key, position);
                }
            }
        }
        Ok(())
    }

    /// The checkpoint keys of one projection.
    pub fn keys(&self, projection: &str) -> Vec<String> {
        match &self.redis {
            Some(r) => (0..r.settings.partitions)
                .map(|p| RedisSettings::checkpoint_key(projection, p))
                .collect(),
            None => vec![projection.to_owned()],
        }
    }

    /// Each checkpoint of a projection, as stored (read now, for reports):
    /// one per partition with Redis, in partition order; one without.
    pub async fn checkpoints(&self, projection: &str) -> Result<Vec<Position>, sea_orm::DbErr> {
        let keys = self.keys(projection);
        let rows = projection_checkpoints::Entity::find()
            .filter(projection_checkpoints::Column::Name.is_in(keys.iter().map(String::as_str)))
            .all(&self.read_db)
            .await?;
        let delivered = match &self.redis {
            Some(r) => r.get(&progress_keys(&r.settings, projection)).await,
            None => vec![None; keys.len()],
        };
        let at = |(key, delivered): (&String, &Option<Position>)| {
            let stored = rows
                .iter()
                .find(|r| &r.name == key)
                .map(|r| Position { tx: r.tx_id, pos: r.position })
                .unwrap_or_default();
            stored.max(delivered.unwrap_or_default())
        };
        Ok(keys.iter().zip(delivered.iter()).map(at).collect())
    }
}

/// The Redis keys of a projection's delivered positions, one per partition.
fn progress_keys(settings: &RedisSettings, projection: &str) -> Vec<String> {
    (0..settings.partitions).map(|p| settings.progress_key(projection, p)).collect()
}
