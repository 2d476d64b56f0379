use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::BankEvent;
use crate::domain::money::Money;
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
}

impl Rejection for BankError {
    fn kind(&self) -> RejectionKind {
        match self {
            BankError::AlreadyOpened | BankError::NotOpened | BankError::DuplicateCheck(_) => {
                RejectionKind::InvalidState
            }
            BankError::InsufficientFunds { .. } => RejectionKind::InsufficientFunds,
            BankError::InvalidText(_) => RejectionKind::Validation,
        }
    }
}

/// The state a decision needs, and nothing more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BankAccount {
    pub opened: bool,
    /// The customer who owns the account, if any.
    pub customer_id: Option<Uuid>,
    pub balance: Decimal,
    pub overdraft_limit: Decimal,
    pub checks: BTreeSet<String>,
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
}

impl Aggregate for BankAccount {
    const STREAM_TYPE: &'static str = "BankAccount";
    /// 2: the owning customer joined the state.
    const STATE_VERSION: i32 = 2;
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = BankError;

    fn handle(&self, command: &BankCommand) -> Result<Vec<BankEvent>, BankError> {
        match command {
            BankCommand::OpenAccount { owner, initial_deposit, overdraft_limit, customer_id } => {
                if self.opened {
                    return Err(BankError::AlreadyOpened);
                }
                Ok(vec![BankEvent::AccountOpened {
                    owner: checked_text(owner, "owner")?,
                    initial_deposit: *initial_deposit,
                    overdraft_limit: *overdraft_limit,
                    customer_id: *customer_id,
                }])
            }
            BankCommand::DepositMoney { amount } => {
                self.ensure_opened()?;
                Ok(vec![BankEvent::MoneyDeposited { amount: *amount }])
            }
            BankCommand::WithdrawMoney { amount } => {
                self.ensure_opened()?;
                self.ensure_funds(*amount)?;
                Ok(vec![BankEvent::MoneyWithdrawn { amount: *amount }])
            }
            BankCommand::WriteCheck { check_number, amount } => {
                self.ensure_opened()?;
                let check_number = checked_text(check_number, "checkNumber")?;
                if self.checks.contains(&check_number) {
                    return Err(BankError::DuplicateCheck(check_number));
                }
                self.ensure_funds(*amount)?;
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
            }
            BankEvent::MoneyDeposited { amount } => self.balance += amount.amount(),
            BankEvent::MoneyWithdrawn { amount } => self.balance -= amount.amount(),
            BankEvent::CheckWritten { check_number, amount } => {
                self.balance -= amount.amount();
                self.checks.insert(check_number.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::testing::AggregateTest;
    use std::str::FromStr;

    type AccountTest = AggregateTest<BankAccount>;

    fn money(s: &str) -> Money {
        Money::non_negative(Decimal::from_str(s).unwrap(), "test").unwrap()
    }

    fn opened(deposit: &str, overdraft: &str) -> BankEvent {
        BankEvent::AccountOpened {
            owner: "Ada".into(),
            initial_deposit: money(deposit),
            overdraft_limit: money(overdraft),
            customer_id: None,
        }
    }

    fn open_cmd(owner: &str) -> BankCommand {
        BankCommand::OpenAccount {
            owner: owner.into(),
            initial_deposit: money("100"),
            overdraft_limit: money("50"),
            customer_id: Some(Uuid::from_u128(7)),
        }
    }

    #[test]
    fn opening_a_new_account_records_owner_deposit_and_overdraft() {
        AccountTest::given_no_events().when(&open_cmd("  Ada ")).then_expect_events(&[
            BankEvent::AccountOpened {
                owner: "Ada".into(),
                initial_deposit: money("100"),
                overdraft_limit: money("50"),
                customer_id: Some(Uuid::from_u128(7)),
            },
        ]);
    }

    #[test]
    fn opening_twice_is_an_invalid_state() {
        AccountTest::given(&[opened("1", "0")])
            .when(&open_cmd("Ada"))
            .then_expect_rejection(BankError::AlreadyOpened)
            .then_expect_rejection_kind(RejectionKind::InvalidState);
    }

    #[test]
    fn an_empty_owner_is_a_validation_error() {
        AccountTest::given_no_events()
            .when(&open_cmd("   "))
            .then_expect_rejection_kind(RejectionKind::Validation);
    }

    #[test]
    fn commands_on_an_unopened_account_are_invalid_state() {
        let account = AccountTest::given_no_events();
        for command in [
            BankCommand::DepositMoney { amount: money("1") },
            BankCommand::WithdrawMoney { amount: money("1") },
            BankCommand::WriteCheck { check_number: "1".into(), amount: money("1") },
        ] {
            account.when(&command).then_expect_rejection(BankError::NotOpened);
        }
    }

    #[test]
    fn deposits_add_to_the_balance() {
        let account = AccountTest::given(&[
            opened("10", "0"),
            BankEvent::MoneyDeposited { amount: money("5.25") },
        ]);
        assert_eq!(account.state().balance, Decimal::from_str("15.25").unwrap());
        account
            .when(&BankCommand::DepositMoney { amount: money("1") })
            .then_expect_events(&[BankEvent::MoneyDeposited { amount: money("1") }]);
    }

    #[test]
    fn withdrawing_up_to_balance_plus_overdraft_is_allowed() {
        AccountTest::given(&[opened("100", "50")])
            .when(&BankCommand::WithdrawMoney { amount: money("150") })
            .then_expect_events(&[BankEvent::MoneyWithdrawn { amount: money("150") }])
            .then_state(|account| assert_eq!(account.balance, Decimal::from(-50)));
    }

    #[test]
    fn withdrawing_more_than_balance_plus_overdraft_is_insufficient_funds() {
        AccountTest::given(&[opened("100", "50")])
            .when(&BankCommand::WithdrawMoney { amount: money("150.01") })
            .then_expect_rejection_kind(RejectionKind::InsufficientFunds);
    }

    #[test]
    fn a_check_beyond_available_funds_is_insufficient_funds() {
        AccountTest::given(&[opened("10", "0"), BankEvent::MoneyWithdrawn { amount: money("5") }])
            .when(&BankCommand::WriteCheck { check_number: "7".into(), amount: money("5.01") })
            .then_expect_rejection_kind(RejectionKind::InsufficientFunds);
    }

    #[test]
    fn a_check_number_is_used_once() {
        let account = AccountTest::given(&[
            opened("100", "0"),
            BankEvent::CheckWritten { check_number: "7".into(), amount: money("1") },
        ]);
        assert_eq!(account.state().balance, Decimal::from(99));
        account
            .when(&BankCommand::WriteCheck { check_number: "7".into(), amount: money("1") })
            .then_expect_rejection(BankError::DuplicateCheck("7".into()));
        account
            .when(&BankCommand::WriteCheck { check_number: "8".into(), amount: money("1") })
            .then_expect_accepted();
    }
}
