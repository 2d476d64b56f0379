//! `projections rebuild NAME`: replay into fresh tables, swap them in, while
//! queries keep answering and writes keep flowing.

use std::time::Duration;

use futures::future::join_all;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::convergence::assert_converged;
use crate::helpers::*;

pub(crate) fn rebuild_command(app: &TestApp, name: &str) -> tokio::process::Command {
    let redis = app.redis.clone().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventfold"));
    command
        .args(["projections", "rebuild", name])
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_PREFIX", &redis.prefix)
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_rebuild_replaces_the_tables_with_a_replay_while_queries_answer() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(open_account(&app, &format!("owner {i}"), "100", "0").await.0);
    }
    join_all((0..200).map(|i| {
        let (app, id) = (&app, ids[i % ids.len()].clone());
        async move {
            app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok()
        }
    }))
    .await;
    assert_converged(&app).await;
    // Damage the live tables: only a real rebuild from the store repairs them.
    app.db
        .execute_unprepared("UPDATE bank_account_summary_view SET balance_cents = 1")
        .await
        .unwrap();
    app.db
        .execute_unprepared("DELETE FROM account_balance_history WHERE version > 5")
        .await
        .unwrap();

    for name in ["bank_account_summary", "account_balance_history", "audit_log"] {
        let child = rebuild_command(&app, name).output();
        tokio::pin!(child);
        // While it runs, reads answer and writes flow.
        let mut served = 0;
        let output = loop {
            tokio::select! {
                out = &mut child => break out.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    let id = &ids[served % ids.len()];
                    app.gql(ACCOUNT, json!({ "id": id })).await.ok();
                    app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
                    served += 1;
                }
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(stdout.contains(&format!("rebuilt {name}")), "{stdout}");
        assert!(stderr.contains("events/s"), "a progress bar is shown: {stderr}");
    }
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn rebuilding_an_unknown_projection_fails_clearly() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let output = rebuild_command(&app, "nope").output().await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no projection named"));
    app.stop().await;
}

#[tokio::test]
async fn projections_status_prints_every_projection_with_its_lag() {
    let app = spawn_app().await;
    let (id, position) = open_account(&app, "Ada", "1", "0").await;
    account_at(&app, &id, &position).await;
    let redis = app.redis.clone().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["projections", "status"])
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_PREFIX", &redis.prefix)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().find(|l| l.starts_with("bank_account_summary")).expect("listed");
    assert!(summary.ends_with(" 0"), "caught up, lag 0: {summary:?}");
    for name in ["audit_log", "orders_with_details", "shipping_process"] {
        assert!(stdout.contains(name), "{name} listed: {stdout}");
    }
    app.stop().await;
}

#[tokio::test]
async fn on_the_embedded_default_a_rebuild_replays_in_place() {
    let app = spawn_embedded().await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    let res = app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "5" } })).await.ok();
    account_at(&app, &id, res["depositMoney"]["position"].as_str().unwrap()).await;
    app.db
        .execute_unprepared("UPDATE bank_account_summary_view SET balance_cents = 1")
        .await
        .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["projections", "rebuild", "bank_account_summary"])
        .env("DATABASE_URL", &app.database_url)
        .env_remove("REDIS_URL")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("rebuilt bank_account_summary: 2 events")
    );
    let account = app.gql(ACCOUNT, json!({ "id": id })).await.ok();
    assert_eq!(account["account"]["balance"], "15.00");
    app.stop().await;
}

#[tokio::test]
async fn rebuilding_each_shop_projection_gives_back_exactly_its_live_tables() {
    let app = spawn_app().await;
    let (_, _, order, position) = crate::shop_helpers::confirmed_order(&app).await;
    crate::shop_helpers::order_at(&app, &order, &position).await;
    let (customer, _) =
        crate::shop_helpers::register_customer(&app, "Grace Hopper", "grace@example.com").await;
    let (product, _) = crate::shop_helpers::stocked_product(&app, "Gadget", "5.00", 3).await;
    let data = crate::shop_helpers::create_order(&app, &customer, &[(&product, 1)]).await.ok();
    let (_, placed) = crate::shop_helpers::payload(&data, "createOrder");
    crate::shop_helpers::product_at(&app, &product, &placed).await;
    assert_converged(&app).await;
    let projections: [(&str, &[&str]); 3] = [
        ("customers", &["customers_view"]),
        ("product_stock", &["product_stock_view"]),
        ("orders_with_details", &["orders_with_details_view", "order_view_customers"]),
    ];
    // Each table as one JSON text, rows in a fixed order; `updated_at` is
    // when a row was last written, which a rebuild changes by design.
    let contents = |table: &'static str| {
        let app = &app;
        async move {
            let sql = format!(
                "SELECT COALESCE(jsonb_agg(r ORDER BY r::text), '[]')::text \
                 FROM (SELECT to_jsonb(t) - 'updated_at' AS r FROM {table} t) rows"
            );
            let row = app
                .db
                .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<String>(0).unwrap()
        }
    };
    for (name, tables) in projections {
        let mut live = Vec::new();
        for table in tables {
            live.push(contents(table).await);
        }
        assert!(live.iter().all(|t| t != "[]"), "{name} has rows to rebuild: {live:?}");
        let output = rebuild_command(&app, name).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        for (table, before) in tables.iter().zip(&live) {
            assert_eq!(&contents(table).await, before, "{name}: {table} rebuilt as it was");
        }
    }
    app.stop().await;
}
