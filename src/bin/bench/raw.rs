//! The raw limit: one-event INSERT transactions (BEGIN; INSERT; COMMIT)
//! straight into PostgreSQL, into a scratch table shaped like `events`
//! (same columns, defaults, unique key and commit-order index; without the
//! immutability and NOTIFY triggers), by `clients` concurrent connections.

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, postgres::PgPoolOptions};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::report::Latencies;

/// Scratch table; created in the bench's throwaway database only.
const CREATE: &str = "CREATE TABLE bench_raw_events (
    position bigserial PRIMARY KEY,
    tx_id bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id uuid NOT NULL UNIQUE,
    stream_type varchar(100) NOT NULL,
    stream_id uuid NOT NULL,
    version bigint NOT NULL,
    event_type varchar(100) NOT NULL,
    schema_version integer NOT NULL,
    payload json NOT NULL,
    metadata json NOT NULL,
    recorded_at timestamptz NOT NULL,
    UNIQUE (stream_type, stream_id, version));
  CREATE INDEX bench_raw_events_commit_order ON bench_raw_events (tx_id, position)";

const INSERT: &str = "INSERT INTO bench_raw_events (event_id, stream_type, stream_id, version, \
    event_type, schema_version, payload, metadata, recorded_at) \
    VALUES ($1, 'BankAccount', $2, $3, 'MoneyDeposited', 1, $4::json, $5::json, now())";

pub(crate) async fn create_table(database_url: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await?;
    sqlx::raw_sql(CREATE).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Operations done by closed-loop clients in a timed run (here one-event
/// transactions; appends for [`crate::large`]), and their latencies.
pub(crate) struct RawRun {
    pub(crate) ok: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Latencies,
}

impl RawRun {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Waits for every client of a run started at `started`, each giving
    /// the latencies of what it did.
    pub(crate) async fn of_clients(
        mut clients: JoinSet<anyhow::Result<Latencies>>,
        started: Instant,
    ) -> anyhow::Result<RawRun> {
        let mut run = RawRun { ok: 0, elapsed: Duration::ZERO, latencies: Latencies::default() };
        while let Some(joined) = clients.join_next().await {
            let latencies = joined??;
            run.ok += latencies.len() as u64;
            run.latencies.merge(latencies);
        }
        run.elapsed = started.elapsed();
        Ok(run)
    }
}

pub(crate) async fn inserts(
    database_url: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<RawRun> {
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        .min_connections(clients as u32)
        .connect(database_url)
        .await?;
    // Open every connection before the clock starts.
    let mut warm = Vec::new();
    for _ in 0..clients {
        warm.push(pool.acquire().await?);
    }
    drop(warm);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let pool = pool.clone();
        tasks.spawn(async move {
            let stream = Uuid::now_v7();
            let mut latencies = Latencies::default();
            let mut version = 0i64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                version += 1;
                let mut tx = pool.begin().await?;
                sqlx::query(INSERT)
                    .bind(Uuid::now_v7())
                    .bind(stream)
                    .bind(version)
                    .bind(r#"{"amount":"1.00"}"#)
                    .bind(r#"{"correlation_id":"00000000-0000-0000-0000-000000000000"}"#)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let run = RawRun::of_clients(tasks, started).await?;
    pool.close().await;
    Ok(run)
}
