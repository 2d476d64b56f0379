//! Applies events to one projection, effectively exactly once: a batch and
//! the new checkpoint in one read-database transaction (skipping what the
//! checkpoint already covers), then the changed rows are announced. A crash
//! before commit replays the batch, a crash after it resumes past it. A
//! batch that fails is retried event by event; an event that keeps failing
//! is parked in `dead_letters` with its error, and the projection goes on.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::dead_letters;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    DatabaseConnection, EntityTrait, TransactionTrait,
};

use super::checkpoint::{lock_checkpoint, save_checkpoint};
use super::monitor::{ProjectionMonitor, ProjectionStatus};
use crate::es::changes::{Change, ChangeBus};
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::projector::{Projection, ProjectionError};

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub batch_size: u64,
    /// Attempts at one event before it is parked.
    pub max_attempts: u32,
    /// Fallback poll when no commit signal arrives.
    pub poll_interval: Duration,
    /// After a small batch, wait this long before reading again so the next
    /// batch is larger: fewer transactions per event under load, at the cost
    /// of this much latency when idle.
    pub linger: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            batch_size: 500,
            max_attempts: 5,
            poll_interval: Duration::from_millis(100),
            linger: Duration::from_millis(5),
        }
    }
}

/// Applies events of one projection under a checkpoint key (the projection
/// name, or `name#partition` when the log is partitioned).
#[derive(Clone)]
pub struct Applier {
    pub read_db: DatabaseConnection,
    pub projection: Arc<dyn Projection>,
    pub changes: Arc<dyn ChangeBus>,
    pub monitor: Arc<ProjectionMonitor>,
    pub settings: RuntimeSettings,
}

impl Applier {
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Applies the events after the checkpoint of `key`, then moves the
    /// checkpoint to the last event or to `watermark` (a position up to which
    /// the caller guarantees it has delivered every event of this key),
    /// whichever is later. Returns the new checkpoint.
    pub async fn apply(
        &self,
        key: &str,
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> anyhow::Result<Position> {
        match self.apply_once(key, events, watermark).await {
            Ok((checkpoint, changes)) => {
                self.committed(changes);
                Ok(checkpoint)
            }
            Err(e) if events.len() > 1 => {
                tracing::warn!(projection = self.name(), error = %e, "batch failed; applying one by one");
                let mut checkpoint = Position::START;
                for event in events {
                    checkpoint = self.apply_with_retries(key, event).await?;
                }
                let (checkpoint, changes) =
                    self.apply_once(key, &[], watermark.max(Some(checkpoint))).await?;
                self.committed(changes);
                Ok(checkpoint)
            }
            Err(_) if events.len() == 1 => self.apply_with_retries(key, &events[0]).await,
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn committed(&self, changes: Vec<Change>) {
        self.monitor.advanced();
        self.changes.publish(changes);
    }

    async fn apply_once(
        &self,
        key: &str,
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> Result<(Position, Vec<Change>), ProjectionError> {
        let txn = self.read_db.begin().await?;
        let checkpoint = lock_checkpoint(&txn, self.name(), key).await?;
        let mut changes = Vec::new();
        let mut reached = checkpoint;
        let fresh: Vec<&RecordedEvent> =
            events.iter().filter(|e| e.position > checkpoint).collect();
        if !fresh.is_empty() {
            changes.extend(self.projection.apply_batch(&txn, &fresh).await?);
            reached = reached.max(fresh.iter().map(|e| e.position).max().unwrap_or_default());
        }
        reached = reached.max(watermark.unwrap_or_default());
        if reached > checkpoint {
            save_checkpoint(&txn, key, reached).await?;
        }
        txn.commit().await?;
        Ok((reached, changes))
    }

    async fn apply_with_retries(
        &self,
        key: &str,
        event: &RecordedEvent,
    ) -> anyhow::Result<Position> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply_once(key, std::slice::from_ref(event), None).await {
                Ok((checkpoint, changes)) => {
                    self.committed(changes);
                    return Ok(checkpoint);
                }
                Err(e) if attempt >= self.settings.max_attempts => {
                    return self.park(key, event, &e, attempt).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10 << attempt.min(5))).await,
            }
        }
    }

    async fn park(
        &self,
        key: &str,
        event: &RecordedEvent,
        error: &ProjectionError,
        attempts: u32,
    ) -> anyhow::Result<Position> {
        let name = self.name();
        tracing::error!(projection = name, position = %event.position, event_type = %event.event_type, error = %error, "event parked as dead letter");
        let txn = self.read_db.begin().await?;
        let checkpoint = lock_checkpoint(&txn, name, key).await?;
        if event.position > checkpoint {
            dead_letters::Entity::insert(dead_letters::ActiveModel {
                id: NotSet,
                projection: Set(name.to_owned()),
                position: Set(event.position.pos),
                event_id: Set(event.event_id),
                stream_type: Set(event.stream.stream_type.clone()),
                stream_id: Set(event.stream.stream_id),
                event_type: Set(event.event_type.clone()),
                error: Set(error.to_string()),
                attempts: Set(attempts as i32),
                parked_at: Set(Utc::now()),
            })
            .on_conflict(
                OnConflict::columns([
                    dead_letters::Column::Projection,
                    dead_letters::Column::EventId,
                ])
                .update_columns([dead_letters::Column::Error, dead_letters::Column::Attempts])
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            save_checkpoint(&txn, key, event.position).await?;
        }
        txn.commit().await?;
        self.monitor.set(name, ProjectionStatus::Running, Some(error.to_string()));
        self.committed(vec![]);
        Ok(checkpoint.max(event.position))
    }
}
