//! Rebuilding a projection from the event store (never from Redis).
//!
//! PostgreSQL: the whole read schema is migrated into a shadow schema, the
//! projection replays every event into it while the live tables keep
//! answering queries (and the live projector keeps updating them), then one
//! transaction takes the projection's advisory lock exclusively (live
//! appliers hold it shared), applies the events that arrived meanwhile,
//! swaps the tables into `public` and sets every checkpoint of the
//! projection to the rebuilt position. Live appliers re-read their
//! checkpoint under that lock, so nothing is applied twice or skipped.
//!
//! SQLite (embedded): the tables are emptied and replayed in place in one
//! transaction; queries wait for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use migration::rebuild::{SHADOW, clean_up, prepare, swap};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};

use super::projection_runtime::checkpoint::{Claim, projection_lock_id, save_checkpoint};
use super::projection_runtime::{Applier, ProjectionMonitor, RuntimeSettings};
use crate::es::changes::LocalChangeBus;
use crate::es::envelope::Position;
use crate::es::projector::Projection;
use crate::es::store::EventStore;

/// What a finished rebuild reports.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: u64,
    pub elapsed: Duration,
    pub position: Position,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Rebuild {
    pub store: Arc<dyn EventStore>,
    pub read_url: String,
    pub read_db: DatabaseConnection,
    pub projection: Arc<dyn Projection>,
    /// Every checkpoint key of the projection (one per partition).
    pub checkpoint_keys: Vec<String>,
    pub batch_size: u64,
}

impl Rebuild {
    /// Runs the rebuild; `progress(applied, total)` is called after each batch.
    pub async fn run(&self, mut progress: impl FnMut(u64, u64)) -> anyhow::Result<RebuildReport> {
        let tables = self.projection.tables();
        anyhow::ensure!(
            !tables.is_empty(),
            "projection {} declares no tables to rebuild",
            self.projection.name()
        );
        let started = Instant::now();
        let total = self.store.count_after(Position::START, u64::MAX >> 1).await?;
        if self.read_db.get_database_backend() != DbBackend::Postgres {
            return self.in_place(started, total, progress).await;
        }
        let target = self.shadow().await?;
        let applier = Applier {
            read_db: target.clone(),
            projection: self.projection.clone(),
            changes: Arc::new(LocalChangeBus::new(1)),
            monitor: Arc::new(ProjectionMonitor::default()),
            settings: RuntimeSettings::default(),
        };
        let (mut cursor, mut applied) = (Position::START, 0u64);
        loop {
            let batch = self.store.read_committed(cursor, self.batch_size).await?;
            let Some(last) = batch.last().map(|e| e.position) else { break };
            cursor = applier.apply(&Claim::unleased(self.projection.name()), &batch, None).await?;
            cursor = cursor.max(last);
            applied += batch.len() as u64;
            progress(applied, total.max(applied));
        }
        let (position, late) = self.swap_in(&target, cursor).await?;
        target.close().await.ok();
        clean_up(&self.read_db).await?;
        Ok(RebuildReport { events: applied + late, elapsed: started.elapsed(), position })
    }

    /// A connection whose unqualified names resolve to a freshly migrated
    /// shadow schema.
    async fn shadow(&self) -> anyhow::Result<DatabaseConnection> {
        prepare(&self.read_db).await?;
        let mut options = ConnectOptions::new(self.read_url.clone());
        options.max_connections(2).sqlx_logging(false).set_schema_search_path(SHADOW);
        let shadow = Database::connect(options).await?;
        Migrator::up(&shadow, None).await?;
        Ok(shadow)
    }

    /// Catches the shadow tables up under the exclusive lock and swaps them in.
    async fn swap_in(
        &self,
        shadow: &DatabaseConnection,
        mut cursor: Position,
    ) -> anyhow::Result<(Position, u64)> {
        let txn = shadow.begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [projection_lock_id(self.projection.name()).into()],
        ))
        .await?;
        let late;
        (cursor, late) = self.replay(&txn, cursor, |_| {}).await?;
        swap(&txn, self.projection.tables()).await?;
        let name = self.projection.name();
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM public.projection_checkpoints WHERE name = ANY($1)",
            [self.checkpoint_keys.clone().into()],
        ))
        .await?;
        for key in &self.checkpoint_keys {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO public.projection_checkpoints (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())",
                [key.clone().into(), cursor.tx.into(), cursor.pos.into()],
            ))
            .await?;
        }
        // Dead letters follow the tables: the rebuild's own replace the old ones.
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM public.dead_letters WHERE projection = $1",
            [name.into()],
        ))
        .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "INSERT INTO public.dead_letters (projection, position, event_id, stream_type, stream_id, event_type, error, error_kind, error_reference, attempts, parked_at) \
                 SELECT projection, position, event_id, stream_type, stream_id, event_type, error, error_kind, error_reference, attempts, parked_at \
                 FROM {SHADOW}.dead_letters WHERE projection = $1"
            ),
            [name.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok((cursor, late))
    }

    /// Applies every committed event after `cursor` inside `txn`; returns
    /// the new cursor and how many events it applied.
    async fn replay(
        &self,
        txn: &DatabaseTransaction,
        mut cursor: Position,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<(Position, u64)> {
        let mut applied = 0;
        loop {
            let batch = self.store.read_committed(cursor, self.batch_size).await?;
            let Some(last) = batch.last().map(|e| e.position) else { break };
            let refs: Vec<_> = batch.iter().collect();
            self.projection.apply_batch(txn, &refs).await?;
            applied += batch.len() as u64;
            cursor = last;
            progress(applied);
        }
        Ok((cursor, applied))
    }

    async fn in_place(
        &self,
        started: Instant,
        total: u64,
        mut progress: impl FnMut(u64, u64),
    ) -> anyhow::Result<RebuildReport> {
        let txn = self.read_db.begin().await?;
        for table in self.projection.tables() {
            txn.execute_unprepared(&format!("DELETE FROM {table}")).await?;
        }
        let (cursor, applied) = self
            .replay(&txn, Position::START, |applied| progress(applied, total.max(applied)))
            .await?;
        for key in &self.checkpoint_keys {
            save_checkpoint(&txn, &Claim::unleased(key.clone()), cursor).await?;
        }
        txn.commit().await?;
        Ok(RebuildReport { events: applied, elapsed: started.elapsed(), position: cursor })
    }
}
