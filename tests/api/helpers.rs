//! `spawn_app`: a real server on port 0 over a fresh PostgreSQL database
//! (or a fresh SQLite file), and a typed GraphQL client for it.

use std::sync::Arc;
use std::time::Duration;

use eventfold::app::{self, Config, RunningApp};
use eventfold::infra::redis::RedisSettings;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use uuid::Uuid;

/// The PostgreSQL server tests create their databases on.
pub(crate) fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("TEST_DATABASE_URL has a database name");
    format!("{base}/{name}")
}

/// The Redis server tests use, each with its own key prefix.
pub(crate) fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Transport settings with a key prefix no other test uses.
pub(crate) fn fresh_redis() -> RedisSettings {
    RedisSettings {
        url: redis_url(),
        prefix: format!("eftest-{}", Uuid::new_v4().simple()),
        partitions: 4,
        ca_file: None,
    }
}

pub(crate) enum Store {
    Postgres { admin: String, name: String },
    Sqlite { path: std::path::PathBuf },
}

pub(crate) struct TestApp {
    pub(crate) addr: std::net::SocketAddr,
    /// Where `/metrics` is served without authentication, if configured.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    pub(crate) client: reqwest::Client,
    /// Direct connection for assertions on the stored events.
    pub(crate) db: DatabaseConnection,
    pub(crate) database_url: String,
    pub(crate) redis: Option<RedisSettings>,
    /// Bearer token sent with [`TestApp::gql`] (when auth is on).
    pub(crate) token: Option<String>,
    running: Option<RunningApp>,
    store: Store,
}

/// A GraphQL response split into its parts.
#[derive(Debug)]
pub(crate) struct Gql {
    pub(crate) data: Value,
    pub(crate) errors: Vec<Value>,
}

impl Gql {
    /// The `extensions.code` of the first error, if any.
    pub(crate) fn code(&self) -> Option<&str> {
        self.errors.first()?.pointer("/extensions/code")?.as_str()
    }

    #[track_caller]
    pub(crate) fn ok(self) -> Value {
        assert!(self.errors.is_empty(), "unexpected errors: {:#?}", self.errors);
        self.data
    }
}

/// Creates a fresh database on the test PostgreSQL server.
pub(crate) async fn fresh_postgres() -> (String, String) {
    let admin = admin_url();
    let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {admin} ({e}); scripts/test starts it")
    });
    let name = format!("ef_test_{}", Uuid::new_v4().simple());
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    conn.close().await.ok();
    (admin, name)
}

/// The production setup: PostgreSQL and the Redis Streams transport.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub(crate) async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let redis = fresh_redis();
    require_redis(&redis.url).await;
    let (admin, name) = fresh_postgres().await;
    let url = with_database(&admin, &name);
    spawn(url, Store::Postgres { admin, name }, |c| {
        c.use_redis(redis);
        adjust(c);
    })
    .await
}

/// PostgreSQL with the in-process transport (no `REDIS_URL`).
pub(crate) async fn spawn_app_in_process() -> TestApp {
    let (admin, name) = fresh_postgres().await;
    let url = with_database(&admin, &name);
    spawn(url, Store::Postgres { admin, name }, |_| {}).await
}

/// PostgreSQL with the in-process transport, on a database that is
/// migrated and then changed by `sql` before the server starts.
pub(crate) async fn spawn_in_process_after(sql: &str) -> TestApp {
    let (admin, name) = fresh_postgres().await;
    let url = with_database(&admin, &name);
    let db = eventfold::infra::db::connect(&url, 1).await.expect("test connection");
    eventfold::infra::db::migrate(&db).await.expect("migrated");
    db.execute_unprepared(sql).await.expect("prepared");
    db.close().await.ok();
    spawn(url, Store::Postgres { admin, name }, |_| {}).await
}

/// Fails the test (never skips it) when Redis does not answer.
pub(crate) async fn require_redis(url: &str) {
    let client = redis::Client::open(url).expect("valid Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.unwrap_or_else(|e| {
        panic!("Redis is not reachable at {url} ({e}); scripts/test starts it")
    });
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.expect("PING");
    assert_eq!(pong, "PONG");
}

