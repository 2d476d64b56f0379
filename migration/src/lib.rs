//! The one source of the database schema. Every table of the event store and
//! of the read side is created here; `serve` and `migrate` apply these.

pub use sea_orm_migration::prelude::*;

pub mod rebuild;

/// Runs `sql` (several statements) on PostgreSQL; nothing on SQLite. For
/// the migrations that install PostgreSQL-only triggers.
pub(crate) async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

/// The `MigrationTrait` of a module whose migration is the SQL of its
/// `UP` and `DOWN` constants, run on PostgreSQL only (SQLite has no such
/// triggers or functions, and needs none).
macro_rules! postgres_sql_migration {
    () => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::on_postgres(manager, UP).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::on_postgres(manager, DOWN).await
            }
        }
    };
}

mod m20261126_000001_create_event_store;
mod m20261126_000002_create_projection_runtime;
mod m20261126_000003_create_account_views;
mod m20261126_000004_create_shop_views;
mod m20261126_000005_notify_on_append;
mod m20261130_000001_fence_checkpoints;
mod m20261130_000002_own_accounts;
mod m20261201_000001_classify_dead_letters;
mod m20261201_000002_add_audit_correlation;
mod m20261201_000003_serialize_event_commits;
mod m20261201_000004_record_partition_count;
mod m20261201_000005_mark_parked_checkpoints;
mod m20261201_000006_create_expect_function;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_event_store::Migration),
            Box::new(m20261126_000002_create_projection_runtime::Migration),
            Box::new(m20261126_000003_create_account_views::Migration),
            Box::new(m20261126_000004_create_shop_views::Migration),
            Box::new(m20261126_000005_notify_on_append::Migration),
            Box::new(m20261130_000001_fence_checkpoints::Migration),
            Box::new(m20261130_000002_own_accounts::Migration),
            Box::new(m20261201_000001_classify_dead_letters::Migration),
            Box::new(m20261201_000002_add_audit_correlation::Migration),
            Box::new(m20261201_000003_serialize_event_commits::Migration),
            Box::new(m20261201_000004_record_partition_count::Migration),
            Box::new(m20261201_000005_mark_parked_checkpoints::Migration),
            Box::new(m20261201_000006_create_expect_function::Migration),
        ]
    }
}
