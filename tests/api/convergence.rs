//! "After restart the read tables equal a full replay from the event store."

use std::collections::HashMap;
use std::time::Duration;

use entity::{account_balance_history, audit_log, bank_account_summary_view, events};
use eventfold::domain::bank::{BankAccount, BankEvent};
use eventfold::es::aggregate::Aggregate;
use eventfold::es::envelope::{Position, RecordedEvent, StreamKey};
use eventfold::read_models::to_cents;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::json;

use crate::helpers::*;

/// Waits until every projection has applied everything, then checks every
/// read table against a fold of the event store.
pub(crate) async fn assert_converged(app: &TestApp) {
    let caught_up = eventually(Duration::from_secs(60), || async {
        let data = app.gql("{ projections { lag } }", json!({})).await;
        data.errors.is_empty()
            && data.data["projections"].as_array().is_some_and(|l| l.iter().all(|p| p["lag"] == 0))
    })
    .await;
    assert!(caught_up, "projections did not catch up");
    assert_tables_match_replay(&app.db).await;
}

pub(crate) async fn assert_tables_match_replay(db: &DatabaseConnection) {
    let log = events::Entity::find().order_by_asc(events::Column::Position).all(db).await.unwrap();
    let audit =
        audit_log::Entity::find().order_by_asc(audit_log::Column::Position).all(db).await.unwrap();
    let logged: Vec<_> = audit.iter().map(|a| (a.position, a.event_id, a.version)).collect();
    let expected: Vec<_> = log.iter().map(|e| (e.position, e.event_id, e.version)).collect();
    assert_eq!(logged, expected, "audit log is exactly the event log");

    let upcasters = eventfold::domain::upcasters();
    let mut accounts: HashMap<uuid::Uuid, (i64, i64, i64, i64, i64)> = HashMap::new();
    let mut history = 0;
    for row in log.iter().filter(|e| e.stream_type == BankAccount::STREAM_TYPE) {
        let recorded = RecordedEvent {
            position: Position { tx: row.tx_id, pos: row.position },
            event_id: row.event_id,
            stream: StreamKey::new(&row.stream_type, row.stream_id),
            version: row.version,
            event_type: row.event_type.clone(),
            schema_version: row.schema_version,
            payload: row.payload.clone(),
            metadata: row.metadata.clone(),
            recorded_at: row.recorded_at,
        };
        let event: BankEvent = upcasters.decode(&recorded).unwrap();
        let acc = accounts.entry(row.stream_id).or_default();
        let cents = |m: eventfold::domain::money::Money| to_cents(m.amount()).unwrap();
        match event {
            BankEvent::AccountOpened { initial_deposit, .. } => {
                *acc = (cents(initial_deposit), cents(initial_deposit), 0, row.version, 0)
            }
            BankEvent::MoneyDeposited { amount } => {
                acc.0 += cents(amount);
                acc.1 += cents(amount);
            }
            BankEvent::MoneyWithdrawn { amount } | BankEvent::CheckWritten { amount, .. } => {
                acc.0 -= cents(amount);
                acc.2 += cents(amount);
            }
        }
        acc.3 = row.version;
        history += 1;
    }
    let rows = bank_account_summary_view::Entity::find().all(db).await.unwrap();
    assert_eq!(rows.len(), accounts.len(), "one summary row per account");
    for row in rows {
        let (balance, deposits, withdrawals, version, _) = accounts[&row.account_id];
        assert_eq!(
            (row.balance_cents, row.total_deposits_cents, row.total_withdrawals_cents, row.version),
            (balance, deposits, withdrawals, version),
            "account {}",
            row.account_id
        );
    }
    let history_rows = account_balance_history::Entity::find().all(db).await.unwrap();
    assert_eq!(history_rows.len(), history, "one history row per bank event");
}
