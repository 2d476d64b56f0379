//! The event store itself: immutability and gap-free reading in commit order.

use std::sync::Arc;

use eventfold::domain::bank::{BankAccount, BankCommand, BankError, BankEvent};
use eventfold::domain::money::Money;
use eventfold::es::aggregate::Aggregate;
use eventfold::es::command::{CommandContext, CommandError, CommandExecutor, CommandSettings};
use eventfold::es::envelope::{EventMetadata, NewEvent, Position, StreamKey};
use eventfold::es::store::{EventStore, StoreError, StreamAppend};
use eventfold::es::unit_of_work::{MultiStreamCommand, UnitOfWork};
use eventfold::infra::event_store::SeaEventStore;
use sea_orm::{ActiveModelTrait, ConnectionTrait, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

fn new_event(kind: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: kind.into(),
        schema_version: 1,
        payload: json!({}),
        metadata: EventMetadata::default(),
    }
}

async fn migrated_store() -> (TestApp, Arc<SeaEventStore>) {
    // The app migrates the fresh database; the store under test shares it.
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let db = eventfold::infra::db::connect(&app.database_url, 4).await.unwrap();
    (app, Arc::new(SeaEventStore::new(db)))
}

#[tokio::test]
async fn events_are_never_updated_or_deleted() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "100", "0").await;
    app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
    let snapshot_before =
        app.scalar_i64("SELECT COALESCE(SUM(version * position), 0)::bigint FROM events").await;

    // The database refuses to change history, whatever the caller.
    for sql in ["UPDATE events SET version = version + 100", "DELETE FROM events"] {
        let err = app.db.execute_unprepared(sql).await.expect_err(sql);
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
    // More commands only add rows; earlier rows are byte-for-byte unchanged.
    app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
    assert_eq!(app.event_count().await, 3);
    let unchanged = app
        .scalar_i64(
            "SELECT COALESCE(SUM(version * position), 0)::bigint FROM events WHERE version <= 2",
        )
        .await;
    assert_eq!(unchanged, snapshot_before);

    // And no code path issues an UPDATE or DELETE against the events table.
    let mut offenders = Vec::new();
    scan(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut offenders);
    assert!(offenders.is_empty(), "event mutations in: {offenders:?}");
    app.stop().await;
}

fn scan(dir: &std::path::Path, offenders: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, offenders);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
        for needle in [
            "events::entity::update",
            "events::entity::delete",
            "update events",
            "delete from events",
        ] {
            if text.contains(needle) {
                offenders.push(format!("{} ({needle})", path.display()));
            }
        }
    }
}

#[tokio::test]
async fn a_reader_never_skips_an_event_because_a_later_numbered_append_waits_for_the_earlier_commit()
 {
    let (app, store) = migrated_store().await;
    let writer = eventfold::infra::db::connect(&app.database_url, 2).await.unwrap();

    // Transaction A takes the smaller position but stays open...
    let slow = writer.begin().await.unwrap();
    let early = raw_event("Test", Uuid::now_v7(), "Early").insert(&slow).await.unwrap();

    // ...so B, an append started after it, cannot commit first: it waits
    // for A's commit-order lock.
    let appending = tokio::spawn({
        let store = store.clone();
        async move {
            let append = StreamAppend {
                stream: StreamKey::new("Test", Uuid::now_v7()),
                expected_version: 0,
                events: vec![new_event("Late")],
            };
            store.append(vec![append], None).await
        }
    });
    let waiting = eventually(std::time::Duration::from_secs(10), || async {
        app.commit_order_waiters().await == 1
    })
    .await;
    assert!(waiting, "B waits for the commit-order lock A holds");
    assert!(!appending.is_finished(), "B committed while an earlier-numbered transaction was open");
    let visible = store.read_committed(Position::START, 100).await.unwrap();
    assert!(visible.is_empty(), "read {visible:?} while an earlier-numbered transaction was open");

    slow.commit().await.unwrap();
    let late = appending.await.unwrap().unwrap();
    assert!(late.position.pos > early.position, "B is numbered after A");
    assert!(late.position.tx > early.tx_id, "B's transaction id is after A's");
    // Both are readable at once, in commit order: nothing waits for other
    // transactions of the cluster (other tests run beside this one).
    let visible = store.read_committed(Position::START, 100).await.unwrap();
    let types: Vec<_> = visible.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Early", "Late"]);
    let after_first = store.read_committed(visible[0].position, 100).await.unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].event_type, "Late");
    app.stop().await;
}

