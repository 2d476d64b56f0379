//! The relay's read is an index range scan, not a walk of the whole
//! commit-order index: its position predicate must be an index condition in
//! the plan PostgreSQL caches for it (a generic plan), on an empty table and
//! on a filled, analysed one.

use eventfold::app::Role;
use eventfold::es::envelope::Position;
use eventfold::infra::event_store::read_committed_query;
use sea_orm::sea_query::Value;
use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, TransactionTrait};
use serde_json::Value as Json;

use crate::helpers::*;

/// `EXPLAIN`s the relay's own statement as a generic prepared plan and
/// returns every plan node.
async fn generic_plan_nodes(app: &TestApp, after: Position) -> Vec<Json> {
    let statement = read_committed_query(after, 500).build(DbBackend::Postgres);
    let args: Vec<String> = statement
        .values
        .iter()
        .flat_map(|v| v.0.iter())
        .map(|v| match v {
            Value::BigInt(Some(n)) => n.to_string(),
            Value::BigUnsigned(Some(n)) => n.to_string(),
            Value::Int(Some(n)) => n.to_string(),
            Value::Unsigned(Some(n)) => n.to_string(),
            other => panic!("unexpected parameter {other:?}"),
        })
        .collect();
    assert!(statement.sql.contains("$1"), "the statement is parameterised: {}", statement.sql);
    // One transaction = one connection for PREPARE, EXPLAIN and DEALLOCATE.
    let txn = app.db.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan").await.unwrap();
    txn.execute_unprepared(&format!("PREPARE relay_read AS {}", statement.sql)).await.unwrap();
    let row = txn
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN (FORMAT JSON) EXECUTE relay_read({})", args.join(", ")),
        ))
        .await
        .unwrap()
        .expect("a plan");
    let plan: Json = row.try_get_by_index(0).unwrap();
    txn.execute_unprepared("DEALLOCATE relay_read").await.unwrap();
    txn.commit().await.unwrap();
    let mut nodes = Vec::new();
    collect(&plan[0]["Plan"], &mut nodes);
    assert!(!nodes.is_empty(), "no plan in {plan}");
    nodes
}

fn collect(node: &Json, out: &mut Vec<Json>) {
    out.push(node.clone());
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect(child, out);
    }
}

fn assert_index_condition(nodes: &[Json], when: &str) {
    let summary: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{} idx={} cond={} filter={}",
                n["Node Type"], n["Index Name"], n["Index Cond"], n["Filter"]
            )
        })
        .collect();
    // The generic plan keeps the parameters: the range starts at ($1, $2).
    let by_index = nodes.iter().any(|n| {
        n["Index Name"] == "events_commit_order_idx"
            && n["Index Cond"].as_str().is_some_and(|c| {
                c.contains("tx_id")
                    && c.contains("position")
                    && c.contains("$1")
                    && c.contains("$2")
            })
    });
    assert!(by_index, "{when}: the position predicate is no index condition: {summary:#?}");
    let filtered = nodes
        .iter()
        .any(|n| n["Filter"].as_str().is_some_and(|f| f.contains("position") || f.contains("$2")));
    assert!(!filtered, "{when}: the position predicate is applied as a filter: {summary:#?}");
}

#[tokio::test]
async fn the_relays_read_is_an_index_condition_on_a_fresh_and_on_a_filled_table() {
    let app = spawn_app_with(|c| c.role = Role::Api).await;

    let fresh = generic_plan_nodes(&app, Position { tx: 1, pos: 1 }).await;
    assert_index_condition(&fresh, "fresh table");

    // 5,000 events over 50 transactions, then statistics.
    for _ in 0..50 {
        app.db
            .execute_unprepared(
                "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, \
                 schema_version, payload, metadata, recorded_at) \
                 SELECT gen_random_uuid(), 'Test', gen_random_uuid(), 1, 'Filled', 1, '{}', '{}', \
                 now() FROM generate_series(1, 100)",
            )
            .await
            .unwrap();
    }
    app.db.execute_unprepared("ANALYZE events").await.unwrap();
    let tx = app
        .scalar_i64("SELECT tx_id FROM events ORDER BY tx_id, position OFFSET 2500 LIMIT 1")
        .await;
    let pos = app
        .scalar_i64("SELECT position FROM events ORDER BY tx_id, position OFFSET 2500 LIMIT 1")
        .await;
    let filled = generic_plan_nodes(&app, Position { tx, pos }).await;
    assert_index_condition(&filled, "filled table");
    app.stop().await;
}
