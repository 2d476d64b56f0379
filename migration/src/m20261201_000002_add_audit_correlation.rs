//! The audit log keeps each event's correlation id in a column of its own,
//! indexed with the commit order, so that every event of one business
//! transaction is found across streams without scanning the log. Rows
//! logged before this migration get theirs from their metadata.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    CorrelationId,
    TxId,
    Position,
}

const INDEX: &str = "audit_log_correlation_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .add_column(ColumnDef::new(AuditLog::CorrelationId).string_len(128).null())
                    .to_owned(),
            )
            .await?;
        let backfill = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "UPDATE audit_log SET correlation_id = LEFT(metadata->>'correlation_id', 128)"
            }
            _ => {
                "UPDATE audit_log SET correlation_id = \
                 substr(json_extract(metadata, '$.correlation_id'), 1, 128)"
            }
        };
        manager.get_connection().execute_unprepared(backfill).await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(AuditLog::Table)
                    .col(AuditLog::CorrelationId)
                    .col(AuditLog::TxId)
                    .col(AuditLog::Position)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(AuditLog::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .drop_column(AuditLog::CorrelationId)
                    .to_owned(),
            )
            .await
    }
}
