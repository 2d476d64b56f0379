use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::BankEvent;
use crate::domain::money::{MAX_TOTAL, Money};
use crate::es::aggregate::{Aggregate, Rejection, RejectionKind};

/// Longest owner name and check number we store.
const MAX_TEXT: usize = 200;

/// What a bank account command may ask. Amounts are already valid [`Money`].
#[derive(Debug, Clone, PartialEq)]
pub enum BankCommand {
    /// `customer_id`: the customer who owns the account, if any.
    OpenAccount {
        owner: String,
        initial_deposit: Money,
        overdraft_limit: Money,
        customer_id: Option<Uuid>,
    },
    DepositMoney {
        amount: Money,
    },
    WithdrawMoney {
        amount: Money,
    },
    WriteCheck {
        check_number: String,
        amount: Money,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// `INVALID_STATE`: an account is opened once.
    #[error("account is already open")]
    AlreadyOpened,
    /// `INVALID_STATE`: every command but OpenAccount needs an open account.
    #[error("account is not open")]
    NotOpened,
    /// `INSUFFICIENT_FUNDS`: the amount exceeds balance plus overdraft limit.
    #[error("insufficient funds: {requested} requested, {available} available")]
    InsufficientFunds { requested: Decimal, available: Decimal },
    /// `INVALID_STATE`: a check number is used once per account.
    #[error("check {0} was already written")]
    DuplicateCheck(String),
    /// `VALIDATION_ERROR`: a required text is empty or too long.
    #[error("{0} must be between 1 and {MAX_TEXT} characters")]
    InvalidText(&'static str),
    /// `VALIDATION_ERROR`: the balance, the total deposits or the total
    /// withdrawals would pass [`MAX_TOTAL`], beyond what the read models
    /// can hold.
    #[error("{0} would exceed the limit of {MAX_TOTAL}")]
    LimitExceeded(&'static str),
}

impl Rejection for BankError {
    fn kind(&self) -> RejectionKind {
        match self {
            BankError::AlreadyOpened | BankError::NotOpened | BankError::DuplicateCheck(_) => {
                RejectionKind::InvalidState
            }
            BankError::InsufficientFunds { .. } => RejectionKind::InsufficientFunds,
            BankError::InvalidText(_) | BankError::LimitExceeded(_) => RejectionKind::Validation,
        }
    }
}

/// The state a decision needs, and nothing more.
///
/// Invariant: `balance`, `total_deposits` and `total_withdrawals` never
/// exceed [`MAX_TOTAL`], and `balance` never goes below minus the overdraft
/// limit (itself at most `MAX_AMOUNT`), so the read models can hold them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BankAccount {
    pub opened: bool,
    /// The customer who owns the account, if any.
    pub customer_id: Option<Uuid>,
    pub balance: Decimal,
    pub overdraft_limit: Decimal,
    pub checks: BTreeSet<String>,
    /// Every deposit, the initial one included.
    pub total_deposits: Decimal,
    /// Every withdrawal and check.
    pub total_withdrawals: Decimal,
}

fn checked_text(value: &str, field: &'static str) -> Result<String, BankError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_TEXT {
        return Err(BankError::InvalidText(field));
    }
    Ok(value.to_owned())
}

impl BankAccount {
    fn ensure_opened(&self) -> Result<(), BankError> {
        if self.opened { Ok(()) } else { Err(BankError::NotOpened) }
    }

    fn ensure_funds(&self, amount: Money) -> Result<(), BankError> {
        let available = self.balance + self.overdraft_limit;
        if amount.amount() > available {
            return Err(BankError::InsufficientFunds { requested: amount.amount(), available });
        }
        Ok(())
    }

    /// Refuses a deposit or withdrawal that would take the balance or a
    /// total past [`MAX_TOTAL`]. The balance is checked first: it is what
    /// a client watches.
    fn ensure_within_limits(&self, deposit: Decimal, withdrawal: Decimal) -> Result<(), BankError> {
        let limits = [
            (self.balance + deposit - withdrawal, "balance"),
            (self.total_deposits + deposit, "total deposits"),
            (self.total_withdrawals + withdrawal, "total withdrawals"),
        ];
        match limits.into_iter().find(|(after, _)| *after > MAX_TOTAL) {
            Some((_, what)) => Err(BankError::LimitExceeded(what)),
            None => Ok(()),
        }
    }
}

impl Aggregate for BankAccount {
    const STREAM_TYPE: &'static str = "BankAccount";
    /// 2: the state keeps its owning customer and the totals it is limited
    /// on; an older snapshot has neither, so it is ignored and the state
    /// rebuilt from the events.
    const STATE_VERSION: i32 = 2;
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = BankError;

    fn command_name(command: &BankCommand) -> &'static str {
        match command {
            BankCommand::OpenAccount { .. } => "OpenAccount",
            BankCommand::DepositMoney { .. } => "DepositMoney",
            BankCommand::WithdrawMoney { .. } => "WithdrawMoney",
            BankCommand::WriteCheck { .. } => "WriteCheck",
        }
    }

    fn handle(&self, command: &BankCommand) -> Result<Vec<BankEvent>, BankError> {
        match command {
            BankCommand::OpenAccount { owner, initial_deposit, overdraft_limit, customer_id } => {
                if self.opened {
                    return Err(BankError::AlreadyOpened);
                }
                self.ensure_within_limits(initial_deposit.amount(), Decimal::ZERO)?;
                Ok(vec![BankEvent::AccountOpened {
                    owner: checked_text(owner, "owner")?,
                    initial_deposit: *initial_deposit,
                    overdraft_limit: *overdraft_limit,
                    customer_id: *customer_id,
                }])
            }
            BankCommand::DepositMoney { amount } => {
                self.ensure_opened()?;
                self.ensure_within_limits(amount.amount(), Decimal::ZERO)?;
                Ok(vec![BankEvent::MoneyDeposited { amount: *amount }])
            }
            BankCommand::WithdrawMoney { amount } => {
                self.ensure_opened()?;
                self.ensure_funds(*amount)?;
                self.ensure_within_limits(Decimal::ZERO, amount.amount())?;
                Ok(vec![BankEvent::MoneyWithdrawn { amount: *amount }])
            }
            BankCommand::WriteCheck { check_number, amount } => {
                self.ensure_opened()?;
                let check_number = checked_text(check_number, "checkNumber")?;
                if self.checks.contains(&check_number) {
                    return Err(BankError::DuplicateCheck(check_number));
                }
                self.ensure_funds(*amount)?;
                self.ensure_within_limits(Decimal::ZERO, amount.amount())?;
                Ok(vec![BankEvent::CheckWritten { check_number, amount: *amount }])
            }
        }
    }

    fn apply(&mut self, event: &BankEvent) {
        match event {
            BankEvent::AccountOpened { initial_deposit, overdraft_limit, customer_id, .. } => {
                self.opened = true;
                self.customer_id = *customer_id;
                self.balance = initial_deposit.amount();
                self.overdraft_limit = overdraft_limit.amount();
                self.total_deposits = initial_deposit.amount();
            }
            BankEvent::MoneyDeposited { amount } => {
                self.balance += amount.amount();
                self.total_deposits += amount.amount();
            }
            BankEvent::MoneyWithdrawn { amount } => {
                self.balance -= amount.amount();
                self.total_withdrawals += amount.amount();
            }
            BankEvent::CheckWritten { check_number, amount } => {
                self.balance -= amount.amount();
                self.total_withdrawals += amount.amount();
                self.checks.insert(check_number.clone());
            }
        }
    }
}