#[tokio::test]
async fn events_are_refused_in_a_transaction_that_wrote_before_them() {
    let (app, _store) = migrated_store().await;
    let writer = eventfold::infra::db::connect(&app.database_url, 2).await.unwrap();
    // A transaction id taken before the commit-order lock could be older
    // than an append that commits first: the database refuses the insert.
    let txn = writer.begin().await.unwrap();
    txn.execute_unprepared("SELECT txid_current()").await.unwrap();
    let refused = raw_event("Test", Uuid::now_v7(), "Late").insert(&txn).await;
    let err = refused.expect_err("an insert after another write is refused");
    assert!(err.to_string().contains("first write of their transaction"), "{err}");
    txn.rollback().await.unwrap();
    // Several inserts in one transaction are fine: the first takes the lock.
    let txn = writer.begin().await.unwrap();
    raw_event("Test", Uuid::now_v7(), "One").insert(&txn).await.unwrap();
    raw_event("Test", Uuid::now_v7(), "Two").insert(&txn).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_transaction_left_idle_after_its_events_is_ended_and_appends_go_on() {
    let (app, store) = migrated_store().await;
    let writer = eventfold::infra::db::connect(&app.database_url, 2).await.unwrap();
    // A hung client: events inserted, then nothing, with the commit-order
    // lock held...
    let stuck = writer.begin().await.unwrap();
    raw_event("Test", Uuid::now_v7(), "Stuck").insert(&stuck).await.unwrap();
    // ...is ended by the server after a while, and the append behind it
    // goes through (bounded here by far more than that while).
    let append = StreamAppend {
        stream: StreamKey::new("Test", Uuid::now_v7()),
        expected_version: 0,
        events: vec![new_event("After")],
    };
    let appended =
        tokio::time::timeout(std::time::Duration::from_secs(60), store.append(vec![append], None))
            .await;
    assert!(matches!(appended, Ok(Ok(_))), "{appended:?}");
    assert!(stuck.commit().await.is_err(), "the idle holder's transaction was ended");
    let visible = store.read_committed(Position::START, 100).await.unwrap();
    let types: Vec<_> = visible.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["After"]);
    app.stop().await;
}

