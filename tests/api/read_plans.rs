//! Read-model lookups on the projectors' hot path stay index steps as the
//! tables grow: checked in the plans PostgreSQL runs, on filled, analysed
//! tables.

use eventfold::read_models::balance_history::latest_rows;
use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::helpers::*;

fn collect(node: &Json, out: &mut Vec<Json>) {
    out.push(node.clone());
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect(child, out);
    }
}

/// The balance history projector reads each account's latest row before
/// folding a batch. However long an account's history, that read must take
/// a step or two down the primary key's index per account, not read every
/// version (a grouped MAX did: each batch got slower as history grew).
#[tokio::test]
async fn the_latest_balance_lookup_reads_a_row_or_two_per_account_however_long_its_history() {
    let app = spawn_app_in_process().await;
    let (a, b, absent) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let versions = 3000;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO account_balance_history (account_id, version, balance_cents, recorded_at) \
             SELECT id, v, v * 100, now() FROM (VALUES ('{a}'::uuid), ('{b}'::uuid)) AS ids(id), \
             generate_series(1, {versions}) AS v; ANALYZE account_balance_history"
        ))
        .await
        .unwrap();
    let ids = [a, b, absent];

    // The rows it finds: each present account's highest version, nothing
    // for an account with no history.
    let mut found: Vec<(Uuid, i64, i64)> = latest_rows(&ids)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.account_id, r.version, r.balance_cents))
        .collect();
    found.sort();
    let mut expected = vec![(a, versions, versions * 100), (b, versions, versions * 100)];
    expected.sort();
    assert_eq!(found, expected);

    // What it reads to find them.
    let statement = latest_rows(&ids).build(DbBackend::Postgres);
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", statement.sql),
            statement.values.expect("a parameterised statement"),
        ))
        .await
        .unwrap()
        .expect("a plan");
    let plan: Json = row.try_get_by_index(0).unwrap();
    let mut nodes = Vec::new();
    collect(&plan[0]["Plan"], &mut nodes);
    let on_history = |n: &&Json| {
        n["Relation Name"] == "account_balance_history"
            || n["Index Name"].as_str().is_some_and(|i| i.starts_with("account_balance_history"))
    };
    let read: f64 = nodes
        .iter()
        .filter(on_history)
        .map(|n| {
            n["Actual Rows"].as_f64().unwrap_or(0.0) * n["Actual Loops"].as_f64().unwrap_or(1.0)
        })
        .sum();
    assert!(nodes.iter().any(|n| on_history(&n)), "the plan reads account_balance_history: {plan}");
    assert!(
        read <= 5.0 * ids.len() as f64,
        "{read} rows read for {} accounts of {versions} versions each: {plan}",
        ids.len()
    );
    app.stop().await;
}

/// The plan PostgreSQL runs for `sql` with `json` as `$1`, in a
/// transaction rolled back after, as the list of its nodes.
async fn plan_nodes(app: &TestApp, sql: &str, json: Json) -> Vec<Json> {
    use sea_orm::TransactionTrait;
    let txn = app.db.begin().await.unwrap();
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"),
            [json.into()],
        ))
        .await
        .unwrap()
        .expect("a plan");
    txn.rollback().await.unwrap();
    let plan: Json = row.try_get_by_index(0).unwrap();
    let mut nodes = Vec::new();
    collect(&plan[0]["Plan"], &mut nodes);
    nodes
}

/// The bank read models' one-statement folds find their rows by key, on
/// tables of thousands of accounts: no table is read whole, and the
/// statements do what they say (one row updated, one inserted).
#[tokio::test]
async fn the_one_statement_bank_folds_find_their_rows_by_key_on_large_tables() {
    use eventfold::read_models::account_summary::ADD_INCREMENTS_PG;
    use eventfold::read_models::balance_history::INSERT_RUNS_PG;
    let app = spawn_app_in_process().await;
    app.db
        .execute_unprepared(
            "INSERT INTO bank_account_summary_view SELECT md5(i::text)::uuid, 'x', 100, 0, 100, 0, \
               now(), now(), 10, i, NULL FROM generate_series(1, 5000) AS i; \
             INSERT INTO account_balance_history SELECT md5(i::text)::uuid, v, 100, now() \
               FROM generate_series(1, 5000) AS i, generate_series(1, 10) AS v; \
             ANALYZE bank_account_summary_view, account_balance_history",
        )
        .await
        .unwrap();
    let id = "c4ca4238-a0b9-2382-0dcc-509a6f75849b"; // md5('1')
    let (min, max) = (i64::MIN, i64::MAX);
    let increment = serde_json::json!([{
        "id": id, "base": 10, "version": 11, "position": 9, "at": "2026-12-01T00:00:00Z",
        "balance": 5, "balance_from": min, "balance_to": max - 5,
        "deposits": 5, "deposits_from": min, "deposits_to": max - 5,
        "withdrawals": 0, "withdrawals_from": min, "withdrawals_to": max,
    }]);
    let run = serde_json::json!([{
        "id": id, "base": 10, "version": 11, "total": 5, "at": "2026-12-01T00:00:00Z",
        "balance_from": min, "balance_to": max - 5,
    }]);
    for (sql, json, table) in [
        (ADD_INCREMENTS_PG, increment, "bank_account_summary_view"),
        (INSERT_RUNS_PG, run, "account_balance_history"),
    ] {
        let nodes = plan_nodes(&app, sql, json).await;
        let scans: Vec<&Json> = nodes.iter().filter(|n| n["Relation Name"] == table).collect();
        assert!(!scans.is_empty(), "the plan reads {table}: {nodes:#?}");
        assert!(
            scans.iter().all(|n| n["Node Type"] != "Seq Scan"),
            "{table} read whole: {nodes:#?}"
        );
        let top = &nodes[0];
        let written = top["Actual Rows"].as_f64().unwrap_or(0.0);
        let (updated, inserted) = (top["Operation"] == "Update", top["Operation"] == "Insert");
        assert!(updated || inserted, "{top}");
        // The top node's own rows are the ones RETURNING gave back.
        assert_eq!(written, 1.0, "one row written in {table}: {nodes:#?}");
    }
    app.stop().await;
}
