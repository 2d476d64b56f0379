//! `minPosition`: a query waits, bounded, until the projections it reads
//! have applied the event at the given position.

use std::sync::Arc;
use std::time::Duration;

use entity::projection_checkpoints;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::projector_runtime::ProjectionMonitor;
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

    async fn reached(
        &self,
        projections: &[&str],
        position: Position,
    ) -> Result<bool, sea_orm::DbErr> {
        let rows = projection_checkpoints::Entity::find()
            .filter(projection_checkpoints::Column::Name.is_in(projections.iter().copied()))
            .all(&self.read_db)
            .await?;
        Ok(projections.iter().all(|name| {
            rows.iter()
                .any(|r| r.name == *name && Position { tx: r.tx_id, pos: r.position } >= position)
        }))
    }
}
