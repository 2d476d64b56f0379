//! Applies events to one projection, effectively exactly once.
//!
//! [`Applier`] is shared by both transports: it applies a batch and the new
//! checkpoint in one read-database transaction (skipping what the checkpoint
//! already covers), then announces the changed rows. A crash before commit
//! replays the batch, a crash after it resumes past it. A batch that fails
//! is retried event by event; an event that keeps failing is parked in
//! `dead_letters` with its error, and the projection goes on.
//!
//! [`super::in_process::ProjectorRuntime`] is the in-process transport: it reads the event log
//! directly, in commit order, woken by local commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use entity::{dead_letters, projection_checkpoints};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, QuerySelect, TransactionTrait,
};
use tokio::sync::watch;

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
    pub fn set(&self, name: &'static str, status: &'static str, last_error: Option<String>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let entry = states.entry(name).or_default();
        entry.status = status;
        if last_error.is_some() {
            entry.last_error = last_error;
        }
    }

    pub fn state(&self, name: &str) -> Option<RunState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
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

    pub(crate) fn committed(&self, changes: Vec<Change>) {
        self.monitor.progress.send_modify(|n| *n += 1);
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
        self.monitor.set(name, "RUNNING", Some(error.to_string()));
        self.committed(vec![]);
        Ok(checkpoint.max(event.position))
    }
}

pub async fn load_checkpoint(db: &DatabaseConnection, key: &str) -> anyhow::Result<Position> {
    let row = projection_checkpoints::Entity::find_by_id(key.to_owned()).one(db).await?;
    Ok(row.map(|r| Position { tx: r.tx_id, pos: r.position }).unwrap_or_default())
}

/// The advisory lock a rebuild takes exclusively to swap a projection's
/// tables while no applier of it is mid-transaction.
pub fn projection_lock_id(projection: &str) -> i64 {
    // FNV-1a: stable across processes and releases.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in projection.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Reads the checkpoint inside `txn`, holding its row lock on PostgreSQL so
/// two appliers of one key (say, a worker that lost its lease and the one
/// that took over) serialize instead of applying an event twice. Also takes
/// the projection's advisory lock in shared mode (see rebuilds).
async fn lock_checkpoint(
    txn: &DatabaseTransaction,
    projection: &str,
    key: &str,
) -> Result<Position, sea_orm::DbErr> {
    let postgres = sea_orm::ConnectionTrait::get_database_backend(txn) == DbBackend::Postgres;
    if postgres {
        let lock = sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock_shared($1)",
            [projection_lock_id(projection).into()],
        );
        sea_orm::ConnectionTrait::execute_raw(txn, lock).await?;
    }
    let select = || {
        let query = projection_checkpoints::Entity::find_by_id(key.to_owned());
        if postgres { query.lock_exclusive() } else { query }
    };
    if let Some(row) = select().one(txn).await? {
        return Ok(Position { tx: row.tx_id, pos: row.position });
    }
    // First use of this key. The row must exist to be locked; inserting it
    // blocks on a concurrent insert of the same key until that transaction
    // ends. (Not on SQLite: it has one writer anyway, and must not take its
    // write lock this early, while a process manager's command on another
    // connection has to commit.)
    if !postgres {
        return Ok(Position::START);
    }
    projection_checkpoints::Entity::insert(projection_checkpoints::ActiveModel {
        name: Set(key.to_owned()),
        tx_id: Set(0),
        position: Set(0),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(OnConflict::column(projection_checkpoints::Column::Name).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    Ok(select()
        .one(txn)
        .await?
        .map(|r| Position { tx: r.tx_id, pos: r.position })
        .unwrap_or_default())
}

pub(crate) async fn save_checkpoint<C: sea_orm::ConnectionTrait>(
    db: &C,
    key: &str,
    position: Position,
) -> Result<(), sea_orm::DbErr> {
    projection_checkpoints::Entity::insert(projection_checkpoints::ActiveModel {
        name: Set(key.to_owned()),
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
    .exec_without_returning(db)
    .await?;
    Ok(())
}
