//! Rebuilds are exclusive per projection: a second `projections rebuild` of
//! the same projection is refused while one runs, and a rebuild of another
//! projection runs beside it.

use std::process::Output;
use std::time::Duration;

use eventfold::infra::projection_runtime::checkpoint::projection_lock_id;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::json;

use crate::convergence::assert_converged;
use crate::helpers::*;
use crate::rebuild::rebuild_command;

/// Copies of each account's first deposit, so a rebuild has work to do.
const DEPOSITS_PER_ACCOUNT: i64 = 1_000;

async fn finished(child: tokio::task::JoinHandle<std::io::Result<Output>>) -> Output {
    tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the rebuild ends within 2 minutes")
        .expect("the rebuild task ran")
        .expect("the rebuild process ran")
}

#[tokio::test]
async fn a_second_rebuild_of_a_projection_is_refused_while_another_projection_rebuilds_beside_it() {
    let app = spawn_app().await;
    for i in 0..10 {
        let (id, _) = open_account(&app, &format!("owner {i}"), "100", "0").await;
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
    }
    // Thousands of events in one statement: copies of the deposits, each
    // with the next version of its stream.
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, schema_version, payload, metadata, recorded_at) \
             SELECT gen_random_uuid(), e.stream_type, e.stream_id, e.version + g, e.event_type, e.schema_version, e.payload, e.metadata, now() \
             FROM events e, generate_series(1, {DEPOSITS_PER_ACCOUNT}) g WHERE e.event_type = 'MoneyDeposited'"
        ))
        .await
        .unwrap();
    assert_converged(&app).await;

    // Hold the summary's apply lock shared (as a live applier does), so
    // whichever rebuild wins waits at its swap until this test lets go:
    // the two rebuilds overlap however fast the machine is.
    let gate = app.db.begin().await.unwrap();
    gate.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock_shared($1)",
        [projection_lock_id("bank_account_summary").into()],
    ))
    .await
    .unwrap();
    let start = |name: &str| tokio::spawn(rebuild_command(&app, name).output());
    let mut summaries = [start("bank_account_summary"), start("bank_account_summary")];
    let history = start("account_balance_history");

    let (first, index, _) = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::select_all(summaries.iter_mut()),
    )
    .await
    .expect("one of the two rebuilds ends while the other waits");
    let refused = first.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the second rebuild must be refused: {stderr}");
    assert!(
        stderr.contains("a rebuild of projection bank_account_summary is already running"),
        "a clear message: {stderr}"
    );
    for raw in ["duplicate key", "pg_", "SQLSTATE", "relation"] {
        assert!(!stderr.contains(raw), "no raw SQL error ({raw}): {stderr}");
    }

    let history = finished(history).await;
    assert!(
        history.status.success(),
        "another projection rebuilds meanwhile: {}",
        String::from_utf8_lossy(&history.stderr)
    );

    gate.commit().await.unwrap();
    let [a, b] = summaries;
    let winner = finished(if index == 0 { b } else { a }).await;
    assert!(winner.status.success(), "{}", String::from_utf8_lossy(&winner.stderr));
    assert!(String::from_utf8_lossy(&winner.stdout).contains("rebuilt bank_account_summary"));
    assert_converged(&app).await;

    // The lock went with the winner: a rebuild now runs.
    let again = rebuild_command(&app, "bank_account_summary").output().await.unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    app.stop().await;
}
