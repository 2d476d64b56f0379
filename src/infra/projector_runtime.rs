//! Drives one projection: reads the log after its checkpoint in commit
//! order, applies a batch and the new checkpoint in one read-database
//! transaction, then announces the changed rows. Applying is therefore
//! effectively exactly-once: a crash before commit replays the batch, a crash
//! after it resumes past it.
//!
//! A batch that fails is retried event by event; an event that keeps failing
//! is parked in `dead_letters` with its error, and the projection goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use entity::{dead_letters, projection_checkpoints};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    DatabaseConnection, DatabaseTransaction, EntityTrait, TransactionTrait,
};
use tokio::sync::watch;

use crate::es::changes::{Change, ChangeBus};
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::projector::{Projection, ProjectionError};
use crate::es::store::EventStore;

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub batch_size: u64,
    /// Attempts at one event before it is parked.
    pub max_attempts: u32,
    /// Fallback poll when no in-process commit signal arrives.
    pub poll_interval: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            batch_size: 500,
            max_attempts: 5,
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// Live state of the projections running in this process.
#[derive(Default)]
pub struct ProjectionMonitor {
    states: Mutex<HashMap<&'static str, RunState>>,
    /// Bumped after every checkpoint commit, for read-your-writes waiters.
    progress: watch::Sender<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub status: &'static str,
    pub last_error: Option<String>,
}

impl ProjectionMonitor {
    fn set(&self, name: &'static str, status: &'static str, last_error: Option<String>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let entry = states.entry(name).or_default();
        entry.status = status;
        if last_error.is_some() || status == "RUNNING" {
            entry.last_error = last_error.or(entry.last_error.take());
        }
    }

    pub fn state(&self, name: &str) -> Option<RunState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }
}

pub struct ProjectorRuntime {
    pub store: Arc<dyn EventStore>,
    pub read_db: DatabaseConnection,
    pub projection: Arc<dyn Projection>,
    pub changes: Arc<dyn ChangeBus>,
    pub monitor: Arc<ProjectionMonitor>,
    pub settings: RuntimeSettings,
}

impl ProjectorRuntime {
    /// Runs until `shutdown` turns true.
    pub async fn run(
        self,
        mut commits: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let name = self.projection.name();
        self.monitor.set(name, "RUNNING", None);
        let mut checkpoint = load_checkpoint(&self.read_db, name).await?;
        loop {
            match self.catch_up(&mut checkpoint).await {
                Ok(()) => self.monitor.set(name, "RUNNING", None),
                Err(e) => {
                    tracing::error!(projection = name, error = %e, "projection stalled; retrying");
                    self.monitor.set(name, "FAILING", Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = commits.changed() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.monitor.set(name, "STOPPED", None);
        Ok(())
    }

    /// Applies everything visible after `checkpoint`.
    pub async fn catch_up(&self, checkpoint: &mut Position) -> anyhow::Result<()> {
        loop {
            let batch = self.store.read_committed(*checkpoint, self.settings.batch_size).await?;
            let Some(last) = batch.last().map(|e| e.position) else { return Ok(()) };
            let changes = match self.apply_batch(&batch).await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!(projection = self.projection.name(), error = %e, "batch failed; applying one by one");
                    self.apply_singly(&batch).await?
                }
            };
            *checkpoint = last;
            self.monitor.progress.send_modify(|n| *n += 1);
            self.changes.publish(changes);
            if (batch.len() as u64) < self.settings.batch_size {
                return Ok(());
            }
        }
    }

    async fn apply_batch(&self, batch: &[RecordedEvent]) -> Result<Vec<Change>, ProjectionError> {
        let txn = self.read_db.begin().await?;
        let mut changes = Vec::new();
        for event in batch {
            changes.extend(self.projection.apply(&txn, event).await?);
        }
        save_checkpoint(&txn, self.projection.name(), batch[batch.len() - 1].position).await?;
        txn.commit().await?;
        Ok(changes)
    }

    async fn apply_singly(&self, batch: &[RecordedEvent]) -> anyhow::Result<Vec<Change>> {
        let mut changes = Vec::new();
        for event in batch {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.apply_batch(std::slice::from_ref(event)).await {
                    Ok(c) => {
                        changes.extend(c);
                        break;
                    }
                    Err(e) if attempt >= self.settings.max_attempts => {
                        self.park(event, &e, attempt).await?;
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await,
                }
            }
        }
        Ok(changes)
    }

    async fn park(
        &self,
        event: &RecordedEvent,
        error: &ProjectionError,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let name = self.projection.name();
        tracing::error!(projection = name, position = %event.position, event_type = %event.event_type, error = %error, "event parked as dead letter");
        let txn = self.read_db.begin().await?;
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
            OnConflict::columns([dead_letters::Column::Projection, dead_letters::Column::EventId])
                .update_columns([dead_letters::Column::Error, dead_letters::Column::Attempts])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        save_checkpoint(&txn, name, event.position).await?;
        txn.commit().await?;
        self.monitor.set(name, "RUNNING", Some(error.to_string()));
        Ok(())
    }
}

pub async fn load_checkpoint(db: &DatabaseConnection, name: &str) -> anyhow::Result<Position> {
    let row = projection_checkpoints::Entity::find_by_id(name.to_owned()).one(db).await?;
    Ok(row.map(|r| Position { tx: r.tx_id, pos: r.position }).unwrap_or_default())
}

async fn save_checkpoint(
    txn: &DatabaseTransaction,
    name: &str,
    position: Position,
) -> Result<(), sea_orm::DbErr> {
    projection_checkpoints::Entity::insert(projection_checkpoints::ActiveModel {
        name: Set(name.to_owned()),
        tx_id: Set(position.tx),
        position: Set(position.pos),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(projection_checkpoints::Column::Name)
            .update_columns([
                projection_checkpoints::Column::TxId,
                projection_checkpoints::Column::Position,
                projection_checkpoints::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}
