//! `minPosition`: a query waits, bounded, until the projections it reads
//! have applied the event at the given position.

use std::sync::Arc;
use std::time::Duration;

use entity::projection_checkpoints;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::projection_runtime::ProjectionMonitor;
use super::redis::RedisSettings;
use super::redis::progress::RedisProgress;
use crate::es::envelope::Position;

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("projection did not reach the requested position within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

pub struct ReadYourWrites {
    pub read_db: DatabaseConnection,
    pub monitor: Arc<ProjectionMonitor>,
    pub timeout: Duration,
    /// With a partitioned transport every partition keeps its own
    /// checkpoint, and relay watermarks (recorded in Redis) make them
    /// comparable to any position.
    pub redis: Option<RedisProgress>,
}

impl ReadYourWrites {
    /// Returns once every named projection's checkpoint is at or past `position`.
    pub async fn wait(&self, projections: &[&str], position: Position) -> Result<(), WaitError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut progress = self.monitor.progress();
        loop {
            if self.reached(projections, position).await? {
                return Ok(());
            }
            // Projectors in this process signal progress; those elsewhere
            // are seen by polling.
            let tick = tokio::time::sleep(Duration::from_millis(10));
            tokio::select! {
                _ = progress.changed() => {}
                _ = tick => {}
                _ = tokio::time::sleep_until(deadline) => return Err(WaitError::Timeout(self.timeout)),
            }
        }
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

    /// How far a projection has applied everything: the lowest of its keys.
    pub async fn checkpoint(&self, projection: &str) -> Result<Position, sea_orm::DbErr> {
        let keys = self.keys(projection);
        let rows = projection_checkpoints::Entity::find()
            .filter(projection_checkpoints::Column::Name.is_in(keys.iter().map(String::as_str)))
            .all(&self.read_db)
            .await?;
        let delivered = match &self.redis {
            Some(r) => {
                let progress: Vec<String> = (0..r.settings.partitions)
                    .map(|p| r.settings.progress_key(projection, p))
                    .collect();
                r.get(&progress).await
            }
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
        Ok(keys.iter().zip(delivered.iter()).map(at).min().unwrap_or_default())
    }

    async fn reached(
        &self,
        projections: &[&str],
        position: Position,
    ) -> Result<bool, sea_orm::DbErr> {
        for projection in projections {
            if self.checkpoint(projection).await? < position {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
