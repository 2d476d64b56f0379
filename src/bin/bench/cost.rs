//! What a mutation costs, measured from outside the server: CPU time of the
//! server, PostgreSQL and Redis processes (from `/proc`), PostgreSQL
//! transactions (`pg_stat_database`) and statements (`pg_stat_statements`,
//! when installed) of the bench database, and Redis commands
//! (`INFO commandstats`).
//!
//! PostgreSQL CPU is the backends connected to the bench database plus the
//! cluster's background processes (WAL writer, checkpointer, …); Redis CPU
//! and commands are the whole Redis server's. Both of those are shared with
//! anything else running on the machine at the time.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};

use crate::report::round3;

/// Counters at one moment.
pub(crate) struct Sample {
    server_ticks: u64,
    postgres_ticks: HashMap<u32, u64>,
    redis_ticks: u64,
    xacts: i64,
    statements: Option<i64>,
    redis_commands: u64,
}

pub(crate) struct Probe {
    db: DatabaseConnection,
    db_name: String,
    redis: redis::aio::MultiplexedConnection,
    redis_port: String,
    server_pid: u32,
    ticks_per_s: f64,
    statements: bool,
}

impl Probe {
    pub(crate) async fn new(
        database_url: &str,
        db_name: &str,
        redis_url: &str,
        server_pid: u32,
    ) -> anyhow::Result<Probe> {
        let db = Database::connect(database_url).await?;
        let statements = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
            ))
            .await?
            .is_some();
        let client = redis::Client::open(redis_url)?;
        let redis = client.get_multiplexed_async_connection().await?;
        let redis_port =
            redis_url.rsplit(':').next().unwrap_or("6379").trim_matches('/').to_owned();
        Ok(Probe {
            db,
            db_name: db_name.to_owned(),
            redis,
            redis_port,
            server_pid,
            ticks_per_s: clock_ticks(),
            statements,
        })
    }

    /// Reads every counter. PostgreSQL backends publish their statistics
    /// about once a second, so callers wait a little before sampling.
    pub(crate) async fn sample(&mut self) -> anyhow::Result<Sample> {
        let pids = self.postgres_pids().await?;
        let postgres_ticks = pids.into_iter().filter_map(|p| Some((p, ticks(p)?))).collect();
        let xacts = self
            .scalar(&format!(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = '{}'",
                self.db_name
            ))
            .await?;
        let statements = if self.statements {
            Some(
                self.scalar(
                    "SELECT COALESCE(SUM(calls), 0)::bigint FROM pg_stat_statements s \
                     JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()",
                )
                .await?,
            )
        } else {
            None
        };
        let info: String =
            redis::cmd("INFO").arg("commandstats").query_async(&mut self.redis).await?;
        Ok(Sample {
            server_ticks: ticks(self.server_pid).unwrap_or(0),
            postgres_ticks,
            redis_ticks: redis_pids(&self.redis_port).into_iter().filter_map(ticks).sum(),
            xacts,
            statements,
            redis_commands: command_calls(&info),
        })
    }

    /// What happened between two samples, per mutation.
    pub(crate) fn per_mutation(&self, before: &Sample, after: &Sample, mutations: u64) -> Value {
        let n = mutations.max(1) as f64;
        let us = |ticks: u64| ticks as f64 / self.ticks_per_s * 1e6 / n;
        // A backend that started in between counts from zero; one that
        // ended in between is lost (the bench's connections stay open).
        let pg: u64 = after
            .postgres_ticks
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.postgres_ticks.get(pid).copied().unwrap_or(0)))
            .sum();
        let server = after.server_ticks.saturating_sub(before.server_ticks);
        let redis = after.redis_ticks.saturating_sub(before.redis_ticks);
        json!({
            "mutations": mutations,
            "cpu_us_server": round3(us(server)),
            "cpu_us_postgres": round3(us(pg)),
            "cpu_us_redis": round3(us(redis)),
            "cpu_us_total": round3(us(server + pg + redis)),
            "pg_transactions": round3((after.xacts - before.xacts) as f64 / n),
            "pg_statements": after.statements.zip(before.statements).map(|(a, b)| round3((a - b) as f64 / n)),
            "redis_commands": round3(after.redis_commands.saturating_sub(before.redis_commands) as f64 / n),
        })
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row for {sql}"))?;
        Ok(row.try_get_by_index::<i64>(0)?)
    }

    /// Backends of the bench database and the cluster's own processes.
    async fn postgres_pids(&self) -> anyhow::Result<Vec<u32>> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT pid FROM pg_stat_activity WHERE datname = '{}' OR \
                     (datname IS NULL AND backend_type <> 'client backend')",
                    self.db_name
                ),
            ))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get_by_index::<i32>(0).ok())
            .map(|p| p as u32)
            .collect())
    }
}

/// Lets PostgreSQL backends publish their statistics before a sample.
pub(crate) async fn quiesce() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

/// CPU time (user + system) a process has used so far, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    Some(ticks(pid)? as f64 / clock_ticks())
}

/// utime + stime of a process (all its threads), in clock ticks.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The redis-server processes listening on `port`.
fn redis_pids(port: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.starts_with("redis-server") && cmdline.contains(&format!(":{port}"))
        })
        .collect()
}

/// Sum of `calls=` over every command in `INFO commandstats`.
fn command_calls(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
