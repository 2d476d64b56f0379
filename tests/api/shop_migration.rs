//! Every migration rolls back and forward cleanly.

use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;

use crate::helpers::*;

async fn table_exists(db: &sea_orm::DatabaseConnection, table: &str) -> bool {
    let sql = format!("SELECT to_regclass('public.{table}') IS NOT NULL");
    let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql));
    row.await.unwrap().unwrap().try_get_by_index::<bool>(0).unwrap()
}

#[tokio::test]
async fn every_migration_has_a_working_down() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let db = eventfold::infra::db::connect(&app.database_url, 2).await.unwrap();
    let tables = [
        "orders_with_details_view",
        "product_stock_view",
        "customers_view",
        "order_view_customers",
    ];
    for table in tables {
        assert!(table_exists(&db, table).await, "{table} after up");
    }
    let commit_order_triggers = "SELECT count(*) FROM pg_trigger \
        WHERE tgrelid = 'events'::regclass AND tgname = 'events_commit_order'";
    assert_eq!(app.scalar_i64(commit_order_triggers).await, 1, "commit-order lock after up");
    assert!(table_exists(&db, "deployment_settings").await, "deployment_settings after up");
    let parked_column = "SELECT count(*) FROM information_schema.columns \
        WHERE table_name = 'projection_checkpoints' AND column_name = 'parked'";
    assert_eq!(app.scalar_i64(parked_column).await, 1, "checkpoints' parked mark after up");
    let expect_function = "SELECT count(*) FROM pg_proc WHERE proname = 'eventfold_expect'";
    assert_eq!(app.scalar_i64(expect_function).await, 1, "eventfold_expect after up");
    // The ten newest: the one-statement commits' refusal, the checkpoints'
    // parked mark, the recorded partition count, the events' commit-order
    // lock, the audit log's correlation column, dead-letter kinds, account
    // owners, checkpoint fencing, the insert notification, then the shop
    // views.
    Migrator::down(&db, Some(10)).await.unwrap();
    assert_eq!(app.scalar_i64(expect_function).await, 0, "eventfold_expect after down");
    assert_eq!(app.scalar_i64(parked_column).await, 0, "checkpoints' parked mark after down");
    for table in tables.iter().chain(&["deployment_settings"]) {
        assert!(!table_exists(&db, table).await, "{table} after down");
    }
    assert_eq!(app.scalar_i64(commit_order_triggers).await, 0, "commit-order lock after down");
    assert!(table_exists(&db, "bank_account_summary_view").await, "earlier migrations stay");
    Migrator::reset(&db).await.unwrap();
    for table in ["events", "snapshots", "command_log", "projection_checkpoints", "audit_log"] {
        assert!(!table_exists(&db, table).await, "{table} after reset");
    }
    Migrator::up(&db, None).await.unwrap();
    for table in tables.iter().chain(&["events", "bank_account_summary_view"]) {
        assert!(table_exists(&db, table).await, "{table} after up again");
    }
    app.stop().await;
}

#[tokio::test]
async fn processes_started_together_on_a_fresh_database_migrate_one_at_a_time() {
    let (admin, name) = fresh_postgres().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_eventfold"))
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .output()
        })
        .collect();
    for output in futures::future::join_all(runs).await {
        let output = output.unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let db = eventfold::infra::db::connect(&url, 2).await.unwrap();
    assert!(table_exists(&db, "events").await);
    assert!(table_exists(&db, "orders_with_details_view").await);
    db.close().await.ok();
    let admin_db = sea_orm::Database::connect(&admin).await.unwrap();
    admin_db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
}
