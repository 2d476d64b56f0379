//! Nothing lost, ever: per-stream order under parking and retry, transient
//! failures retried instead of parked, fenced partition leases, and Redis
//! content that is checked against the event store.

use std::time::Duration;

use eventfold::es::changes::LocalChangeBus;
use eventfold::es::envelope::Position;
use eventfold::es::partition::partition_of;
use eventfold::es::store::EventStore;
use eventfold::infra::event_store::SeaEventStore;
use eventfold::infra::projection_runtime::checkpoint::{fence, load_checkpoint};
use eventfold::infra::projection_runtime::{
    Applier, ApplyError, ProjectionMonitor, RuntimeSettings,
};
use eventfold::read_models::account_summary::AccountSummaryProjection;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::convergence::assert_converged;
use crate::helpers::*;
use crate::load::{Load, accounts};
use crate::process::Server;

const SUMMARY: &str = "bank_account_summary";

/// The dead letters of one projection.
pub(crate) async fn dead_letters(app: &TestApp, projection: &str) -> Vec<Value> {
    let query = "{ projections { name status deadLetters { eventId attempts error errorKind errorReference } } }";
    let data = app.gql(query, json!({})).await.ok();
    let found = data["projections"].as_array().unwrap().iter().find(|p| p["name"] == projection);
    found.unwrap()["deadLetters"].as_array().unwrap().clone()
}

async fn all_dead_letters(app: &TestApp) -> usize {
    let data = app.gql("{ projections { deadLetters { eventId } } }", json!({})).await.ok();
    let projections = data["projections"].as_array().unwrap();
    projections.iter().map(|p| p["deadLetters"].as_array().unwrap().len()).sum()
}

async fn deposit(app: &TestApp, id: &str, amount: &str) -> String {
    let res =
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": amount } })).await.ok();
    res["depositMoney"]["position"].as_str().unwrap().to_owned()
}

fn retry_cli(app: &TestApp, projection: &str) -> std::process::Output {
    let redis = app.redis.clone().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["projections", "retry", projection])
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_PREFIX", &redis.prefix)
        .output()
        .unwrap()
}

/// A fault of the read side that only a summary balance of `cents` trips
/// (a trigger `test_fault` on the summary's table).
async fn inject_fault_at(app: &TestApp, cents: i64) {
    let sql = format!(
        "CREATE OR REPLACE FUNCTION test_fault() RETURNS trigger AS $$ BEGIN \
           IF NEW.balance_cents = {cents} THEN RAISE EXCEPTION 'injected fault'; END IF; \
           RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER test_fault BEFORE INSERT OR UPDATE ON bank_account_summary_view \
           FOR EACH ROW EXECUTE FUNCTION test_fault();"
    );
    app.db.execute_unprepared(&sql).await.unwrap();
}

/// The operator's fix: the fault is gone.
pub(crate) async fn remove_fault(app: &TestApp) {
    let sql = "DROP TRIGGER test_fault ON bank_account_summary_view";
    app.db.execute_unprepared(sql).await.unwrap();
}

/// An account whose second event trips a fault of the read side (a
/// trigger that refuses the balance 12.34), and a third event behind it;
/// returns once both are parked, with the account and the third's position.
pub(crate) async fn park_a_stream() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let (id, position) = open_account(&app, "Ada", "10", "0").await;
    account_at(&app, &id, &position).await;
    inject_fault_at(&app, 1234).await;
    deposit(&app, &id, "2.34").await; // v2: parked
    let later = deposit(&app, &id, "1.00").await; // v3: must wait behind v2
    let parked = eventually(Duration::from_secs(20), || async {
        dead_letters(&app, SUMMARY).await.len() == 2
    })
    .await;
    assert!(
        parked,
        "both events of the stream are parked: {:?}",
        dead_letters(&app, SUMMARY).await
    );
    (app, id, later)
}