#[tokio::test]
async fn a_multi_stream_append_is_all_or_nothing() {
    let (app, store) = migrated_store().await;
    let (a, b) = (StreamKey::new("Test", Uuid::now_v7()), StreamKey::new("Test", Uuid::now_v7()));
    store
        .append(
            vec![StreamAppend {
                stream: b.clone(),
                expected_version: 0,
                events: vec![new_event("B1")],
            }],
            None,
        )
        .await
        .unwrap();
    // B is at version 1, so expecting 0 fails, and A's event must not land.
    let err = store
        .append(
            vec![
                StreamAppend {
                    stream: a.clone(),
                    expected_version: 0,
                    events: vec![new_event("A1")],
                },
                StreamAppend {
                    stream: b.clone(),
                    expected_version: 0,
                    events: vec![new_event("B2")],
                },
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 1, expected: 0, .. }), "{err:?}");
    assert!(store.load_stream(&a, 0).await.unwrap().is_empty());
    let ok = store
        .append(
            vec![
                StreamAppend {
                    stream: a.clone(),
                    expected_version: 0,
                    events: vec![new_event("A1"), new_event("A2")],
                },
                StreamAppend {
                    stream: b.clone(),
                    expected_version: 1,
                    events: vec![new_event("B2")],
                },
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(ok.version, 2);
    let versions: Vec<_> =
        store.load_stream(&a, 0).await.unwrap().iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(store.load_stream(&b, 1).await.unwrap()[0].event_type, "B2");
    app.stop().await;
}

/// Deposits into `to` the balance it reads from `from`; on its first
/// attempt someone else deposits into `from` right after the read.
struct CopyBalance {
    from: Uuid,
    to: Uuid,
    interferer: Arc<SeaEventStore>,
    interfere: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl MultiStreamCommand for CopyBalance {
    type Rejection = BankError;

    fn streams(&self) -> Vec<StreamKey> {
        vec![StreamKey::new(BankAccount::STREAM_TYPE, self.to)]
    }

    async fn decide(
        &self,
        work: &mut UnitOfWork<'_, BankError>,
    ) -> Result<(), CommandError<BankError>> {
        let seen = work.state::<BankAccount>(self.from).await?.balance;
        if self.interfere.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let deposit = BankEvent::MoneyDeposited { amount: money("5") };
            let (event_type, payload) = eventfold::es::upcast::encode(&deposit).unwrap();
            let event = NewEvent { event_type, payload, ..new_event("") };
            let stream = StreamKey::new(BankAccount::STREAM_TYPE, self.from);
            self.interferer
                .append(
                    vec![StreamAppend { stream, expected_version: 1, events: vec![event] }],
                    None,
                )
                .await
                .unwrap();
        }
        let amount = Money::positive(seen, "amount").unwrap();
        work.handle::<BankAccount>(self.to, &BankCommand::DepositMoney { amount }).await?;
        Ok(())
    }
}

fn money(s: &str) -> Money {
    Money::positive(s.parse().unwrap(), "amount").unwrap()
}

#[tokio::test]
async fn a_decision_never_rests_on_a_stream_that_moved_after_it_was_read() {
    let (app, store) = migrated_store().await;
    let executor = CommandExecutor::new(
        store.clone(),
        Arc::new(eventfold::domain::upcasters()),
        CommandSettings::default(),
    );
    let open = |deposit: &str| BankCommand::OpenAccount {
        owner: "Ada".into(),
        initial_deposit: money(deposit),
        overdraft_limit: Money::ZERO,
        customer_id: None,
    };
    let (from, to) = (Uuid::now_v7(), Uuid::now_v7());
    let ctx = CommandContext::default();
    executor.execute::<BankAccount>(from, &open("10"), &ctx).await.unwrap();
    executor.execute::<BankAccount>(to, &open("1"), &ctx).await.unwrap();
    let interferer = Arc::new(SeaEventStore::new(
        eventfold::infra::db::connect(&app.database_url, 2).await.unwrap(),
    ));
    let command = CopyBalance { from, to, interferer, interfere: true.into() };
    let outcome = executor.execute_many(&command, &ctx).await.unwrap();
    assert_eq!(outcome.version, 2);
    // The first decision saw 10; the read stream moved to 15 before the
    // append, which therefore failed and was decided again on 15.
    let to_state = executor.load::<BankAccount>(to).await.unwrap().state;
    assert_eq!(to_state.balance, "16".parse().unwrap());
    app.stop().await;
}

/// The statements a writer prepared for an append alone, then for groups
/// of every size the queue makes of 1..=24 concurrent appends of one to
/// three events each, with a command record each when `recorded`.
async fn statements_prepared_for_groups(recorded: bool) -> Vec<String> {
    let (app, _) = migrated_store().await;
    // One connection: every statement the writers prepare is prepared on
    // it, and `pg_prepared_statements` (per session) lists them all.
    let db = eventfold::infra::db::connect(&app.database_url, 1).await.unwrap();
    let store = Arc::new(SeaEventStore::new(db.clone()));
    let append = |store: Arc<SeaEventStore>, events: usize| async move {
        let stream = StreamKey::new("Test", Uuid::now_v7());
        let command = recorded.then(|| eventfold::es::store::CommandRecord {
            command_id: Uuid::now_v7(),
            stream: stream.clone(),
        });
        let events = (0..events).map(|_| new_event("Shaped")).collect();
        let appended = StreamAppend { stream, expected_version: 0, events };
        store.append(vec![appended], command).await.unwrap()
    };
    append(store.clone(), 1).await;
    for wave in 1..=24 {
        let appends: Vec<_> =
            (0..wave).map(|n| tokio::spawn(append(store.clone(), 1 + n % 3))).collect();
        for a in appends {
            a.await.unwrap();
        }
    }
    let waves = 1 + (1..=24).sum::<i64>();
    let streams = app.scalar_i64("SELECT COUNT(DISTINCT stream_id) FROM events").await;
    assert_eq!(streams, waves);
    let logged = app.scalar_i64("SELECT COUNT(*) FROM command_log").await;
    assert_eq!(logged, if recorded { waves } else { 0 });
    let prepared = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT statement FROM pg_prepared_statements",
        ))
        .await
        .unwrap();
    app.stop().await;
    prepared.iter().map(|r| r.try_get::<String>("", "statement").unwrap()).collect()
}

/// How many of `statements` start with `start`.
fn shapes(statements: &[String], start: &str) -> usize {
    statements.iter().filter(|s| s.trim_start().starts_with(start)).count()
}

