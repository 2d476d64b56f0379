//! Streams that an append only read are locked, not just re-checked: an
//! append that read stream S either waits for a concurrent writer of S and
//! then sees its version, or makes that writer wait; two appends that each
//! read the other's stream never both commit (no write skew), on
//! PostgreSQL and on SQLite.

use std::sync::Arc;
use std::time::Duration;

use eventfold::es::envelope::{EventMetadata, NewEvent, StreamKey};
use eventfold::es::store::{EventStore, Outcome, StoreError, StreamAppend};
use eventfold::infra::append_locks::stream_lock_key;
use eventfold::infra::event_store::SeaEventStore;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

/// Races run per test.
const RACES: usize = 200;

fn new_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Happened".into(),
        schema_version: 1,
        payload: json!({}),
        metadata: EventMetadata::default(),
    }
}

fn append(stream: &StreamKey, expected_version: i64, events: usize) -> StreamAppend {
    StreamAppend {
        stream: stream.clone(),
        expected_version,
        events: (0..events).map(|_| new_event()).collect(),
    }
}

/// A store of its own over `app`'s database: another process's writer.
async fn other_store(app: &TestApp) -> Arc<SeaEventStore> {
    let db = eventfold::infra::db::connect(&app.database_url, 4).await.unwrap();
    Arc::new(SeaEventStore::new(db))
}

/// `RACES` times, one race after the other, at the same instant, through
/// stores of their own: one append writes T and checks that S is still at
/// version 1, the other writes S and checks that T is still empty. Each
/// read the stream the other writes, so in any serial order the second
/// sees the first's write and loses: both winning is write skew. The only
/// refusal allowed is a conflict.
async fn assert_no_write_skew(app: &TestApp) {
    let (left, right) = (other_store(app).await, other_store(app).await);
    let read: Vec<StreamKey> = (0..RACES).map(|_| StreamKey::new("Test", Uuid::now_v7())).collect();
    let created: Vec<_> = read.iter().map(|s| append(s, 0, 1)).collect();
    left.append(created, None).await.unwrap();
    let mut races = Vec::with_capacity(RACES);
    for s in &read {
        let t = StreamKey::new("Test", Uuid::now_v7());
        races.push(tokio::join!(
            left.append(vec![append(&t, 0, 1), append(s, 1, 0)], None),
            right.append(vec![append(s, 1, 1), append(&t, 0, 0)], None),
        ));
    }
    let mut both = 0;
    for (wrote_t, wrote_s) in &races {
        for result in [wrote_t, wrote_s] {
            if let Err(e) = result {
                assert!(matches!(e, StoreError::Conflict { .. }), "only conflicts: {e:?}");
            }
        }
        both += usize::from(wrote_t.is_ok() && wrote_s.is_ok());
    }
    eprintln!("both appends committed in {both} of {RACES} races");
    assert_eq!(both, 0, "each append read the other's stream, yet both won {both} times");
}

#[tokio::test]
async fn two_appends_that_read_each_others_stream_never_both_win_on_postgres() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    assert_no_write_skew(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn two_appends_that_read_each_others_stream_never_both_win_embedded() {
    let app = spawn_embedded().await;
    assert_no_write_skew(&app).await;
    app.stop().await;
}

/// Advisory lock requests of this test's database still waiting.
async fn waiting_locks(app: &TestApp) -> i64 {
    app.scalar_i64(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
}

/// Opens a transaction on a connection of its own that holds `stream`'s
/// advisory lock as an append does: `exclusive` as a writer, else shared
/// as an append that only checked the stream.
async fn hold_lock(app: &TestApp, stream: &StreamKey, exclusive: bool) -> DatabaseTransaction {
    let conn = eventfold::infra::db::connect(&app.database_url, 1).await.unwrap();
    let txn = conn.begin().await.unwrap();
    let function = if exclusive { "pg_advisory_xact_lock" } else { "pg_advisory_xact_lock_shared" };
    let key = stream_lock_key(stream);
    let sql = format!("SELECT {function}($1)");
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [key.into()]))
        .await
        .unwrap();
    txn
}

/// A writer of `stream` (at version 1) mid-commit: it holds the stream's
/// lock and has inserted version 2.
async fn writing_version_two(app: &TestApp, stream: &StreamKey) -> DatabaseTransaction {
    let writer = hold_lock(app, stream, true).await;
    let mut second = raw_event("Test", stream.stream_id, "Happened");
    second.version = sea_orm::ActiveValue::Set(2);
    second.insert(&writer).await.unwrap();
    writer
}

/// Waits (bounded) until some append waits for a lock.
async fn until_an_append_waits(app: &TestApp) {
    let waiting = eventually(Duration::from_secs(10), || async { waiting_locks(app).await > 0 });
    assert!(waiting.await, "no append waited for the lock");
}

