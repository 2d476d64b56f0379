//! Reading `account_balance_history`.

use chrono::{DateTime, Utc};
use entity::account_balance_history as history;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::read_models::from_cents;

/// An account's balance at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceAt {
    /// The balance right after the last event recorded at or before it.
    Balance(Decimal),
    /// The account was opened later.
    NotYetOpen,
    /// No such account.
    UnknownAccount,
}

/// The balance of account `id` at `at`.
pub async fn balance_at(
    db: &DatabaseConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<BalanceAt, DbErr> {
    let row = history::Entity::find()
        .filter(history::Column::AccountId.eq(id))
        .filter(history::Column::RecordedAt.lte(at))
        .order_by_desc(history::Column::Version)
        .one(db)
        .await?;
    if let Some(row) = row {
        return Ok(BalanceAt::Balance(from_cents(row.balance_cents)));
    }
    let exists =
        history::Entity::find().filter(history::Column::AccountId.eq(id)).one(db).await?.is_some();
    Ok(if exists { BalanceAt::NotYetOpen } else { BalanceAt::UnknownAccount })
}
