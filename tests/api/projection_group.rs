//! The read models consumed as one group: one read transaction per batch
//! for all of them, and still one dead-letter stream per projection.

use std::sync::Arc;
use std::time::Duration;

use eventfold::es::changes::LocalChangeBus;
use eventfold::es::envelope::{Position, RecordedEvent};
use eventfold::es::store::EventStore;
use eventfold::infra::event_store::SeaEventStore;
use eventfold::infra::projection_runtime::checkpoint::{fence, load_checkpoint};
use eventfold::infra::projection_runtime::{
    Applier, ProjectionGroup, ProjectionMonitor, RuntimeSettings,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::json;

use crate::convergence::assert_converged;
use crate::helpers::*;
use crate::integrity::{dead_letters, park_a_stream};
use crate::load::accounts;
use crate::shop_helpers::{register_customer, stocked_product};

/// Committed transactions of database `name` so far, as PostgreSQL counts
/// them (read from another database, so reading does not count).
async fn commits(admin: &DatabaseConnection, name: &str) -> i64 {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Runs `work` on a pool of its own to database `url` (named `name`), and
/// returns how many transactions it committed there. The pool is closed
/// before counting: a backend hands its counts over when it exits.
async fn transactions_of<F, Fut>(admin: &DatabaseConnection, url: &str, name: &str, work: F) -> i64
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = commits(admin, name).await;
    let db = eventfold::infra::db::connect(url, 1).await.unwrap();
    work(db.clone()).await;
    db.close().await.unwrap();
    // Counts arrive as the backend exits; then wait a little more for
    // anything late.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while commits(admin, name).await == before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    commits(admin, name).await - before
}

fn group(db: &DatabaseConnection) -> ProjectionGroup {
    let upcasters = Arc::new(eventfold::domain::upcasters());
    let monitor = Arc::new(ProjectionMonitor::default());
    let changes = Arc::new(LocalChangeBus::new(64));
    let members = eventfold::read_models::all(upcasters)
        .into_iter()
        .map(|projection| Applier {
            read_db: db.clone(),
            projection,
            changes: changes.clone(),
            monitor: monitor.clone(),
            settings: RuntimeSettings::default(),
        })
        .collect();
    ProjectionGroup::new(eventfold::read_models::GROUP, members)
}

#[tokio::test]
async fn one_batch_across_every_read_model_costs_one_read_transaction() {
    // Events of accounts, customers and products, written with nothing
    // projecting (the server only serves the API, which is idle meanwhile).
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    open_account(&app, "Ada", "10", "0").await;
    open_account(&app, "Grace", "20", "0").await;
    register_customer(&app, "Alan", "alan@example.com").await;
    stocked_product(&app, "Tea", "3.50", 5).await;
    let (url, admin_url) = (app.database_url.clone(), admin_url());
    let name = url.rsplit('/').next().unwrap().to_owned();
    let store = SeaEventStore::new(eventfold::infra::db::connect(&url, 2).await.unwrap());
    let events: Vec<RecordedEvent> = loop {
        let events = store.read_committed(Position::START, 100).await.unwrap();
        if events.len() == 5 {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = events.last().unwrap().position;
    let setup = eventfold::infra::db::connect(&url, 1).await.unwrap();
    let names: Vec<&str> = group(&setup).names().collect();
    let mut claims = Vec::new();
    let mut alone = Vec::new();
    for name in &names {
        claims.push(fence(&setup, name, &format!("{name}#0")).await.unwrap());
        alone.push(fence(&setup, name, &format!("{name}#1")).await.unwrap());
    }
    setup.close().await.unwrap();
    let admin = Database::connect(&admin_url).await.unwrap();

    // Opening and closing a pool counts too (measured: once); what an
    // empty run counts is taken off every run.
    let overhead = transactions_of(&admin, &url, &name, |_db| async {}).await;
    let one = transactions_of(&admin, &url, &name, |db| async move {
        use sea_orm::TransactionTrait;
        db.begin().await.unwrap().commit().await.unwrap();
    })
    .await;
    assert_eq!(one - overhead, 1, "the count sees one empty transaction");
    let shared = transactions_of(&admin, &url, &name, |db| {
        let claims = claims.clone();
        let events = events.clone();
        async move {
            let reached = group(&db).apply(&claims, &events, None, Position::START).await.unwrap();
            assert!(reached.iter().all(|r| *r == last), "every checkpoint moves: {reached:?}");
        }
    })
    .await;
    assert_eq!(shared - overhead, 1, "five events for six projections: one transaction");

    // The same batch applied projection by projection (as each consumed
    // alone before): one transaction each, which the count sees.
    let separate = transactions_of(&admin, &url, &name, |db| {
        let events = events.clone();
        async move {
            let group = group(&db);
            for (member, claim) in group.members.iter().zip(&alone) {
                member.apply(claim, &events, None).await.unwrap();
            }
        }
    })
    .await;
    assert_eq!(separate - overhead, names.len() as i64, "one per projection");

    // What the shared transaction wrote: every read model and checkpoint.
    let db = eventfold::infra::db::connect(&url, 1).await.unwrap();
    for claim in &claims {
        assert_eq!(load_checkpoint(&db, &claim.key).await.unwrap(), last, "{}", claim.key);
    }
    for (table, rows) in [
        ("bank_account_summary_view", 2),
        ("account_balance_history", 2),
        ("audit_log", 5),
        ("customers_view", 1),
        ("product_stock_view", 1),
        ("order_view_customers", 1),
    ] {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT count(*) FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), rows, "{table}");
    }
    db.close().await.ok();
    admin.close().await.ok();
    app.stop().await;
}

#[tokio::test]
async fn a_poison_event_for_one_projection_parks_only_its_stream_and_the_others_apply_it() {
    // The account's second event trips a fault of the summary's table
    // only; its third waits behind it there.
    let (app, id, later) = park_a_stream().await;
    let parked = dead_letters(&app, "bank_account_summary").await;
    assert_eq!(parked.len(), 2, "{parked:?}");
    for other in ["account_balance_history", "audit_log"] {
        assert!(dead_letters(&app, other).await.is_empty(), "{other} parks nothing");
    }
    // The other read models of the group applied both events.
    let history = app
        .scalar_i64(&format!(
            "SELECT count(*) FROM account_balance_history WHERE account_id = '{id}' AND version IN (2, 3)"
        ))
        .await;
    assert_eq!(history, 2, "the balance history has both deposits");
    let audited = app
        .scalar_i64(&format!(
            "SELECT count(*) FROM audit_log WHERE stream_id = '{id}' AND version IN (2, 3)"
        ))
        .await;
    assert_eq!(audited, 2, "the audit log has both deposits");
    let at = app
        .gql(
            "query($id: UUID!, $p: String) { account(id: $id, minPosition: $p) { version } }",
            json!({ "id": id, "p": later }),
        )
        .await
        .ok();
    assert_eq!(at["account"]["version"], 1, "the summary still shows v1: {at}");
    // Every read model's checkpoint passed the third event, the
    // summary's included: its stream waits in dead letters, not in the
    // runtime, and the group goes on.
    let passed = app
        .scalar_i64(&format!(
            "SELECT count(DISTINCT split_part(name, '#', 1)) FROM projection_checkpoints \
             WHERE split_part(name, '#', 1) IN ('bank_account_summary', 'account_balance_history', \
               'audit_log', 'customers', 'product_stock', 'orders_with_details') \
             AND (tx_id, position) >= (SELECT tx_id, position FROM events WHERE stream_id = '{id}' AND version = 3)"
        ))
        .await;
    assert_eq!(passed, 6, "every read model is past the parked events");
    app.stop().await;
}

/// What an operator might do: empty the summary and move its checkpoints
/// back to the start, leaving the rest of the group where it is.
async fn move_the_summary_back(app: &TestApp) {
    app.db
        .execute_unprepared(
            "BEGIN; TRUNCATE bank_account_summary_view; \
             UPDATE projection_checkpoints SET tx_id = 0, position = 0 \
               WHERE name LIKE 'bank_account_summary#%'; COMMIT;",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_projection_moved_back_behind_its_group_is_caught_up_from_the_event_store() {
    let app = spawn_app().await;
    let ids = accounts(&app, 12).await;
    let (last, position) = open_account(&app, "last", "100", "0").await;
    account_at(&app, &last, &position).await;
    move_the_summary_back(&app).await;
    for id in &ids {
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
    }
    // Applied to the group as it is, the deposits would find no account
    // row (and be parked); caught up from the store, every row is back.
    let expected = 12 * 10_100 + 10_000;
    let restored = eventually(Duration::from_secs(30), || async {
        app.scalar_i64("SELECT count(*) FROM bank_account_summary_view").await == 13
            && app
                .scalar_i64(
                    "SELECT coalesce(sum(balance_cents), 0)::bigint FROM bank_account_summary_view",
                )
                .await
                == expected
    })
    .await;
    assert!(restored, "the summary is caught up from the event store");
    assert!(dead_letters(&app, "bank_account_summary").await.is_empty());
    let history = app.scalar_i64("SELECT count(*) FROM account_balance_history").await;
    assert_eq!(history, 25, "the rest of the group applied each event once");
    assert_converged(&app).await;
    app.stop().await;
}

/// With no event coming after the reset, no batch would ever find the
/// moved-back projection: every partition looks now and then on its own.
#[tokio::test]
async fn a_projection_moved_back_on_an_idle_partition_is_caught_up_without_new_events() {
    let app = spawn_app().await;
    let (last, position) = open_account(&app, "idle", "100", "0").await;
    account_at(&app, &last, &position).await;
    move_the_summary_back(&app).await;
    let restored = eventually(Duration::from_secs(30), || async {
        app.scalar_i64("SELECT count(*) FROM bank_account_summary_view").await == 1
    })
    .await;
    assert!(restored, "the summary is caught up from the event store, no event needed");
    assert_eq!(app.event_count().await, 1, "nothing was appended meanwhile");
    assert_converged(&app).await;
    app.stop().await;
}

/// The SQL of every statement run through a pool of its own to `url`.
async fn recorded_pool(url: &str) -> (DatabaseConnection, Arc<std::sync::Mutex<Vec<String>>>) {
    let mut db = eventfold::infra::db::connect(url, 1).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    db.set_metric_callback(move |info| sink.lock().unwrap().push(info.statement.sql.clone()));
    (db, seen)
}

/// Applies `events` to the bank read models in one transaction of `db`
/// and returns what each reported, or the first error.
async fn apply_bank(
    db: &DatabaseConnection,
    events: &[RecordedEvent],
) -> Result<usize, eventfold::es::projector::ProjectionError> {
    use eventfold::es::projector::apply_events;
    use eventfold::read_models::account_summary::AccountSummaryProjection;
    use eventfold::read_models::balance_history::BalanceHistoryProjection;
    use sea_orm::TransactionTrait;
    let upcasters = Arc::new(eventfold::domain::upcasters());
    let summary = AccountSummaryProjection { upcasters: upcasters.clone() };
    let history = BalanceHistoryProjection { upcasters };
    let events: Vec<&RecordedEvent> = events.iter().collect();
    let txn = db.begin().await.unwrap();
    let changed = apply_events(&summary, &txn, &events).await?.len();
    apply_events(&history, &txn, &events).await?;
    txn.commit().await.unwrap();
    Ok(changed)
}

#[tokio::test]
async fn deposits_and_withdrawals_on_open_accounts_are_one_statement_per_bank_read_model() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let (ada, _) = open_account(&app, "Ada", "10", "0").await;
    let (bob, _) = open_account(&app, "Bob", "1", "0").await;
    for (id, mutation, amount) in [
        (&ada, DEPOSIT, "5"),
        (&bob, DEPOSIT, "2.50"),
        (&ada, WITHDRAW, "3"),
        (&ada, DEPOSIT, "0.25"),
    ] {
        app.gql(mutation, json!({ "input": { "accountId": id, "amount": amount } })).await.ok();
    }
    let store =
        SeaEventStore::new(eventfold::infra::db::connect(&app.database_url, 1).await.unwrap());
    let events = store.read_committed(Position::START, 100).await.unwrap();
    assert_eq!(events.len(), 6);
    let (openings, moves) = events.split_at(2);
    let (db, seen) = recorded_pool(&app.database_url).await;
    apply_bank(&db, openings).await.unwrap();

    // The four moves on two open accounts: one UPDATE of the summary rows,
    // one INSERT of the history rows; no row is read first.
    seen.lock().unwrap().clear();
    assert_eq!(apply_bank(&db, moves).await.unwrap(), 2, "two accounts changed");
    let statements = seen.lock().unwrap().clone();
    let on = |table: &str| statements.iter().filter(|s| s.contains(table)).count();
    assert_eq!(on("bank_account_summary_view"), 1, "{statements:#?}");
    assert_eq!(on("account_balance_history"), 1, "{statements:#?}");
    assert!(statements.iter().all(|s| !s.trim_start().starts_with("SELECT")), "{statements:#?}");

    // The rows are what folding the events gives.
    let summary = "SELECT balance_cents, total_deposits_cents, total_withdrawals_cents, version, \
                   position FROM bank_account_summary_view ORDER BY owner";
    let rows = app.query_json(summary).await;
    let last_of = |id: &str| {
        events.iter().rfind(|e| e.stream.stream_id.to_string() == id).unwrap().position.pos
    };
    assert_eq!(rows, json!([[1225, 1525, 300, 4, last_of(&ada)], [350, 350, 0, 2, last_of(&bob)]]),);
    let history = "SELECT v.owner, h.version, h.balance_cents FROM account_balance_history h \
                   JOIN bank_account_summary_view v USING (account_id) ORDER BY v.owner, h.version";
    let expected_history = json!([
        ["Ada", 1, 1000],
        ["Ada", 2, 1500],
        ["Ada", 3, 1200],
        ["Ada", 4, 1225],
        ["Bob", 1, 100],
        ["Bob", 2, 350]
    ]);
    assert_eq!(app.query_json(history).await, expected_history);

    // Delivered again: nothing changes (the rows are past the batch).
    assert_eq!(apply_bank(&db, moves).await.unwrap(), 0, "nothing changed");
    assert_eq!(app.query_json(summary).await, rows);
    assert_eq!(app.query_json(history).await, expected_history);

    // An event past a gap is refused by both, as the fold refuses it.
    let mut gap = moves[3].clone();
    gap.version = 6;
    let refused = apply_bank(&db, std::slice::from_ref(&gap)).await.unwrap_err();
    assert!(refused.to_string().contains("an earlier event is missing"), "{refused}");

    // A deposit that would overflow a stored amount is refused as the fold
    // refuses it (a projection error, not a database error), and changes
    // nothing.
    let ada_id: uuid::Uuid = ada.parse().unwrap();
    for table in ["bank_account_summary_view", "account_balance_history"] {
        let sql = format!(
            "UPDATE {table} SET balance_cents = {} WHERE account_id = '{ada_id}'",
            i64::MAX - 10
        );
        db.execute_unprepared(&sql).await.unwrap();
    }
    let mut next = moves[3].clone();
    next.version = 5;
    let overflow = apply_bank(&db, std::slice::from_ref(&next)).await.unwrap_err();
    assert!(overflow.to_string().contains("overflow"), "{overflow}");
    let summary_balance = format!(
        "SELECT balance_cents, version FROM bank_account_summary_view WHERE account_id = '{ada_id}'"
    );
    assert_eq!(app.query_json(&summary_balance).await, json!([[i64::MAX - 10, 4]]));
    app.stop().await;
}

/// The app's events, the read-model group's claims on partition key `#0`,
/// and a recording pool that has applied the first events (the openings).
struct Applying {
    events: Vec<RecordedEvent>,
    claims: Vec<eventfold::infra::projection_runtime::Claim>,
    db: DatabaseConnection,
    seen: Arc<std::sync::Mutex<Vec<(String, usize)>>>,
}

async fn after_openings(app: &TestApp, openings: usize, events: usize) -> Applying {
    let url = &app.database_url;
    let store = SeaEventStore::new(eventfold::infra::db::connect(url, 1).await.unwrap());
    let all = store.read_committed(Position::START, 100).await.unwrap();
    assert_eq!(all.len(), events);
    let setup = eventfold::infra::db::connect(url, 1).await.unwrap();
    let mut claims = Vec::new();
    for name in group(&setup).names() {
        claims.push(fence(&setup, name, &format!("{name}#0")).await.unwrap());
    }
    setup.close().await.unwrap();
    let (db, seen) = sized_pool(url).await;
    group(&db).apply(&claims, &all[..openings], None, Position::START).await.unwrap();
    Applying { events: all, claims, db, seen }
}

/// An API with nothing projecting, and five events: Ada's and Bob's
/// openings (10 and 1), then a deposit of 5 for Ada, 2.50 for Bob and a
/// withdrawal of 3 by Ada.
async fn ada_and_bob_and_three_moves() -> TestApp {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let (ada, _) = open_account(&app, "Ada", "10", "0").await;
    let (bob, _) = open_account(&app, "Bob", "1", "0").await;
    for (id, mutation, amount) in
        [(&ada, DEPOSIT, "5"), (&bob, DEPOSIT, "2.50"), (&ada, WITHDRAW, "3")]
    {
        app.gql(mutation, json!({ "input": { "accountId": id, "amount": amount } })).await.ok();
    }
    app
}

#[tokio::test]
async fn a_live_batch_is_one_statement_for_every_read_model_and_the_checkpoints() {
    let app = ada_and_bob_and_three_moves().await;
    let Applying { events, claims, db, seen } = after_openings(&app, 2, 5).await;
    let moves = &events[2..];

    // The three moves: the lock of the checkpoints, then one statement
    // that writes the summary, the history, the audit log and every
    // checkpoint; nothing is read first and nothing follows.
    seen.lock().unwrap().clear();
    let last = moves.last().unwrap().position;
    let reached = group(&db).apply(&claims, moves, None, Position::START).await.unwrap();
    assert!(reached.iter().all(|r| *r == last), "{reached:?}");
    let statements: Vec<String> = seen.lock().unwrap().iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(statements.len(), 2, "{statements:#?}");
    assert!(statements[0].contains("pg_advisory_xact_lock_shared"), "{statements:#?}");
    for table in [
        "bank_account_summary_view",
        "account_balance_history",
        "audit_log",
        "projection_checkpoints",
    ] {
        assert!(statements[1].contains(table), "{table} in {statements:#?}");
    }
    for claim in &claims {
        assert_eq!(load_checkpoint(&db, &claim.key).await.unwrap(), last, "{}", claim.key);
    }
    let summary =
        "SELECT owner, balance_cents, version FROM bank_account_summary_view ORDER BY owner";
    assert_eq!(app.query_json(summary).await, json!([["Ada", 1200, 3], ["Bob", 350, 2]]));
    let history = "SELECT count(*) FROM account_balance_history";
    assert_eq!(app.query_json(history).await, json!([[5]]));
    assert_eq!(app.query_json("SELECT count(*) FROM audit_log").await, json!([[5]]));

    // Delivered again (a redelivery after a crash): nothing changes.
    group(&db).apply(&claims, moves, None, Position::START).await.unwrap();
    assert_eq!(app.query_json(summary).await, json!([["Ada", 1200, 3], ["Bob", 350, 2]]));
    assert_eq!(app.query_json(history).await, json!([[5]]));
    app.stop().await;
}

#[tokio::test]
async fn no_statement_of_a_large_batch_carries_more_than_one_round_trip_of_parameters() {
    use eventfold::es::projector::ROUND_TRIP_BYTES;
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(open_account(&app, &format!("Owner {i:02}"), "1", "0").await.0);
    }
    for id in &ids {
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "2" } })).await.ok();
    }
    let Applying { events, claims, db, seen } = after_openings(&app, 40, 80).await;
    let deposits = &events[40..];

    // Forty deposits: their one statements together (and the audit log's
    // alone) are more than one round trip carries, so they go in several.
    seen.lock().unwrap().clear();
    group(&db).apply(&claims, deposits, None, Position::START).await.unwrap();
    let statements = seen.lock().unwrap().clone();
    assert!(statements.len() > 2, "more than the lock and one statement: {statements:#?}");
    for (sql, bytes) in &statements {
        assert!(*bytes <= ROUND_TRIP_BYTES, "{bytes} bytes of parameters: {sql}");
    }
    let total: usize = statements.iter().map(|(_, b)| b).sum();
    assert!(total > ROUND_TRIP_BYTES, "the batch itself is larger ({total} bytes)");

    // And every row is what folding the events gives.
    let summary = "SELECT count(*), sum(balance_cents), min(version), max(version) \
                   FROM bank_account_summary_view";
    assert_eq!(app.query_json(summary).await, json!([[40, 12000, 2, 2]]));
    let history = "SELECT count(*), sum(balance_cents) FROM account_balance_history";
    assert_eq!(app.query_json(history).await, json!([[80, 16000]]));
    assert_eq!(app.query_json("SELECT count(*) FROM audit_log").await, json!([[80]]));
    let last = deposits.last().unwrap().position;
    for claim in &claims {
        assert_eq!(load_checkpoint(&db, &claim.key).await.unwrap(), last, "{}", claim.key);
    }
    app.stop().await;
}

