//! Each checkpoint row says whether its projection may have parked events
//! (`parked`). A projector's transaction reads it with the checkpoint it
//! locks anyway, and looks for parked streams among its batch only when
//! it is set: every transaction that parks an event sets it under the
//! same row lock. A projector clears it when its projection has no parked
//! event left. Rows from before this migration start set, so the first
//! batch of each looks once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ProjectionCheckpoints {
    Table,
    Parked,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProjectionCheckpoints::Table)
                    .add_column(
                        ColumnDef::new(ProjectionCheckpoints::Parked)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProjectionCheckpoints::Table)
                    .drop_column(ProjectionCheckpoints::Parked)
                    .to_owned(),
            )
            .await
    }
}
