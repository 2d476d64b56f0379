//! Accounts belong to customers: the summary view keeps the owning customer
//! (null for accounts opened before owners were recorded, and for those
//! opened without one), indexed for "my accounts".

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum BankAccountSummaryView {
    Table,
    CustomerId,
}

const INDEX: &str = "bank_account_summary_view_customer";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BankAccountSummaryView::Table)
                    .add_column(ColumnDef::new(BankAccountSummaryView::CustomerId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(BankAccountSummaryView::Table)
                    .col(BankAccountSummaryView::CustomerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(BankAccountSummaryView::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BankAccountSummaryView::Table)
                    .drop_column(BankAccountSummaryView::CustomerId)
                    .to_owned(),
            )
            .await
    }
}
