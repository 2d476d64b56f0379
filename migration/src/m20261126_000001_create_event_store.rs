//! The event store: the append-only `events` table (also the outbox),
//! snapshots and the command log used for idempotent commands.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Position,
    TxId,
    EventId,
    StreamType,
    StreamId,
    Version,
    EventType,
    SchemaVersion,
    Payload,
    Metadata,
    RecordedAt,
}

#[derive(DeriveIden)]
enum Snapshots {
    Table,
    StreamType,
    StreamId,
    Version,
    StateVersion,
    State,
    TakenAt,
}

#[derive(DeriveIden)]
enum CommandLog {
    Table,
    CommandId,
    StreamType,
    StreamId,
    Result,
    RecordedAt,
}

/// Immutability enforced by the database itself, not only by the code.
const PG_IMMUTABLE: &str = r#"
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are immutable';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();
"#;

const SQLITE_IMMUTABLE: &str = r#"
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // The id of the writing transaction orders the outbox by commit
        // visibility on PostgreSQL; SQLite has a single writer, so the
        // position alone is already commit order there.
        let mut tx_id = big_integer(Events::TxId);
        match backend {
            DbBackend::Postgres => {
                tx_id.default(Expr::cust("(pg_current_xact_id()::text::bigint)"))
            }
            _ => tx_id.default(0),
        };
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Position))
                    .col(tx_id)
                    .col(uuid_uniq(Events::EventId))
                    .col(string_len(Events::StreamType, 100))
                    .col(uuid(Events::StreamId))
                    .col(big_integer(Events::Version))
                    .col(string_len(Events::EventType, 100))
                    .col(integer(Events::SchemaVersion))
                    .col(json(Events::Payload))
                    .col(json(Events::Metadata))
                    .col(timestamp_with_time_zone(Events::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_stream_version_key")
                    .table(Events::Table)
                    .col(Events::StreamType)
                    .col(Events::StreamId)
                    .col(Events::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_commit_order_idx")
                    .table(Events::Table)
                    .col(Events::TxId)
                    .col(Events::Position)
                    .to_owned(),
            )
            .await?;
        let immutable =
            if backend == DbBackend::Postgres { PG_IMMUTABLE } else { SQLITE_IMMUTABLE };
        manager.get_connection().execute_unprepared(immutable).await?;

        manager
            .create_table(
                Table::create()
                    .table(Snapshots::Table)
                    .col(string_len(Snapshots::StreamType, 100))
                    .col(uuid(Snapshots::StreamId))
                    .col(big_integer(Snapshots::Version))
                    .col(integer(Snapshots::StateVersion))
                    .col(json(Snapshots::State))
                    .col(timestamp_with_time_zone(Snapshots::TakenAt))
                    .primary_key(
                        Index::create().col(Snapshots::StreamType).col(Snapshots::StreamId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CommandLog::Table)
                    .col(pk_uuid(CommandLog::CommandId))
                    .col(string_len(CommandLog::StreamType, 100))
                    .col(uuid(CommandLog::StreamId))
                    .col(json(CommandLog::Result))
                    .col(timestamp_with_time_zone(CommandLog::RecordedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(CommandLog::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Snapshots::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Events::Table).to_owned()).await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS events_are_immutable()")
                .await?;
        }
        Ok(())
    }
}