#[tokio::test]
async fn a_parked_event_holds_back_its_stream_and_a_retry_applies_both_in_order() {
    let (app, id, later) = park_a_stream().await;
    let letters = dead_letters(&app, SUMMARY).await;
    assert_eq!(letters[0]["errorKind"], "DATABASE", "{letters:?}");
    assert_eq!(letters[1]["errorKind"], "WAITING", "{letters:?}");
    assert_eq!(letters[1]["attempts"], 0, "the later event was never applied: {letters:?}");
    // The row still shows v1, never v3 without v2; other streams go on.
    let (other, other_position) = open_account(&app, "Grace", "5", "0").await;
    assert_eq!(account_at(&app, &other, &other_position).await["balance"], "5.00");
    let row = app.gql(ACCOUNT, json!({ "id": id, "p": later })).await.ok();
    assert_eq!(row["account"]["version"], 1, "{row}");
    assert_eq!(row["account"]["balance"], "10.00");

    // The operator fixes the cause and retries: both apply, in order.
    remove_fault(&app).await;
    let output = retry_cli(&app, SUMMARY);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("2 parked event(s) applied, 0 still failing, 0 waiting"),
        "the retry reports what it applied: {stdout}"
    );
    let row = app.gql(ACCOUNT, json!({ "id": id })).await.ok();
    assert_eq!(row["account"]["balance"], "13.34");
    assert_eq!(row["account"]["version"], 3);
    assert!(dead_letters(&app, SUMMARY).await.is_empty());
    assert_converged(&app).await;
    app.stop().await;
}

/// Whether the summary's checkpoint of the partition that carries account
/// `id` is marked as having parked events.
async fn summary_marked(app: &TestApp, id: &str) -> bool {
    let partitions = app.redis.as_ref().unwrap().partitions;
    let partition = partition_of(id.parse().unwrap(), partitions);
    let key = format!("{SUMMARY}#{partition}");
    let sql = format!("SELECT parked::int::int8 FROM projection_checkpoints WHERE name = '{key}'");
    app.scalar_i64(&sql).await == 1
}

/// A projector looks for parked streams only while its checkpoint is
/// marked: the parking marks it, and once a retry has emptied the dead
/// letters the next batch clears it (so the common batch looks up nothing).
#[tokio::test]
async fn a_checkpoint_is_marked_while_its_projection_has_parked_events_and_cleared_after() {
    let (app, id, _) = park_a_stream().await;
    assert!(summary_marked(&app, &id).await, "parking marks the stream's checkpoint");
    remove_fault(&app).await;
    let output = retry_cli(&app, SUMMARY);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dead_letters(&app, SUMMARY).await.is_empty());
    let position = deposit(&app, &id, "1.00").await;
    assert_eq!(account_at(&app, &id, &position).await["version"], 4);
    assert!(!summary_marked(&app, &id).await, "a batch with nothing parked clears the mark");
    // Cleared, it is set again by the next parking, and the stream's
    // order holds: a new fault (at 20.00) parks, the deposit after waits.
    inject_fault_at(&app, 2000).await;
    deposit(&app, &id, "5.66").await; // 14.34 + 5.66 = 20.00: parked
    deposit(&app, &id, "1.00").await; // waits behind it
    let parked = eventually(Duration::from_secs(20), || async {
        dead_letters(&app, SUMMARY).await.len() == 2
    })
    .await;
    let letters = dead_letters(&app, SUMMARY).await;
    assert!(parked, "{letters:?}");
    assert_eq!(letters[1]["errorKind"], "WAITING", "{letters:?}");
    assert!(summary_marked(&app, &id).await);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_that_fails_again_keeps_the_stream_parked_and_says_so() {
    let (app, id, _) = park_a_stream().await;
    // Not fixed: the retry fails again and touches nothing.
    let output = retry_cli(&app, SUMMARY);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a retry with failures exits non-zero");
    assert!(stdout.contains("0 parked event(s) applied, 1 still failing, 1 waiting"), "{stdout}");
    let letters = dead_letters(&app, SUMMARY).await;
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["attempts"], 6, "one more attempt is recorded: {letters:?}");
    let row = app.gql(ACCOUNT, json!({ "id": id })).await.ok();
    assert_eq!(row["account"]["version"], 1);
    app.stop().await;
}

