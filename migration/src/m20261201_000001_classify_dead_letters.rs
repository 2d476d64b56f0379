//! Dead letters keep their failure's kind and the reference of the log line
//! with its detail, so the API can show those instead of the error's text
//! (which may be a driver's: SQL, constraint names).
//!
//! Letters parked before this migration read as `database` failures (their
//! text is not shown), except those that only wait behind another
//! (`attempts = 0`), which read as `waiting`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    ErrorKind,
    ErrorReference,
    Attempts,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(
                        ColumnDef::new(DeadLetters::ErrorKind)
                            .string_len(20)
                            .not_null()
                            .default("database"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(ColumnDef::new(DeadLetters::ErrorReference).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(DeadLetters::Table)
                    .value(DeadLetters::ErrorKind, "waiting")
                    .and_where(Expr::col(DeadLetters::Attempts).eq(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [DeadLetters::ErrorReference, DeadLetters::ErrorKind] {
            manager
                .alter_table(
                    Table::alter().table(DeadLetters::Table).drop_column(column).to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
