//! Connecting to the databases and migrating them.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

/// Opens a pool for `url`. SQLite gets one connection: it has a single
/// writer, and one connection makes transactions queue instead of failing
/// with "database is locked".
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    use anyhow::Context as _;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10));
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

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    use anyhow::Context as _;
    Migrator::up(db, None).await.context("Failed to migrate the database")
}

pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}