/// `synchronous_commit` of the connection `db` (a pool of one) holds.
async fn synchronous_commit(db: &DatabaseConnection) -> String {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SHOW synchronous_commit"))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<String>(0).unwrap()
}

/// A group's read transaction and the relay's checkpoint commit without
/// waiting for their flush (what a crash does with that: `pg_crash`), and
/// only they: the connection they ran on, which the event store's appends
/// share, still waits for it afterwards.
#[tokio::test]
async fn unflushed_read_commits_leave_their_connection_committing_synchronously() {
    use eventfold::infra::projection_runtime::checkpoint::{Claim, save_checkpoint_unflushed};
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    open_account(&app, "Ada", "10", "0").await;
    let db = eventfold::infra::db::connect(&app.database_url, 1).await.unwrap();
    let store = SeaEventStore::new(db.clone());
    let events = store.read_committed(Position::START, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    let mut claims = Vec::new();
    for name in group(&db).names() {
        claims.push(fence(&db, name, &format!("{name}#0")).await.unwrap());
    }
    assert_eq!(synchronous_commit(&db).await, "on");
    group(&db).apply(&claims, &events, None, Position::START).await.unwrap();
    assert_eq!(synchronous_commit(&db).await, "on", "after a group's read transaction");
    save_checkpoint_unflushed(&db, &Claim::unleased("__relay"), events[0].position).await.unwrap();
    assert_eq!(synchronous_commit(&db).await, "on", "after the relay's checkpoint");
    assert_eq!(load_checkpoint(&db, "__relay").await.unwrap(), events[0].position);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM bank_account_summary_view").await, 1);
    app.stop().await;
}

/// A group that has committed the openings of Ada and Bob (so it knows
/// where it left every checkpoint), and the three moves that follow.
struct Live {
    app: TestApp,
    group: ProjectionGroup,
    claims: Vec<eventfold::infra::projection_runtime::Claim>,
    moves: Vec<RecordedEvent>,
    db: DatabaseConnection,
    seen: Arc<std::sync::Mutex<Vec<(String, usize)>>>,
}

async fn live_group() -> Live {
    let app = ada_and_bob_and_three_moves().await;
    let Applying { events, claims, db, seen } = after_openings(&app, 0, 5).await;
    let group = group(&db);
    group.apply(&claims, &events[..2], None, Position::START).await.unwrap();
    assert_eq!(
        group.committed.one_statement_commits(),
        0,
        "the first batch learns, in a transaction"
    );
    Live { app, group, claims, moves: events[2..].to_vec(), db, seen }
}

const SUMMARY: &str =
    "SELECT owner, balance_cents, version FROM bank_account_summary_view ORDER BY owner";

/// Every claim's checkpoint in `db`.
async fn checkpoints_of(
    db: &DatabaseConnection,
    claims: &[eventfold::infra::projection_runtime::Claim],
) -> Vec<Position> {
    let mut at = Vec::new();
    for claim in claims {
        at.push(load_checkpoint(db, &claim.key).await.unwrap());
    }
    at
}

#[tokio::test]
async fn a_live_batch_of_a_group_that_knows_its_checkpoints_is_one_statement_without_a_transaction()
{
    let Live { app, group, claims, moves, db, seen } = live_group().await;
    seen.lock().unwrap().clear();
    let last = moves.last().unwrap().position;
    let reached = group.apply(&claims, &moves, None, Position::START).await.unwrap();
    assert!(reached.iter().all(|r| *r == last), "{reached:?}");
    assert_eq!(group.committed.one_statement_commits(), 1);
    // One statement: the locks, the checkpoints checked and moved, every
    // read model's writes.
    let statements: Vec<String> = seen.lock().unwrap().iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(statements.len(), 1, "{statements:#?}");
    for part in [
        "pg_advisory_xact_lock_shared",
        "eventfold_expect",
        "bank_account_summary_view",
        "account_balance_history",
        "audit_log",
        "UPDATE projection_checkpoints",
    ] {
        assert!(statements[0].contains(part), "{part} in {statements:#?}");
    }
    assert!(checkpoints_of(&db, &claims).await.iter().all(|at| *at == last));
    // It committed without waiting for its flush, and only itself.
    assert_eq!(synchronous_commit(&db).await, "on", "the connection's own setting");
    assert_eq!(app.query_json(SUMMARY).await, json!([["Ada", 1200, 3], ["Bob", 350, 2]]));
    assert_eq!(app.query_json("SELECT count(*) FROM account_balance_history").await, json!([[5]]));
    assert_eq!(app.query_json("SELECT count(*) FROM audit_log").await, json!([[5]]));
    // Delivered again: nothing moves, nothing changes.
    group.apply(&claims, &moves, None, Position::START).await.unwrap();
    assert_eq!(app.query_json(SUMMARY).await, json!([["Ada", 1200, 3], ["Bob", 350, 2]]));
    assert_eq!(app.query_json("SELECT count(*) FROM account_balance_history").await, json!([[5]]));
    app.stop().await;
}

#[tokio::test]
async fn a_one_statement_commit_of_a_worker_whose_partition_was_taken_over_writes_nothing() {
    let Live { app, group, claims, moves, db, .. } = live_group().await;
    let before = checkpoints_of(&db, &claims).await;
    // Another worker takes the partition over: new epochs, same positions.
    let other = eventfold::infra::db::connect(&app.database_url, 1).await.unwrap();
    for (name, claim) in group.names().zip(&claims) {
        fence(&other, name, &claim.key).await.unwrap();
    }
    let refused = group.apply(&claims, &moves, None, Position::START).await;
    assert!(
        matches!(
            refused,
            Err(eventfold::infra::projection_runtime::GroupError::Apply(
                eventfold::infra::projection_runtime::ApplyError::Fenced(_)
            ))
        ),
        "the stale worker is fenced: {:?}",
        refused.map(|_| ())
    );
    assert_eq!(group.committed.one_statement_commits(), 0);
    assert_eq!(checkpoints_of(&db, &claims).await, before, "no checkpoint moved");
    assert_eq!(app.query_json(SUMMARY).await, json!([["Ada", 1000, 1], ["Bob", 100, 1]]));
    assert_eq!(app.query_json("SELECT count(*) FROM audit_log").await, json!([[2]]));
    other.close().await.ok();
    app.stop().await;
}

/// A [`live_group`] whose summary checkpoint was then moved back to the
/// start, as a crash of PostgreSQL losing the last read commits leaves it;
/// and every checkpoint as the group committed it.
async fn summary_moved_back() -> (Live, Vec<Position>) {
    let live = live_group().await;
    let known = checkpoints_of(&live.db, &live.claims).await;
    live.db
        .execute_unprepared(&format!(
            "UPDATE projection_checkpoints SET tx_id = 0, position = 0 WHERE name = '{}'",
            live.claims[0].key
        ))
        .await
        .unwrap();
    (live, known)
}

/// `behind` is the transaction's refusal of a member behind the group, and
/// the group committed nothing in one statement.
fn assert_behind(
    group: &ProjectionGroup,
    behind: Result<Vec<Position>, eventfold::infra::projection_runtime::GroupError>,
) {
    assert!(
        matches!(behind, Err(eventfold::infra::projection_runtime::GroupError::Behind { .. })),
        "the transaction finds the member behind: {:?}",
        behind.map(|_| ())
    );
    assert_eq!(group.committed.one_statement_commits(), 0);
}

#[tokio::test]
async fn a_checkpoint_found_behind_where_the_group_committed_it_sends_the_batch_to_the_transaction()
{
    let (Live { app, group, claims, moves, .. }, known) = summary_moved_back().await;
    let behind = group.apply(&claims, &moves, None, known[0]).await;
    assert_behind(&group, behind);
    assert_eq!(app.query_json(SUMMARY).await, json!([["Ada", 1000, 1], ["Bob", 100, 1]]));
    assert_eq!(app.query_json("SELECT count(*) FROM audit_log").await, json!([[2]]));
    app.stop().await;
}

/// A batch of only a watermark moves every checkpoint and writes nothing
/// else: its one statement must refuse itself too, not move the
/// checkpoints that are where the group left them past the one that is not.
#[tokio::test]
async fn a_watermark_finding_a_checkpoint_behind_moves_none_of_them() {
    let (Live { app, group, claims, moves, db, .. }, known) = summary_moved_back().await;
    let watermark = moves.last().unwrap().position;
    let behind = group.apply(&claims, &[], Some(watermark), known[0]).await;
    assert_behind(&group, behind);
    let after = checkpoints_of(&db, &claims).await;
    assert_eq!(after[0], Position::START);
    assert_eq!(&after[1..], &known[1..], "no other checkpoint moved to the watermark");
    app.stop().await;
}

#[tokio::test]
async fn a_one_statement_commit_that_cannot_apply_every_event_writes_nothing_and_the_transaction_parks_it()
 {
    let Live { app, group, claims, moves, .. } = live_group().await;
    // Bob's summary row is gone (an operator's mistake): the summary's
    // statement cannot apply his deposit.
    app.db
        .execute_unprepared("DELETE FROM bank_account_summary_view WHERE owner = 'Bob'")
        .await
        .unwrap();
    let last = moves.last().unwrap().position;
    let reached = group.apply(&claims, &moves, None, Position::START).await.unwrap();
    assert!(reached.iter().all(|r| *r == last), "{reached:?}");
    assert_eq!(group.committed.one_statement_commits(), 0, "the one statement refused itself");
    // The transaction applied the batch: Ada's moves everywhere, Bob's
    // deposit in the history and the audit log, and parked for the summary.
    assert_eq!(app.query_json(SUMMARY).await, json!([["Ada", 1200, 3]]));
    assert_eq!(app.query_json("SELECT count(*) FROM account_balance_history").await, json!([[5]]));
    assert_eq!(app.query_json("SELECT count(*) FROM audit_log").await, json!([[5]]));
    let parked = app
        .scalar_i64("SELECT count(*) FROM dead_letters WHERE projection = 'bank_account_summary'")
        .await;
    assert_eq!(parked, 1, "Bob's deposit waits in the summary's dead letters");
    app.stop().await;
}
