//! Bank accounts: mutations, queries and the `accountUpdated` subscription.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::decimal::Decimal;
use super::pagination::{connection, id_cursor, page_size};
use super::payload::{MutationPayload, options, payload};
use super::{ApiError, caller, read_after, services};
use crate::service::{AccountSummary, OpenAccount};

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
    /// The customer who owns the account, if any.
    pub customer_id: Option<Uuid>,
}

impl From<AccountSummary> for Account {
    fn from(a: AccountSummary) -> Self {
        Account {
            id: a.id,
            owner: a.owner,
            balance: a.balance.into(),
            overdraft_limit: a.overdraft_limit.into(),
            total_deposits: a.total_deposits.into(),
            total_withdrawals: a.total_withdrawals.into(),
            opened_at: a.opened_at,
            last_transaction_at: a.last_transaction_at,
            version: a.version,
            customer_id: a.customer_id,
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
    /// The owning customer. A customer's token opens for itself whatever
    /// this says; clerks and admins may name any registered customer.
    pub customer_id: Option<Uuid>,
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

#[Object]
impl AccountMutation {
    /// Opens a new account. With a `commandId`, the account id is derived
    /// from it, so a retried request opens the same account once.
    async fn open_account(
        &self,
        ctx: &Context<'_>,
        input: OpenAccountInput,
    ) -> Result<MutationPayload> {
        let open = OpenAccount {
            owner: input.owner,
            initial_deposit: input.initial_deposit.into(),
            overdraft_limit: input.overdraft_limit.into(),
            customer_id: input.customer_id,
        };
        let options = options(ctx, input.command_id, input.expected_version);
        payload(services(ctx)?.open_account(caller(ctx)?, open, options).await)
    }

    async fn deposit_money(
        &self,
        ctx: &Context<'_>,
        input: DepositMoneyInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        payload(
            services(ctx)?
                .deposit_money(caller(ctx)?, input.account_id, input.amount.into(), options)
                .await,
        )
    }

    async fn withdraw_money(
        &self,
        ctx: &Context<'_>,
        input: WithdrawMoneyInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        payload(
            services(ctx)?
                .withdraw_money(caller(ctx)?, input.account_id, input.amount.into(), options)
                .await,
        )
    }

    async fn write_check(
        &self,
        ctx: &Context<'_>,
        input: WriteCheckInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        let services = services(ctx)?;
        payload(
            services
                .write_check(
                    caller(ctx)?,
                    input.account_id,
                    input.check_number,
                    input.amount.into(),
                    options,
                )
                .await,
        )
    }
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// One account, or null if no such account exists.
    async fn account(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        min_position: Option<String>,
    ) -> Result<Option<Account>> {
        let account =
            services(ctx)?.account(caller(ctx)?, id, read_after(ctx, &min_position)).await;
        Ok(account.map_err(ApiError::from)?.map(Account::from))
    }

    /// Accounts in id order (ids are time-ordered UUIDs).
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Account>> {
        let (limit, cursor) = (page_size(first)?, id_cursor(after.as_deref())?);
        let page = services(ctx)?
            .accounts(caller(ctx)?, cursor, limit, read_after(ctx, &min_position))
            .await;
        let page = page.map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |a| (a.id.to_string(), Account::from(a))))
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
        let balance = services(ctx)?
            .account_balance_at(caller(ctx)?, id, at, read_after(ctx, &min_position))
            .await;
        Ok(balance.map_err(ApiError::from)?.map(Decimal::from))
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
        let updates = services(ctx)?.clone().account_updates(caller(ctx)?.clone(), id).await;
        Ok(updates.map_err(ApiError::from)?.map(Account::from))
    }
}
