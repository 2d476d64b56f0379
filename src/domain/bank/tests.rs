use std::str::FromStr;

use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::domain::money::{MAX_TOTAL, Money};
use crate::es::aggregate::RejectionKind;
use crate::es::testing::AggregateTest;

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

const LIMIT: &str = "10000000000000000";
const MAX: &str = "1000000000000000";

fn deposited(amount: &str) -> BankEvent {
    BankEvent::MoneyDeposited { amount: money(amount) }
}

fn withdrawn(amount: &str) -> BankEvent {
    BankEvent::MoneyWithdrawn { amount: money(amount) }
}

/// An account opened empty with an overdraft of `overdraft`, then `events`.
fn account(overdraft: &str, events: impl IntoIterator<Item = BankEvent>) -> AccountTest {
    let history: Vec<_> = std::iter::once(opened("0", overdraft)).chain(events).collect();
    AccountTest::given(&history)
}

#[test]
fn a_deposit_may_take_the_balance_to_the_limit_exactly_but_not_past_it() {
    let nine = account("0", (0..9).map(|_| deposited(MAX)));
    nine.when(&BankCommand::DepositMoney { amount: money(MAX) })
        .then_state(|account| assert_eq!(account.balance, MAX_TOTAL));
    let full = account("0", (0..10).map(|_| deposited(MAX)));
    assert_eq!(full.state().balance, MAX_TOTAL);
    full.when(&BankCommand::DepositMoney { amount: money("0.01") })
        .then_expect_rejection(BankError::LimitExceeded("balance"))
        .then_expect_rejection_kind(RejectionKind::Validation);
    let message = BankError::LimitExceeded("balance").to_string();
    assert_eq!(message, format!("balance would exceed the limit of {LIMIT}"));
}

#[test]
fn total_deposits_are_limited_even_when_the_balance_is_not() {
    let churned = account("0", (0..10).map(|_| deposited(MAX)).chain([withdrawn(MAX)]));
    assert_eq!(churned.state().balance, Decimal::from_str("9000000000000000").unwrap());
    assert_eq!(churned.state().total_deposits, MAX_TOTAL);
    churned
        .when(&BankCommand::DepositMoney { amount: money("1") })
        .then_expect_rejection(BankError::LimitExceeded("total deposits"))
        .then_expect_rejection_kind(RejectionKind::Validation);
}

#[test]
fn total_withdrawals_are_limited_and_a_full_overdraft_stays_representable() {
    let deposits = (0..10).map(|_| deposited(MAX));
    let nine_out = account(MAX, deposits.clone().chain((0..9).map(|_| withdrawn(MAX))));
    nine_out
        .when(&BankCommand::WithdrawMoney { amount: money(MAX) })
        .then_state(|account| assert_eq!(account.total_withdrawals, MAX_TOTAL));
    let all_out = account(MAX, deposits.chain((0..10).map(|_| withdrawn(MAX))));
    assert_eq!(all_out.state().balance, Decimal::ZERO);
    for command in [
        BankCommand::WithdrawMoney { amount: money("1") },
        BankCommand::WriteCheck { check_number: "1".into(), amount: money("1") },
    ] {
        all_out
            .when(&command)
            .then_expect_rejection(BankError::LimitExceeded("total withdrawals"))
            .then_expect_rejection_kind(RejectionKind::Validation);
    }
    // The deepest a balance goes is minus the largest overdraft.
    account(MAX, [])
        .when(&BankCommand::WithdrawMoney { amount: money(MAX) })
        .then_state(|account| assert_eq!(account.balance, -Decimal::from_str(MAX).unwrap()));
}

#[test]
fn the_totals_are_folded_from_every_kind_of_event() {
    let account = AccountTest::given(&[
        opened("100", "0"),
        deposited("5"),
        withdrawn("20"),
        BankEvent::CheckWritten { check_number: "1".into(), amount: money("30") },
    ]);
    let state = account.state();
    assert_eq!((state.total_deposits, state.total_withdrawals), (105.into(), 50.into()));
}
