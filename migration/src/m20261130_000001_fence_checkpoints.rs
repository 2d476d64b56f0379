//! Fencing tokens on checkpoints, and a lookup of parked streams.
//!
//! `lease_epoch` is the epoch of the partition lease under which a
//! checkpoint was last written: a worker whose lease was taken over holds a
//! lower epoch and is refused. The dead-letter index serves "is this stream
//! parked for this projection?", asked once per applied batch.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ProjectionCheckpoints {
    Table,
    LeaseEpoch,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Projection,
    StreamId,
}

const INDEX: &str = "dead_letters_projection_stream";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProjectionCheckpoints::Table)
                    .add_column(
                        ColumnDef::new(ProjectionCheckpoints::LeaseEpoch)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(DeadLetters::Table)
                    .col(DeadLetters::Projection)
                    .col(DeadLetters::StreamId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(DeadLetters::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ProjectionCheckpoints::Table)
                    .drop_column(ProjectionCheckpoints::LeaseEpoch)
                    .to_owned(),
            )
            .await
    }
}
