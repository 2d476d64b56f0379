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
//! Rebuilds are exclusive per projection. On PostgreSQL a rebuild first
//! takes the projection's rebuild lock, a session-level advisory lock tried
//! with `pg_try_advisory_lock` on a connection it holds to the end (and
//! unlocks then, failed or not; a crashed process releases it with its
//! session): a second rebuild of the same projection is refused with
//! [`RebuildError::AlreadyRunning`] instead of dropping the first one's
//! shadow schema. Each projection has shadow and retired schemas of its own
//! ([`RebuildSchemas`]), so rebuilds of different projections run side by
//! side.
//!
//! SQLite (embedded): the tables are emptied and replayed in place in one
//! transaction; queries wait for it. That is already exclusive: the whole
//! rebuild is one write transaction (its first statement writes), and
//! SQLite admits one writer at a time, so a second rebuild waits for the
//! first to commit and then replays again from scratch (or gives up after
//! the busy timeout); two never interleave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use migration::rebuild::{RebuildSchemas, clean_up, create_shadow_tables, prepare, swap};
use sea_orm::sqlx::{Connection as _, PgConnection};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};

use super::projection_runtime::checkpoint::{Claim, projection_lock_id, save_checkpoint};
use super::projection_runtime::{Applier, ProjectionMonitor, RuntimeSettings};
use crate::es::changes::LocalChangeBus;
use crate::es::envelope::Position;
use crate::es::projector::{Projection, apply_events};
use crate::es::store::EventStore;

/// The tables the projection runtime keeps beside every projection's own:
/// its checkpoints and its parked events.
const RUNTIME_TABLES: &[&str] = &["projection_checkpoints", "dead_letters"];

/// What a finished rebuild reports.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: u64,
    pub elapsed: Duration,
    /// The part of `elapsed` spent replaying the event store into the new
    /// tables (the rest sets them up and swaps them in: a fixed cost), and
    /// the events it replayed (those that came meanwhile are applied in
    /// the swap).
    pub replay: Duration,
    pub replayed: u64,
    pub position: Position,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Events per second of the replay alone.
    pub fn replay_events_per_second(&self) -> f64 {
        self.replayed as f64 / self.replay.as_secs_f64().max(1e-9)
    }
}

