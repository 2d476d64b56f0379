//! Reading `bank_account_summary_view`.

use chrono::{DateTime, Utc};
use entity::bank_account_summary_view as view;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::read_models::{Page, from_cents, page_by_key};

/// A bank account as the summary shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSummary {
    pub id: Uuid,
    pub owner: String,
    pub balance: Decimal,
    pub overdraft_limit: Decimal,
    pub total_deposits: Decimal,
    pub total_withdrawals: Decimal,
    pub opened_at: DateTime<Utc>,
    pub last_transaction_at: DateTime<Utc>,
    /// The account stream's version this row reflects.
    pub version: i64,
    /// The customer who owns the account, if any.
    pub customer_id: Option<Uuid>,
}

impl From<view::Model> for AccountSummary {
    fn from(m: view::Model) -> Self {
        AccountSummary {
            id: m.account_id,
            owner: m.owner,
            balance: from_cents(m.balance_cents),
            overdraft_limit: from_cents(m.overdraft_limit_cents),
            total_deposits: from_cents(m.total_deposits_cents),
            total_withdrawals: from_cents(m.total_withdrawals_cents),
            opened_at: m.opened_at,
            last_transaction_at: m.last_transaction_at,
            version: m.version,
            customer_id: m.customer_id,
        }
    }
}

/// One account, if it exists.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<AccountSummary>, DbErr> {
    Ok(view::Entity::find_by_id(id).one(db).await?.map(AccountSummary::from))
}

/// Accounts in id order (ids are time-ordered UUIDs), after `after`; with
/// `owner`, only that customer's.
pub async fn page(
    db: &DatabaseConnection,
    after: Option<Uuid>,
    limit: u64,
    owner: Option<Uuid>,
) -> Result<Page<AccountSummary>, DbErr> {
    let page =
        page_by_key::<view::Entity>(db, view::Column::AccountId, after, limit, |q| match owner {
            Some(id) => q.filter(view::Column::CustomerId.eq(id)),
            None => q,
        })
        .await?;
    page.try_map(|m| Ok(AccountSummary::from(m)))
}