/// The embedded default: SQLite file, in-process transport.
pub(crate) async fn spawn_embedded() -> TestApp {
    let path = std::env::temp_dir().join(format!("eventfold-test-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    spawn(url, Store::Sqlite { path }, |_| {}).await
}

async fn spawn(url: String, store: Store, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config {
        database_url: url.clone(),
        listen: "127.0.0.1:0".into(),
        pool_size: 16,
        ..Config::embedded()
    };
    adjust(&mut config);
    let redis = config.redis();
    let running = app::start(config).await.expect("app starts");
    let addr = running.addr.expect("api role listens");
    let metrics_addr = running.metrics_addr;
    let db = eventfold::infra::db::connect(&url, 4).await.expect("test connection");
    TestApp {
        addr,
        metrics_addr,
        client: reqwest::Client::new(),
        db,
        database_url: url,
        redis,
        token: None,
        running: Some(running),
        store,
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) async fn gql(&self, query: &str, variables: Value) -> Gql {
        gql_as(self, self.token.as_deref(), query, variables).await.1
    }

    /// `GET /health/ready`: its status and its body (JSON, or the text
    /// when it is not JSON).
    pub(crate) async fn readiness(&self) -> (u16, Value) {
        let response = self
            .client
            .get(self.url("/health/ready"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("readiness answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Number of rows in the events table.
    pub(crate) async fn event_count(&self) -> i64 {
        self.scalar_i64("SELECT COUNT(*) FROM events").await
    }

    pub(crate) async fn scalar_i64(&self, sql: &str) -> i64 {
        scalar_i64(&self.db, sql).await
    }

    /// The rows of `sql` (PostgreSQL), each as the JSON array of its
    /// columns, in order.
    pub(crate) async fn query_json(&self, sql: &str) -> Value {
        // `json` (not `jsonb`) keeps the columns in order.
        let sql = format!(
            "SELECT (SELECT json_agg(c.value) FROM json_each(to_json(r)) AS c)::text FROM ({sql}) AS r"
        );
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
            .await
            .expect("query runs");
        let row = |r: &sea_orm::QueryResult| -> Value {
            let text = r.try_get_by_index::<String>(0).expect("a text");
            serde_json::from_str(&text).expect("a JSON array")
        };
        Value::Array(rows.iter().map(row).collect())
    }

    /// Transactions of this database waiting for the events' commit-order
    /// lock (the two-key advisory lock the events trigger takes).
    pub(crate) async fn commit_order_waiters(&self) -> i64 {
        self.scalar_i64(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = 1702258030 AND objid = 1 AND objsubid = 2 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await
    }

    pub(crate) async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            for (task, result) in running.stop().await {
                assert!(result.is_ok(), "{task} ended with {result:?}");
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(redis) = self.redis.take() {
            drop_redis_keys(redis);
        }
        let store = std::mem::replace(&mut self.store, Store::Sqlite { path: Default::default() });
        match store {
            Store::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Store::Postgres { admin, name } => {
                // Best effort, on a thread of its own: Drop cannot await.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            if let Ok(conn) = Database::connect(&admin).await {
                                let _ = conn
                                    .execute_unprepared(&format!(
                                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                    ))
                                    .await;
                            }
                        });
                    }
                })
                .join();
            }
        }
    }
}

/// Waits for `condition` to hold, polling, for at most `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) const OPEN: &str =
    "mutation($input: OpenAccountInput!) { openAccount(input: $input) { id version position } }";
pub(crate) const DEPOSIT: &str =
    "mutation($input: DepositMoneyInput!) { depositMoney(input: $input) { id version position } }";
pub(crate) const WITHDRAW: &str = "mutation($input: WithdrawMoneyInput!) { withdrawMoney(input: $input) { id version position } }";
pub(crate) const CHECK: &str =
    "mutation($input: WriteCheckInput!) { writeCheck(input: $input) { id version position } }";
pub(crate) const ACCOUNT: &str = "query($id: UUID!, $p: String) { account(id: $id, minPosition: $p) { id owner balance overdraftLimit totalDeposits totalWithdrawals lastTransactionAt version } }";

/// Opens an account and returns (id, position).
pub(crate) async fn open_account(
    app: &TestApp,
    owner: &str,
    deposit: &str,
    overdraft: &str,
) -> (String, String) {
    let data = app
        .gql(OPEN, json!({ "input": { "owner": owner, "initialDeposit": deposit, "overdraftLimit": overdraft } }))
        .await
        .ok();
    let payload = &data["openAccount"];
    (payload["id"].as_str().unwrap().to_owned(), payload["position"].as_str().unwrap().to_owned())
}

/// The account as the read side shows it once it has reached `position`.
pub(crate) async fn account_at(app: &TestApp, id: &str, position: &str) -> Value {
    app.gql(ACCOUNT, json!({ "id": id, "p": position })).await.ok()["account"].clone()
}

/// Deletes every key of a test's prefix (best effort).
fn drop_redis_keys(redis: RedisSettings) {
    let _ = std::thread::spawn(move || {
        let Ok(client) = redis::Client::open(redis.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", redis.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        for key in keys {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(key).query(&mut conn);
        }
    })
    .join();
}

/// A raw event row (bypassing the domain), for tests that hold a
/// transaction open or plant a bad event.
pub(crate) fn raw_event(
    stream_type: &str,
    stream_id: Uuid,
    event_type: &str,
) -> entity::events::ActiveModel {
    use sea_orm::ActiveValue::{NotSet, Set};
    entity::events::ActiveModel {
        position: NotSet,
        tx_id: NotSet,
        event_id: Set(Uuid::now_v7()),
        stream_type: Set(stream_type.into()),
        stream_id: Set(stream_id),
        version: Set(1),
        event_type: Set(event_type.into()),
        schema_version: Set(1),
        payload: Set(json!({})),
        metadata: Set(json!({})),
        recorded_at: Set(chrono::Utc::now()),
    }
}

/// A second, API-only server over the same database and Redis prefix:
/// another process's executor, with its own locks and cache.
pub(crate) async fn api_twin(app: &TestApp) -> (RunningApp, String) {
    let mut config = Config {
        database_url: app.database_url.clone(),
        listen: "127.0.0.1:0".into(),
        role: app::Role::Api,
        ..Config::embedded()
    };
    if let Some(redis) = app.redis.clone() {
        config.use_redis(redis);
    }
    let twin = app::start(config).await.expect("twin starts");
    let url = format!("http://{}/graphql", twin.addr.expect("api role listens"));
    (twin, url)
}

/// A GraphQL request with `bearer` (or none) as its token: the HTTP status
/// and the response.
pub(crate) async fn gql_as(
    app: &TestApp,
    bearer: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Gql) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(30));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON body");
    let gql = Gql {
        data: body.get("data").cloned().unwrap_or(Value::Null),
        errors: body.get("errors").and_then(Value::as_array).cloned().unwrap_or_default(),
    };
    (status, gql)
}

/// A pool of one connection to `url` that records each statement it runs
/// with about how many bytes its parameters take on the wire.
pub(crate) async fn sized_pool(
    url: &str,
) -> (DatabaseConnection, Arc<std::sync::Mutex<Vec<(String, usize)>>>) {
    fn bytes(value: &sea_orm::Value) -> usize {
        use sea_orm::Value;
        match value {
            Value::String(Some(s)) => s.len(),
            Value::Json(Some(j)) => j.to_string().len(),
            Value::Array(_, Some(items)) => items.iter().map(bytes).sum(),
            _ => 16,
        }
    }
    let mut db = eventfold::infra::db::connect(url, 1).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    db.set_metric_callback(move |info| {
        let values = info.statement.values.as_ref().map_or(0, |v| v.0.iter().map(bytes).sum());
        sink.lock().unwrap().push((info.statement.sql.clone(), values));
    });
    (db, seen)
}

/// The one integer that `sql` selects on `db`.
pub(crate) async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> i64 {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(backend, sql.to_owned()))
        .await
        .expect("query runs")
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}
