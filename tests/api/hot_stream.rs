//! Hot streams: commands queued on one stream are decided one after another
//! and appended together, each keeping its own result, rejection and
//! idempotency record.

use std::sync::Arc;

use eventfold::domain::bank::{BankAccount, BankCommand, BankError};
use eventfold::domain::money::Money;
use eventfold::es::command::{CommandContext, CommandError, CommandExecutor, CommandSettings};
use eventfold::infra::event_store::SeaEventStore;
use futures::future::join_all;
use uuid::Uuid;

use crate::helpers::*;

fn money(s: &str) -> Money {
    Money::positive(s.parse().unwrap(), "amount").unwrap()
}

async fn executor() -> (TestApp, CommandExecutor) {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let db = eventfold::infra::db::connect(&app.database_url, 4).await.unwrap();
    let store = Arc::new(SeaEventStore::new(db));
    let upcasters = Arc::new(eventfold::domain::upcasters());
    (app, CommandExecutor::new(store, upcasters, CommandSettings::default()))
}

async fn open(executor: &CommandExecutor, deposit: &str) -> Uuid {
    let id = Uuid::now_v7();
    let open = BankCommand::OpenAccount {
        owner: "Ada".into(),
        initial_deposit: money(deposit),
        overdraft_limit: Money::ZERO,
        customer_id: None,
    };
    executor.execute::<BankAccount>(id, &open, &CommandContext::default()).await.unwrap();
    id
}

/// Transactions that wrote the account's events after its opening.
async fn transactions_after_opening(app: &TestApp, id: Uuid) -> i64 {
    app.scalar_i64(&format!(
        "SELECT COUNT(DISTINCT tx_id) FROM events WHERE stream_id = '{id}' AND version > 1"
    ))
    .await
}

#[tokio::test]
async fn concurrent_deposits_on_one_stream_share_transactions_and_each_gets_its_own_result() {
    let (app, executor) = executor().await;
    let id = open(&executor, "1").await;
    let deposit = BankCommand::DepositMoney { amount: money("1") };
    let ctx = CommandContext::default();
    let results =
        join_all((0..16).map(|_| executor.execute::<BankAccount>(id, &deposit, &ctx))).await;
    let mut versions = Vec::new();
    for outcome in results {
        let outcome = outcome.unwrap();
        // Each answer carries the position of its own event.
        let pos = app
            .scalar_i64(&format!(
                "SELECT position FROM events WHERE stream_id = '{id}' AND version = {}",
                outcome.version
            ))
            .await;
        assert_eq!(outcome.position.pos, pos, "version {}", outcome.version);
        versions.push(outcome.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=17).collect::<Vec<i64>>());
    let transactions = transactions_after_opening(&app, id).await;
    assert!(transactions <= 4, "16 queued deposits took {transactions} transactions");
    let loaded = executor.load::<BankAccount>(id).await.unwrap();
    assert_eq!(loaded.version, 17);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_command_in_a_batch_fails_alone_and_appends_nothing() {
    let (app, executor) = executor().await;
    let id = open(&executor, "100").await;
    let withdraw = BankCommand::WithdrawMoney { amount: money("30") };
    let ctx = CommandContext::default();
    let results =
        join_all((0..5).map(|_| executor.execute::<BankAccount>(id, &withdraw, &ctx))).await;
    let ok: Vec<i64> = results.iter().filter_map(|r| r.as_ref().ok()).map(|o| o.version).collect();
    let rejected = results
        .iter()
        .filter(|r| matches!(r, Err(CommandError::Rejected(BankError::InsufficientFunds { .. }))))
        .count();
    assert_eq!(ok.len(), 3, "{results:?}");
    assert_eq!(rejected, 2, "{results:?}");
    assert_eq!(app.event_count().await, 4, "the opening and three withdrawals");
    assert!(transactions_after_opening(&app, id).await <= 2);
    app.stop().await;
}

#[tokio::test]
async fn each_command_of_a_batch_keeps_its_own_idempotency_record() {
    let (app, executor) = executor().await;
    let id = open(&executor, "1").await;
    let deposit = BankCommand::DepositMoney { amount: money("5") };
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let with = |c: Option<Uuid>| CommandContext { command_id: c, ..Default::default() };
    let contexts = [with(None), with(Some(a)), with(Some(b)), with(Some(a))];
    let results: Vec<_> =
        join_all(contexts.iter().map(|ctx| executor.execute::<BankAccount>(id, &deposit, ctx)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    // The same id twice is one command: the second gets the first's result.
    assert_eq!(results[3], results[1]);
    assert_ne!(results[1].version, results[2].version);
    assert_eq!(app.event_count().await, 4, "the opening and three deposits");
    for (command_id, outcome) in [(a, results[1]), (b, results[2])] {
        let version = app
            .scalar_i64(&format!(
                "SELECT (result::jsonb->>'version')::bigint FROM command_log \
                 WHERE command_id = '{command_id}'"
            ))
            .await;
        assert_eq!(version, outcome.version, "the record of {command_id} is its own");
    }
    // A retry later returns the stored result and appends nothing.
    let again = executor.execute::<BankAccount>(id, &deposit, &with(Some(b))).await.unwrap();
    assert_eq!(again, results[2]);
    assert_eq!(app.event_count().await, 4);
    app.stop().await;
}
