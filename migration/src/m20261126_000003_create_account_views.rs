//! Read tables of the bank: the account summary, the balance history behind
//! "balance at time T", and the audit log of every event. Money is stored in
//! integer cents so both backends keep it exact.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum BankAccountSummaryView {
    Table,
    AccountId,
    Owner,
    BalanceCents,
    OverdraftLimitCents,
    TotalDepositsCents,
    TotalWithdrawalsCents,
    OpenedAt,
    LastTransactionAt,
    Version,
    Position,
}

#[derive(DeriveIden)]
enum AccountBalanceHistory {
    Table,
    AccountId,
    Version,
    BalanceCents,
    RecordedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use BankAccountSummaryView as V;
        manager
            .create_table(
                Table::create()
                    .table(V::Table)
                    .col(pk_uuid(V::AccountId))
                    .col(string(V::Owner))
                    .col(big_integer(V::BalanceCents))
                    .col(big_integer(V::OverdraftLimitCents))
                    .col(big_integer(V::TotalDepositsCents))
                    .col(big_integer(V::TotalWithdrawalsCents))
                    .col(timestamp_with_time_zone(V::OpenedAt))
                    .col(timestamp_with_time_zone(V::LastTransactionAt))
                    .col(big_integer(V::Version))
                    .col(big_integer(V::Position))
                    .to_owned(),
            )
            .await?;
        use AccountBalanceHistory as H;
        manager
            .create_table(
                Table::create()
                    .table(H::Table)
                    .col(uuid(H::AccountId))
                    .col(big_integer(H::Version))
                    .col(big_integer(H::BalanceCents))
                    .col(timestamp_with_time_zone(H::RecordedAt))
                    .primary_key(Index::create().col(H::AccountId).col(H::Version))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("account_balance_history_time_idx")
                    .table(H::Table)
                    .col(H::AccountId)
                    .col(H::RecordedAt)
                    .to_owned(),
            )
            .await?;
        use AuditLog as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .col(big_integer(A::Position).primary_key())
                    .col(big_integer(A::TxId))
                    .col(uuid(A::EventId))
                    .col(string_len(A::StreamType, 100))
                    .col(uuid(A::StreamId))
                    .col(big_integer(A::Version))
                    .col(string_len(A::EventType, 100))
                    .col(integer(A::SchemaVersion))
                    .col(json(A::Payload))
                    .col(json(A::Metadata))
                    .col(timestamp_with_time_zone(A::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_stream_idx")
                    .table(A::Table)
                    .col(A::StreamType)
                    .col(A::StreamId)
                    .col(A::Version)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            AccountBalanceHistory::Table.into_iden(),
            BankAccountSummaryView::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