/// A read database URL whose sessions give up on a lock after 200 ms.
fn with_lock_timeout(url: &str) -> String {
    format!("{url}?options=-c%20lock_timeout%3D200ms")
}

#[tokio::test]
async fn a_read_table_locked_for_seconds_is_waited_out_not_parked() {
    // The lock timeout on the read side only (the same database, through
    // its own pool): the appends of the test's load must not time out on
    // locks of their own (the commit-order lock, the cluster-wide lock
    // PostgreSQL takes to commit a NOTIFY) when the machine is busy.
    let app =
        spawn_app_with(|c| c.read_database_url = Some(with_lock_timeout(&c.database_url))).await;
    let ids = accounts(&app, 4).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(20).await;
    // Every projector statement on the summary fails with lock_not_available
    // (55P03) while the test holds the table.
    let txn = app.db.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE bank_account_summary_view IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let failing =
        eventually(Duration::from_secs(10), || async {
            let data = app.gql("{ projections { name status lastError } }", json!({})).await.ok();
            data["projections"].as_array().unwrap().iter().any(|p| {
                p["name"] == SUMMARY && p["status"] == "FAILING" && p["lastError"].is_string()
            })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    txn.commit().await.unwrap();
    assert!(failing, "the projection reports FAILING while the table is locked");
    let done = load.stop().await;
    assert!(done > 20);
    assert_converged(&app).await;
    assert_eq!(all_dead_letters(&app).await, 0, "a transient failure parks nothing");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let retried = metrics
        .lines()
        .find(|l| l.starts_with("eventfold_projection_transient_failures_total{projection=\"bank_account_summary\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retried.is_some_and(|n| n > 0), "retries are counted: {metrics}");
    app.stop().await;
}

#[tokio::test]
async fn read_connections_terminated_under_load_park_nothing_and_converge() {
    let app = spawn_app().await;
    let ids = accounts(&app, 4).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(20).await;
    // For two seconds, every other session of the database is cut off.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        app.db
            .execute_unprepared(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.stop().await;
    assert_converged(&app).await;
    assert_eq!(all_dead_letters(&app).await, 0, "lost connections park nothing");
    app.stop().await;
}

#[tokio::test]
async fn a_worker_whose_partition_was_taken_over_commits_nothing() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    deposit(&app, &id, "1").await;
    let store =
        SeaEventStore::new(eventfold::infra::db::connect(&app.database_url, 2).await.unwrap());
    // Both mutations answered after their commits: readable at once.
    let visible = store.read_committed(Position::START, 100).await.unwrap().len() == 2;
    assert!(visible, "both events are readable");
    let events = store.read_committed(Position::START, 100).await.unwrap();
    let applier = Applier {
        read_db: app.db.clone(),
        projection: Arc::new(AccountSummaryProjection {
            upcasters: Arc::new(eventfold::domain::upcasters()),
        }),
        changes: Arc::new(LocalChangeBus::new(8)),
        monitor: Arc::new(ProjectionMonitor::default()),
        settings: RuntimeSettings::default(),
    };
    let key = "bank_account_summary#0";
    let stale = fence(&app.db, SUMMARY, key).await.unwrap();
    let current = fence(&app.db, SUMMARY, key).await.unwrap();
    assert!(current.epoch > stale.epoch);

    let refused = applier.apply(&stale, &events, None).await;
    assert!(matches!(refused, Err(ApplyError::Fenced(_))), "{refused:?}");
    let rows = app.scalar_i64("SELECT count(*) FROM bank_account_summary_view").await;
    assert_eq!(rows, 0, "the fenced worker wrote nothing");
    assert_eq!(load_checkpoint(&app.db, key).await.unwrap(), Position::START);

    let reached = applier.apply(&current, &events, None).await.unwrap();
    assert_eq!(reached, events[1].position);
    let balance = app.scalar_i64("SELECT balance_cents FROM bank_account_summary_view").await;
    assert_eq!(balance, 1100);
    // A checkpoint never moves back, whatever a caller claims.
    applier.apply(&current, &[], Some(events[0].position)).await.unwrap();
    assert_eq!(load_checkpoint(&app.db, key).await.unwrap(), events[1].position);
    // The stale worker stays refused, with or without events.
    let refused = applier.apply(&stale, &[], Some(events[1].position)).await;
    assert!(matches!(refused, Err(ApplyError::Fenced(_))));
    app.stop().await;
}

#[tokio::test]
async fn a_projector_frozen_past_its_lease_and_resumed_leaves_every_table_equal_to_the_log() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let redis = app.redis.clone().unwrap();
    let _relay = Server::start(&app.database_url, &redis, "relay");
    let frozen = Server::start(&app.database_url, &redis, "projector");
    let _other = Server::start(&app.database_url, &redis, "projector");
    let ids = accounts(&app, 8).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(30).await;
    // Three times: frozen mid-work for twice the lease TTL (1.5 s), so the
    // other worker takes its partitions over, then resumed with whatever
    // batch it was holding.
    for _ in 0..3 {
        frozen.signal("-STOP");
        tokio::time::sleep(Duration::from_secs(3)).await;
        frozen.signal("-CONT");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let done = load.stop().await;
    assert!(done > 30);
    assert_converged(&app).await;
    assert_eq!(all_dead_letters(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn forged_watermarks_and_garbled_entries_move_no_checkpoint_past_the_relay() {
    let app = spawn_app().await;
    let redis = app.redis.clone().unwrap();
    let (id, position) = open_account(&app, "Ada", "10", "0").await;
    account_at(&app, &id, &position).await;
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // A deposit the relay never published, far ahead of the log.
    let forged_event = json!({
        "position": "999999999.999999999", "event_id": uuid::Uuid::now_v7(),
        "stream": { "stream_type": "BankAccount", "stream_id": id },
        "version": 2, "event_type": "MoneyDeposited", "schema_version": 1,
        "payload": { "amount": "1000.00" }, "metadata": {}, "recorded_at": chrono::Utc::now(),
    });
    for partition in 0..redis.partitions {
        let stream = redis.stream_key(partition);
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("w")
            .arg("999999999.999999999")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("e")
            .arg("{not json")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("e")
            .arg(forged_event.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Long enough for watermarks to reach the database checkpoints (every 5 s).
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < until {
        deposit(&app, &id, "1").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Each comparison reads the relay's checkpoint after the other side:
    // the relay may still be publishing the last deposits.
    let ahead = app
        .scalar_i64(
            "SELECT count(*) FROM projection_checkpoints c, projection_checkpoints r \
             WHERE r.name = '__relay' AND c.name <> '__relay' AND c.position > r.position",
        )
        .await;
    assert_eq!(ahead, 0, "no checkpoint passes the relay's");
    let data = app.gql("{ projections { name position } }", json!({})).await.ok();
    let relay =
        app.scalar_i64("SELECT position FROM projection_checkpoints WHERE name = '__relay'").await;
    for p in data["projections"].as_array().unwrap() {
        let reported: Position = p["position"].as_str().unwrap().parse().unwrap();
        assert!(reported.pos <= relay, "{p} is past the relay's checkpoint {relay}");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "eventfold_projection_rejected_entries_total{projection=\"bank_account_summary\"}"
        ) && !l.ends_with(" 0")),
        "ignored entries are counted: {metrics}"
    );
    // The forged deposit was not applied, and nothing real was skipped.
    assert_converged(&app).await;
    app.stop().await;
}
