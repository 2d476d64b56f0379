//! Settings of the deployment that every process must share and that can
//! no longer change once data depends on them. For now one: the number of
//! partition streams (`PARTITIONS`), recorded by the first process that
//! runs with Redis; projector checkpoints are kept per partition, so a
//! different count would make consumers skip events.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum DeploymentSettings {
    Table,
    Name,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeploymentSettings::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DeploymentSettings::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DeploymentSettings::Value).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DeploymentSettings::Table).to_owned()).await
    }
}
