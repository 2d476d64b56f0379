//! The bank: account commands, the account summary and balance history.
//! Accounts belong to customers: a customer opens accounts for itself and
//! sees and moves only its own; staff act on any.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Stream;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{Caller, CommandOptions, MinPosition, Outcome, ServiceError, Services, new_stream_id};
use crate::domain::bank::{BankAccount, BankCommand};
use crate::domain::customer::Customer;
use crate::domain::money::Money;
use crate::read_models::account_summary::{self, query::AccountSummary};
use crate::read_models::balance_history::{self, query::BalanceAt};
use crate::read_models::{Page, ReadModel};

/// What `openAccount` asks for.
#[derive(Debug, Clone)]
pub struct OpenAccount {
    pub owner: String,
    pub initial_deposit: Decimal,
    pub overdraft_limit: Decimal,
    /// The owning customer. A customer's token opens for itself, whatever
    /// this says; staff may name any registered customer, or none.
    pub customer_id: Option<Uuid>,
}

/// An account the caller may not see, as it sees it: absent.
fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!("account {id} not found"))
}

impl Services {
    /// Refuses a caller who may not act on account `id`: anonymous callers,
    /// and customers other than its owner (as if it did not exist). Read
    /// from the write side; an account's owner never changes, so the check
    /// cannot go stale.
    async fn ensure_account_access(&self, caller: &Caller, id: Uuid) -> Result<(), ServiceError> {
        caller.require_signed_in()?;
        if caller.is_staff() {
            return Ok(());
        }
        let account = self.commands.load::<BankAccount>(id).await?;
        if !account.state.opened || !caller.may_see(account.state.customer_id) {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Runs a command on an existing account the caller may act on.
    async fn account_command(
        &self,
        caller: &Caller,
        id: Uuid,
        command: BankCommand,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        self.ensure_account_access(caller, id).await?;
        let ctx = options.context(caller)?;
        Ok(self.commands.execute::<BankAccount>(id, &command, &ctx).await?)
    }

    /// Opens a new account. With a `commandId`, the account id is derived
    /// from it, so a retried request opens the same account once.
    pub async fn open_account(
        &self,
        caller: &Caller,
        input: OpenAccount,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_signed_in()?;
        let customer_id = match caller.customer() {
            Some(own) => Some(own),
            None => {
                caller.require_staff()?;
                input.customer_id
            }
        };
        let command = BankCommand::OpenAccount {
            owner: input.owner,
            initial_deposit: Money::non_negative(input.initial_deposit, "initialDeposit")?,
            overdraft_limit: Money::non_negative(input.overdraft_limit, "overdraftLimit")?,
            customer_id,
        };
        if let Some(customer) = customer_id
            && !self.commands.load::<Customer>(customer).await?.state.registered
        {
            return Err(ServiceError::NotFound(format!("customer {customer} does not exist")));
        }
        let ctx = options.context(caller)?;
        let id = new_stream_id(options.command_id);
        Ok(self.commands.execute::<BankAccount>(id, &command, &ctx).await?)
    }

    pub async fn deposit_money(
        &self,
        caller: &Caller,
        account_id: Uuid,
        amount: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = BankCommand::DepositMoney { amount: Money::positive(amount, "amount")? };
        self.account_command(caller, account_id, command, options).await
    }

    pub async fn withdraw_money(
        &self,
        caller: &Caller,
        account_id: Uuid,
        amount: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = BankCommand::WithdrawMoney { amount: Money::positive(amount, "amount")? };
        self.account_command(caller, account_id, command, options).await
    }

    pub async fn write_check(
        &self,
        caller: &Caller,
        account_id: Uuid,
        check_number: String,
        amount: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let amount = Money::positive(amount, "amount")?;
        let command = BankCommand::WriteCheck { check_number, amount };
        self.account_command(caller, account_id, command, options).await
    }

    /// One account, or `None` if no such account exists (or it is not the
    /// caller's).
    pub async fn account(
        &self,
        caller: &Caller,
        id: Uuid,
        min_position: MinPosition<'_>,
    ) -> Result<Option<AccountSummary>, ServiceError> {
        caller.require_signed_in()?;
        self.wait_for(&[account_summary::NAME], min_position).await?;
        let account = account_summary::query::find(&self.read_db, id).await?;
        Ok(account.filter(|a| caller.may_see(a.customer_id)))
    }

    /// Accounts in id order (ids are time-ordered UUIDs); a customer's own.
    pub async fn accounts(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        limit: u64,
        min_position: MinPosition<'_>,
    ) -> Result<Page<AccountSummary>, ServiceError> {
        caller.require_signed_in()?;
        self.wait_for(&[account_summary::NAME], min_position).await?;
        let owner = caller.customer();
        Ok(account_summary::query::page(&self.read_db, after, limit, owner).await?)
    }

    /// The balance right after the last event recorded at or before `at`;
    /// `None` if the account was not open yet. `NotFound` for an unknown
    /// account (or one that is not the caller's).
    pub async fn account_balance_at(
        &self,
        caller: &Caller,
        id: Uuid,
        at: DateTime<Utc>,
        min_position: MinPosition<'_>,
    ) -> Result<Option<Decimal>, ServiceError> {
        caller.require_signed_in()?;
        self.wait_for(&[balance_history::NAME], min_position).await?;
        if !caller.is_staff() {
            let account = account_summary::query::find(&self.read_db, id).await?;
            if !account.is_some_and(|a| caller.may_see(a.customer_id)) {
                return Err(not_found(id));
            }
        }
        match balance_history::query::balance_at(&self.read_db, id, at).await? {
            BalanceAt::Balance(balance) => Ok(Some(balance)),
            BalanceAt::NotYetOpen => Ok(None),
            BalanceAt::UnknownAccount => Err(not_found(id)),
        }
    }

    /// The account's summary each time a projector changes it. Refused for
    /// an account of another customer.
    pub async fn account_updates(
        self: Arc<Self>,
        caller: Caller,
        id: Uuid,
    ) -> Result<impl Stream<Item = AccountSummary>, ServiceError> {
        self.ensure_account_access(&caller, id).await?;
        Ok(self.changed_rows(ReadModel::Account, Some(id), |services, id| async move {
            account_summary::query::find(&services.read_db, id).await.ok().flatten()
        }))
    }
}
