//! Bookkeeping of the projector runtime: one checkpoint per projection and
//! the dead letters of events a projector could not apply.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ProjectionCheckpoints {
    Table,
    Name,
    TxId,
    Position,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    Projection,
    Position,
    EventId,
    StreamType,
    StreamId,
    EventType,
    Error,
    Attempts,
    ParkedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProjectionCheckpoints::Table)
                    .col(string_len(ProjectionCheckpoints::Name, 100).primary_key())
                    .col(big_integer(ProjectionCheckpoints::TxId))
                    .col(big_integer(ProjectionCheckpoints::Position))
                    .col(timestamp_with_time_zone(ProjectionCheckpoints::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .col(big_pk_auto(DeadLetters::Id))
                    .col(string_len(DeadLetters::Projection, 100))
                    .col(big_integer(DeadLetters::Position))
                    .col(uuid(DeadLetters::EventId))
                    .col(string_len(DeadLetters::StreamType, 100))
                    .col(uuid(DeadLetters::StreamId))
                    .col(string_len(DeadLetters::EventType, 100))
                    .col(text(DeadLetters::Error))
                    .col(integer(DeadLetters::Attempts))
                    .col(timestamp_with_time_zone(DeadLetters::ParkedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dead_letters_projection_event_key")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::Projection)
                    .col(DeadLetters::EventId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DeadLetters::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ProjectionCheckpoints::Table).to_owned()).await
    }
}