#[tokio::test]
async fn the_writers_statements_keep_one_shape_whatever_the_group_size() {
    let statements = statements_prepared_for_groups(true).await;
    assert_eq!(shapes(&statements, "INSERT INTO events"), 1, "{statements:#?}");
    assert_eq!(shapes(&statements, "INSERT INTO command_log"), 1, "{statements:#?}");
    // Appends that write every stream they name lock and read versions
    // in one statement; the two-statement form is for checked streams.
    assert_eq!(shapes(&statements, "WITH locks AS MATERIALIZED"), 1, "{statements:#?}");
    assert_eq!(shapes(&statements, "SELECT CASE WHEN l.exclusive"), 0, "{statements:#?}");
    assert_eq!(shapes(&statements, "SELECT k.stream_type"), 0, "{statements:#?}");
    // A command record needs the transaction: the one-statement form is unused.
    assert_eq!(shapes(&statements, "WITH held AS MATERIALIZED"), 0, "{statements:#?}");
}

#[tokio::test]
async fn appends_without_command_records_are_one_statement_of_one_shape() {
    let statements = statements_prepared_for_groups(false).await;
    assert_eq!(shapes(&statements, "WITH held AS MATERIALIZED"), 1, "{statements:#?}");
    // Nothing of the transaction's statements: no BEGIN-to-COMMIT round trips.
    assert_eq!(shapes(&statements, "WITH locks AS MATERIALIZED"), 0, "{statements:#?}");
    assert_eq!(shapes(&statements, "INSERT INTO events"), 0, "{statements:#?}");
}

/// Appends of 2 KiB events racing for one connection, with client command
/// ids (`recorded`: the transaction) or without (the one statement).
async fn large_appends_racing(recorded: bool) {
    use eventfold::es::projector::ROUND_TRIP_BYTES;
    const APPENDS: usize = 48;
    let (app, _) = migrated_store().await;
    // One connection: the appends queue while a group commits, so the
    // next group takes many of them.
    let (db, seen) = sized_pool(&app.database_url).await;
    let store = Arc::new(SeaEventStore::new(db));
    let filler = "x".repeat(2048);
    let appends: Vec<_> = (0..APPENDS)
        .map(|_| {
            let (store, filler) = (store.clone(), filler.clone());
            tokio::spawn(async move {
                let stream = StreamKey::new("Large", Uuid::now_v7());
                let command = recorded.then(|| eventfold::es::store::CommandRecord {
                    command_id: Uuid::now_v7(),
                    stream: stream.clone(),
                });
                let mut event = new_event("Large");
                event.payload = json!({ "filler": filler });
                let append = StreamAppend { stream, expected_version: 0, events: vec![event] };
                store.append(vec![append], command).await.unwrap()
            })
        })
        .collect();
    for append in appends {
        append.await.unwrap();
    }
    let stored = app
        .scalar_i64("SELECT COUNT(*) FROM events WHERE stream_type = 'Large' AND version = 1")
        .await;
    assert_eq!(stored, APPENDS as i64, "every append is stored once");
    let ordered = app
        .scalar_i64(
            "SELECT COUNT(*) FROM (SELECT position, lag(position) OVER (ORDER BY tx_id, position) \
             AS before FROM events) p WHERE p.before >= p.position",
        )
        .await;
    assert_eq!(ordered, 0, "commit order and positions agree");
    let inserts: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(sql, _)| sql.contains("INSERT INTO events"))
        .map(|(_, bytes)| *bytes)
        .collect();
    let one = 2048;
    assert!(inserts.len() < APPENDS, "appends were grouped: {inserts:?}");
    assert!(inserts.iter().any(|b| *b > 2 * one), "a statement carried several: {inserts:?}");
    for bytes in &inserts {
        assert!(*bytes <= ROUND_TRIP_BYTES, "{bytes} bytes of parameters in one statement");
    }
    let total: usize = inserts.iter().sum();
    assert!(total >= APPENDS * one, "every event's payload travelled ({total} bytes)");
    app.stop().await;
}

#[tokio::test]
async fn no_append_statement_carries_more_than_one_round_trip_of_parameters() {
    large_appends_racing(false).await;
}

#[tokio::test]
async fn no_recorded_append_carries_more_than_one_round_trip_of_parameters() {
    large_appends_racing(true).await;
}
