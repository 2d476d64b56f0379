//! Connecting to the databases and migrating them.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait,
};

/// Opens a pool for `url`. SQLite gets one connection: it has a single
/// writer, and one connection makes transactions queue instead of failing
/// with "database is locked".
///
/// A connection is not pinged before each checkout (that ping was one
/// extra round trip per statement outside a transaction and per
/// transaction): a dead connection shows as an error on its first use (a
/// request answers `INTERNAL`; the writer, relay and projector steps retry)
/// and the pool then drops it.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    use anyhow::Context as _;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10));
    // Each checkout reports how long it waited (see `pool_waits`); at
    // trace level, so no log shows it unless asked.
    options
        .map_sqlx_postgres_pool_opts(|o| o.acquire_time_level(log::LevelFilter::Trace))
        .map_sqlx_sqlite_pool_opts(|o| o.acquire_time_level(log::LevelFilter::Trace));
    if url.starts_with("sqlite:") {
        options.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .create_if_missing(true)
        });
    } else {
        options.max_connections(max_connections).min_connections(1);
    }
    let db = Database::connect(options).await.context("Failed to connect to the database")?;
    Ok(db)
}

/// A connection pool's state now.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    /// Which pool: `events` (the event store's) or `read`.
    pub name: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    pub idle: u32,
    /// Most connections the pool may open.
    pub max: u32,
}

impl PoolStats {
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

/// The state of `db`'s pool, named `name`.
pub fn pool_stats(name: &'static str, db: &DatabaseConnection) -> PoolStats {
    let (open, idle, max) = if is_postgres(db) {
        let pool = db.get_postgres_connection_pool();
        (pool.size(), pool.num_idle() as u32, pool.options().get_max_connections())
    } else {
        let pool = db.get_sqlite_connection_pool();
        (pool.size(), pool.num_idle() as u32, pool.options().get_max_connections())
    };
    PoolStats { name, open, idle, max }
}

/// Key of the advisory lock that serializes migrations between processes.
const MIGRATION_LOCK: i64 = 0x6576_656e_7466_6f6c;

/// Applies every pending migration. On PostgreSQL, processes started
/// together (an API, a relay and projectors) take turns under an advisory
/// lock, in one transaction, so two never create one table.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if !is_postgres(db) {
        return Migrator::up(db, None).await.context("Failed to migrate the database");
    }
    let txn = db.begin().await.context("Failed to start the migration")?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK.into()],
    ))
    .await
    .context("Failed to take the migration lock")?;
    Migrator::up(&txn, None).await.context("Failed to migrate the database")?;
    txn.commit().await.context("Failed to commit the migration")
}

pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}