/// Why a rebuild did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Another rebuild of the same projection holds its rebuild lock.
    #[error("a rebuild of projection {0} is already running; try again when it has finished")]
    AlreadyRunning(&'static str),
    /// The rebuild failed on its way; the live tables are untouched.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
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
    pub async fn run(&self, progress: impl FnMut(u64, u64)) -> Result<RebuildReport, RebuildError> {
        let name = self.projection.name();
        if self.projection.tables().is_empty() {
            return Err(anyhow::anyhow!("projection {name} declares no tables to rebuild").into());
        }
        if self.read_db.get_database_backend() != DbBackend::Postgres {
            return Ok(self.in_place(progress).await?);
        }
        let lock = RebuildLock::try_acquire(&self.read_url, name)
            .await?
            .ok_or(RebuildError::AlreadyRunning(name))?;
        let schemas = RebuildSchemas::of(name).map_err(anyhow::Error::from)?;
        let rebuilt = self.in_shadow(&schemas, progress).await;
        if rebuilt.is_err()
            && let Err(e) = clean_up(&self.read_db, &schemas).await
        {
            tracing::warn!(projection = name, error = %e, "rebuild leftovers not dropped; the next rebuild drops them");
        }
        lock.release().await;
        Ok(rebuilt?)
    }

    /// Replays into the projection's shadow schema, then swaps it in.
    async fn in_shadow(
        &self,
        schemas: &RebuildSchemas,
        mut progress: impl FnMut(u64, u64),
    ) -> anyhow::Result<RebuildReport> {
        let started = Instant::now();
        let total = self.store.count_after(Position::START, u64::MAX >> 1).await?;
        let target = self.shadow(schemas).await?;
        let applier = Applier {
            read_db: target.clone(),
            projection: self.projection.clone(),
            changes: Arc::new(LocalChangeBus::new(1)),
            monitor: Arc::new(ProjectionMonitor::default()),
            settings: RuntimeSettings::default(),
        };
        let (mut cursor, mut applied) = (Position::START, 0u64);
        let replaying = Instant::now();
        loop {
            let batch = self.store.read_committed(cursor, self.batch_size).await?;
            let Some(last) = batch.last().map(|e| e.position) else { break };
            cursor = applier.apply(&Claim::unleased(self.projection.name()), &batch, None).await?;
            cursor = cursor.max(last);
            applied += batch.len() as u64;
            progress(applied, total.max(applied));
        }
        let replay = replaying.elapsed();
        let (position, late) = self.swap_in(&target, schemas, cursor).await?;
        target.close().await.ok();
        clean_up(&self.read_db, schemas).await?;
        let (events, elapsed) = (applied + late, started.elapsed());
        Ok(RebuildReport { events, elapsed, replay, replayed: applied, position })
    }

    /// A connection whose unqualified names resolve to a fresh shadow
    /// schema, and only to it: the projection's tables and the runtime's
    /// ([`RUNTIME_TABLES`]), empty, shaped like the live ones. A table the
    /// projection uses without declaring it is missing there, so the
    /// rebuild fails instead of writing anywhere else.
    async fn shadow(&self, schemas: &RebuildSchemas) -> anyhow::Result<DatabaseConnection> {
        prepare(&self.read_db, schemas).await?;
        let tables: Vec<&str> =
            self.projection.tables().iter().chain(RUNTIME_TABLES).copied().collect();
        create_shadow_tables(&self.read_db, schemas, &tables).await?;
        let mut options = ConnectOptions::new(self.read_url.clone());
        options.max_connections(2).sqlx_logging(false).set_schema_search_path(&schemas.shadow);
        Ok(Database::connect(options).await?)
    }

    /// Catches the shadow tables up under the exclusive lock and swaps them in.
    async fn swap_in(
        &self,
        shadow: &DatabaseConnection,
        schemas: &RebuildSchemas,
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
        swap(&txn, schemas, self.projection.tables()).await?;
        let name = self.projection.name();
        // Every checkpoint of the projection moves to the rebuilt position;
        // lease epochs stay, so a fenced-off worker stays fenced off. Each
        // is marked as possibly having parked events (the dead letters are
        // replaced below): the next batch of each key looks.
        for key in &self.checkpoint_keys {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO public.projection_checkpoints (name, tx_id, position, updated_at, parked) VALUES ($1, $2, $3, now(), true) \
                 ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, updated_at = now(), parked = true",
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
                 FROM {}.dead_letters WHERE projection = $1",
                schemas.shadow
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
            apply_events(self.projection.as_ref(), txn, &refs).await?;
            applied += batch.len() as u64;
            cursor = last;
            progress(applied);
        }
        Ok((cursor, applied))
    }

    /// SQLite: empties and replays the tables in place, in one transaction.
    async fn in_place(&self, mut progress: impl FnMut(u64, u64)) -> anyhow::Result<RebuildReport> {
        let started = Instant::now();
        let total = self.store.count_after(Position::START, u64::MAX >> 1).await?;
        let txn = self.read_db.begin().await?;
        let replaying = Instant::now();
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
        let replay = replaying.elapsed();
        let elapsed = started.elapsed();
        Ok(RebuildReport { events: applied, elapsed, replay, replayed: applied, position: cursor })
    }
}

/// A projection's rebuild lock: a session-level advisory lock on a
/// connection of its own, held for the whole rebuild. It is not the
/// projection's apply lock ([`projection_lock_id`], which live appliers hold
/// shared and the swap takes exclusively): holding that for the whole
/// replay would stop the live projector.
struct RebuildLock {
    session: PgConnection,
    id: i64,
}

impl RebuildLock {
    /// Takes the lock of `projection`'s rebuilds, or `None` when another
    /// session holds it.
    async fn try_acquire(url: &str, projection: &str) -> anyhow::Result<Option<Self>> {
        let mut session = PgConnection::connect(url)
            .await
            .context("Failed to open the rebuild lock's connection")?;
        let id = projection_lock_id(&format!("rebuild {projection}"));
        let taken: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(id)
            .fetch_one(&mut session)
            .await
            .context("Failed to try the rebuild lock")?;
        Ok(taken.then_some(RebuildLock { session, id }))
    }

    /// Unlocks and closes the session. Best effort: if either fails, the
    /// session ends with the connection anyway, and the lock with it.
    async fn release(mut self) {
        let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.id)
            .execute(&mut self.session)
            .await;
        if let Err(e) = unlocked {
            tracing::warn!(error = %e, "rebuild lock not released; it goes with the session");
        }
        let _ = self.session.close().await;
    }
}