/// Starts `appends` through `store` on a task of its own and returns once
/// some append waits for a lock, asserting (`why`) that it has not ended.
async fn waiting_append(
    app: &TestApp,
    store: &Arc<SeaEventStore>,
    appends: Vec<StreamAppend>,
    why: &str,
) -> tokio::task::JoinHandle<Result<Outcome, StoreError>> {
    let store = store.clone();
    let task = tokio::spawn(async move { store.append(appends, None).await });
    until_an_append_waits(app).await;
    assert!(!task.is_finished(), "{why}");
    task
}

/// A PostgreSQL app, a store of its own, and a stream S at version 1.
async fn stream_at_version_one() -> (TestApp, Arc<SeaEventStore>, StreamKey) {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let store = other_store(&app).await;
    let stream = StreamKey::new("Test", Uuid::now_v7());
    store.append(vec![append(&stream, 0, 1)], None).await.unwrap();
    (app, store, stream)
}

#[tokio::test]
async fn an_append_that_read_a_stream_waits_for_its_writer_then_sees_the_new_version() {
    let (app, store, read) = stream_at_version_one().await;

    // A writer of S holds its lock and has inserted version 2, not committed.
    let writer = writing_version_two(&app, &read).await;

    // A command that decided on S at version 1 must wait for it...
    let own = StreamKey::new("Test", Uuid::now_v7());
    let appends = vec![append(&own, 0, 1), append(&read, 1, 0)];
    let why = "the append that read S went ahead of S's writer";
    let reader = waiting_append(&app, &store, appends, why).await;

    // ...and, once the writer commits, see version 2 and lose.
    writer.commit().await.unwrap();
    let lost = reader.await.unwrap().unwrap_err();
    assert!(matches!(lost, StoreError::Conflict { expected: 1, actual: 2, .. }), "{lost:?}");
    assert!(store.load_stream(&own, 0).await.unwrap().is_empty(), "nothing of it appended");
    app.stop().await;
}

#[tokio::test]
async fn a_writer_waits_for_appends_that_read_its_stream_and_readers_share_it() {
    let (app, store, read) = stream_at_version_one().await;

    // An append that checked S is committing: it holds S shared.
    let reader = hold_lock(&app, &read, false).await;
    // Another append that only checks S shares the lock and goes through.
    let own = StreamKey::new("Test", Uuid::now_v7());
    let shared = store.append(vec![append(&own, 0, 1), append(&read, 1, 0)], None);
    tokio::time::timeout(Duration::from_secs(10), shared).await.unwrap().unwrap();

    // A writer of S waits until the reader has committed.
    let why = "the writer moved S under an append that read it";
    let writer = waiting_append(&app, &store, vec![append(&read, 1, 1)], why).await;
    reader.commit().await.unwrap();
    assert_eq!(writer.await.unwrap().unwrap().version, 2);
    app.stop().await;
}

#[tokio::test]
async fn an_append_that_waited_for_a_writer_of_its_own_stream_gets_the_conflict() {
    let (app, store, stream) = stream_at_version_one().await;

    // A writer of S holds its lock and has inserted version 2, not committed.
    let writer = writing_version_two(&app, &stream).await;

    // An append of S decided at version 1 (it locks and reads in one
    // statement, whose snapshot predates the lock it waits for)...
    let why = "the append went ahead of S's writer";
    let late = waiting_append(&app, &store, vec![append(&stream, 1, 2)], why).await;

    // ...is answered with the conflict once the writer commits, and
    // appends nothing: S holds the writer's version 2, nothing after it.
    writer.commit().await.unwrap();
    let lost = late.await.unwrap().unwrap_err();
    assert!(matches!(lost, StoreError::Conflict { expected: 1, actual: 2, .. }), "{lost:?}");
    let events = store.load_stream(&stream, 0).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_append_waiting_for_a_stream_lock_holds_up_no_other_stream() {
    let (app, store, stream) = stream_at_version_one().await;

    // Some transaction holds S's lock; an append of S (one statement: no
    // command record) waits for it...
    let holder = hold_lock(&app, &stream, true).await;
    let why = "the append of S went ahead of S's lock holder";
    let late = waiting_append(&app, &store, vec![append(&stream, 1, 1)], why).await;

    // ...without the commit-order lock (taken by the events INSERT, after
    // the stream locks): appends of other streams commit meanwhile, alone
    // and in a transaction (which takes that lock too).
    let other = StreamKey::new("Test", Uuid::now_v7());
    let alone = store.append(vec![append(&other, 0, 1)], None);
    let alone = tokio::time::timeout(Duration::from_secs(10), alone).await;
    assert_eq!(alone.expect("held up by an append waiting for a stream").unwrap().version, 1);
    let checked = vec![append(&other, 1, 1), append(&own(), 0, 0)];
    let checked = tokio::time::timeout(Duration::from_secs(10), store.append(checked, None)).await;
    assert_eq!(checked.expect("held up by an append waiting for a stream").unwrap().version, 2);
    assert!(!late.is_finished(), "{why}");

    holder.commit().await.unwrap();
    assert_eq!(late.await.unwrap().unwrap().version, 2);
    app.stop().await;
}

/// A new, empty stream.
fn own() -> StreamKey {
    StreamKey::new("Test", Uuid::now_v7())
}
