//! The bank: account commands, the account summary and balance history.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Stream;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{CommandOptions, Outcome, ServiceError, Services, new_stream_id};
use crate::domain::bank::{BankAccount, BankCommand};
use crate::domain::money::Money;
use crate::read_models::Page;
use crate::read_models::ReadModel;
use crate::read_models::account_summary::{self, query::AccountSummary};
use crate::read_models::balance_history::{self, query::BalanceAt};

/// What `openAccount` asks for.
#[derive(Debug, Clone)]
pub struct OpenAccount {
    pub owner: String,
    pub initial_deposit: Decimal,
    pub overdraft_limit: Decimal,
}

impl Services {
    async fn bank_command(
        &self,
        id: Uuid,
        command: BankCommand,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        Ok(self.commands.execute::<BankAccount>(id, &command, &ctx).await?)
    }

    /// Opens a new account. With a `commandId`, the account id is derived
    /// from it, so a retried request opens the same account once.
    pub async fn open_account(
        &self,
        input: OpenAccount,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = BankCommand::OpenAccount {
            owner: input.owner,
            initial_deposit: Money::non_negative(input.initial_deposit, "initialDeposit")?,
            overdraft_limit: Money::non_negative(input.overdraft_limit, "overdraftLimit")?,
        };
        self.bank_command(new_stream_id(options.command_id), command, options).await
    }

    pub async fn deposit_money(
        &self,
        account_id: Uuid,
        amount: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = BankCommand::DepositMoney { amount: Money::positive(amount, "amount")? };
        self.bank_command(account_id, command, options).await
    }

    pub async fn withdraw_money(
        &self,
        account_id: Uuid,
        amount: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = BankCommand::WithdrawMoney { amount: Money::positive(amount, "amount")? };
        self.bank_command(account_id, command, options).await
    }

    pub async fn write_check(
        &self,
        account_id: Uuid,
        check_number: String,
        amount: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let amount = Money::positive(amount, "amount")?;
        let command = BankCommand::WriteCheck { check_number, amount };
        self.bank_command(account_id, command, options).await
    }

    /// One account, or `None` if no such account exists.
    pub async fn account(
        &self,
        id: Uuid,
        min_position: Option<&str>,
    ) -> Result<Option<AccountSummary>, ServiceError> {
        self.wait_for(&[account_summary::NAME], min_position).await?;
        Ok(account_summary::query::find(&self.read_db, id).await?)
    }

    /// Accounts in id order (ids are time-ordered UUIDs).
    pub async fn accounts(
        &self,
        after: Option<Uuid>,
        limit: u64,
        min_position: Option<&str>,
    ) -> Result<Page<AccountSummary>, ServiceError> {
        self.wait_for(&[account_summary::NAME], min_position).await?;
        Ok(account_summary::query::page(&self.read_db, after, limit).await?)
    }

    /// The balance right after the last event recorded at or before `at`;
    /// `None` if the account was not open yet. `NotFound` for an unknown
    /// account.
    pub async fn account_balance_at(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        min_position: Option<&str>,
    ) -> Result<Option<Decimal>, ServiceError> {
        self.wait_for(&[balance_history::NAME], min_position).await?;
        match balance_history::query::balance_at(&self.read_db, id, at).await? {
            BalanceAt::Balance(balance) => Ok(Some(balance)),
            BalanceAt::NotYetOpen => Ok(None),
            BalanceAt::UnknownAccount => {
                Err(ServiceError::NotFound(format!("account {id} not found")))
            }
        }
    }

    /// The account's summary each time a projector changes it.
    pub fn account_updates(self: Arc<Self>, id: Uuid) -> impl Stream<Item = AccountSummary> {
        self.changed_rows(ReadModel::Account, Some(id), |services, id| async move {
            account_summary::query::find(&services.read_db, id).await.ok().flatten()
        })
    }
}
