//! Bank accounts: mutations, queries and the `accountUpdated` subscription.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use entity::{account_balance_history as history, bank_account_summary_view as view};
use futures::Stream;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::pagination::{connection, page_size};
use super::{ApiError, ops::MutationPayload};
use crate::app::Services;
use crate::domain::bank::{BankAccount, BankCommand};
use crate::domain::money::Money;
use crate::projections::{account_summary, balance_history, from_cents};

/// A bank account as the summary read model shows it.
#[derive(SimpleObject, Clone)]
pub struct Account {
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
}

impl From<view::Model> for Account {
    fn from(m: view::Model) -> Self {
        Account {
            id: m.account_id,
            owner: m.owner,
            balance: from_cents(m.balance_cents),
            overdraft_limit: from_cents(m.overdraft_limit_cents),
            total_deposits: from_cents(m.total_deposits_cents),
            total_withdrawals: from_cents(m.total_withdrawals_cents),
            opened_at: m.opened_at,
            last_transaction_at: m.last_transaction_at,
            version: m.version,
        }
    }
}

#[derive(InputObject)]
pub struct OpenAccountInput {
    pub owner: String,
    pub initial_deposit: Decimal,
    /// How far the balance may go below zero. Defaults to 0.
    #[graphql(default)]
    pub overdraft_limit: Decimal,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct DepositMoneyInput {
    pub account_id: Uuid,
    pub amount: Decimal,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct WithdrawMoneyInput {
    pub account_id: Uuid,
    pub amount: Decimal,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct WriteCheckInput {
    pub account_id: Uuid,
    pub check_number: String,
    pub amount: Decimal,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(Default)]
pub struct AccountMutation;

fn positive(amount: Decimal, field: &'static str) -> Result<Money, ApiError> {
    Money::positive(amount, field).map_err(|e| ApiError::validation(e.to_string()))
}

#[Object]
impl AccountMutation {
    /// Opens a new account. With a `commandId`, the account id is derived
    /// from it, so a retried request opens the same account once.
    async fn open_account(
        &self,
        ctx: &Context<'_>,
        input: OpenAccountInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = BankCommand::OpenAccount {
            owner: input.owner,
            initial_deposit: Money::non_negative(input.initial_deposit, "initialDeposit")
                .map_err(|e| ApiError::validation(e.to_string()))?,
            overdraft_limit: Money::non_negative(input.overdraft_limit, "overdraftLimit")
                .map_err(|e| ApiError::validation(e.to_string()))?,
        };
        let id = services.new_stream_id(input.command_id);
        services.execute::<BankAccount>(id, command, input.command_id, input.expected_version).await
    }

    async fn deposit_money(
        &self,
        ctx: &Context<'_>,
        input: DepositMoneyInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = BankCommand::DepositMoney { amount: positive(input.amount, "amount")? };
        services
            .execute::<BankAccount>(
                input.account_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }

    async fn withdraw_money(
        &self,
        ctx: &Context<'_>,
        input: WithdrawMoneyInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = BankCommand::WithdrawMoney { amount: positive(input.amount, "amount")? };
        services
            .execute::<BankAccount>(
                input.account_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }

    async fn write_check(
        &self,
        ctx: &Context<'_>,
        input: WriteCheckInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = BankCommand::WriteCheck {
            check_number: input.check_number,
            amount: positive(input.amount, "amount")?,
        };
        services
            .execute::<BankAccount>(
                input.account_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }
}

#[derive(Default)]
pub struct AccountQuery;

async fn load_account(services: &Services, id: Uuid) -> Result<Option<Account>, ApiError> {
    Ok(view::Entity::find_by_id(id).one(&services.read_db).await?.map(Account::from))
}

#[Object]
impl AccountQuery {
    /// One account, or null if no such account exists.
    async fn account(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        min_position: Option<String>,
    ) -> Result<Option<Account>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[account_summary::NAME], min_position.as_deref()).await?;
        Ok(load_account(services, id).await?)
    }

    /// Accounts in id order (ids are time-ordered UUIDs).
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Account>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[account_summary::NAME], min_position.as_deref()).await?;
        let limit = page_size(first)?;
        let mut query = view::Entity::find().order_by_asc(view::Column::AccountId);
        if let Some(after) = &after {
            let after = Uuid::parse_str(after)
                .map_err(|_| ApiError::validation("after is not a cursor from this list"))?;
            query = query.filter(view::Column::AccountId.gt(after));
        }
        let rows = query.limit(limit + 1).all(&services.read_db).await.map_err(ApiError::from)?;
        let rows = rows.into_iter().map(|m| (m.account_id.to_string(), Account::from(m))).collect();
        Ok(connection(rows, limit, after.is_some()))
    }

    /// The balance right after the last event recorded at or before `at`;
    /// null if the account was not open yet. NOT_FOUND for an unknown account.
    async fn account_balance_at(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        at: DateTime<Utc>,
        min_position: Option<String>,
    ) -> Result<Option<Decimal>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[balance_history::NAME], min_position.as_deref()).await?;
        let db = &services.read_db;
        let row = history::Entity::find()
            .filter(history::Column::AccountId.eq(id))
            .filter(history::Column::RecordedAt.lte(at))
            .order_by_desc(history::Column::Version)
            .one(db)
            .await
            .map_err(ApiError::from)?;
        if let Some(row) = row {
            return Ok(Some(from_cents(row.balance_cents)));
        }
        let exists = history::Entity::find()
            .filter(history::Column::AccountId.eq(id))
            .one(db)
            .await
            .map_err(ApiError::from)?
            .is_some();
        if exists {
            Ok(None)
        } else {
            Err(ApiError::not_found(format!("account {id} not found")).into())
        }
    }
}

#[derive(Default)]
pub struct AccountSubscription;

#[Subscription]
impl AccountSubscription {
    /// The account's summary row each time a projector changes it.
    async fn account_updated(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> Result<impl Stream<Item = Account>> {
        let services = ctx.data::<Arc<Services>>()?.clone();
        Ok(services.changed_rows("account", Some(id), move |services, id| async move {
            load_account(&services, id).await.ok().flatten()
        }))
    }
}
