use sea_orm::entity::prelude::*;

/// One row per bank account; money in integer cents.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "bank_account_summary_view")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    pub owner: String,
    pub balance_cents: i64,
    pub overdraft_limit_cents: i64,
    pub total_deposits_cents: i64,
    pub total_withdrawals_cents: i64,
    pub opened_at: DateTimeUtc,
    pub last_transaction_at: DateTimeUtc,
    pub version: i64,
    pub position: i64,
    /// The customer who owns the account, if any.
    pub customer_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
