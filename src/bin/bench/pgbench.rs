//! pgbench's view of the raw limit: one prepared one-event INSERT per
//! transaction (autocommit) into the raw scratch table, at a given number of
//! clients, when `pgbench` is installed. Beside the sqlx raw figure (three
//! round trips per transaction from a Rust client), it is what PostgreSQL
//! itself reaches on this machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The one-event INSERT, shaped like the raw bench's (random stream per row).
const SCRIPT: &str = "INSERT INTO bench_raw_events (event_id, stream_type, stream_id, version, \
    event_type, schema_version, payload, metadata, recorded_at) VALUES (gen_random_uuid(), \
    'BankAccount', gen_random_uuid(), 1, 'MoneyDeposited', 1, '{\"amount\":\"1.00\"}'::json, \
    '{\"correlation_id\":\"00000000-0000-0000-0000-000000000000\"}'::json, now());\n";

/// The pgbench binary: on PATH, else PostgreSQL's bin directories.
pub(crate) fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).map(|d| d.join("pgbench")).collect::<Vec<_>>());
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path().join("bin/pgbench")));
    on_path.chain(installed).find(|p| p.is_file())
}

/// Transactions per second (pgbench's figure without connection time).
pub(crate) fn tps(
    pgbench: &std::path::Path,
    database_url: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("bench-insert-{}.sql", std::process::id()));
    std::fs::write(&script, SCRIPT)?;
    let output = Command::new(pgbench)
        .args(["-n", "-M", "prepared"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg(clients.min(2).to_string())
        .arg("-T")
        .arg(duration.as_secs().max(1).to_string())
        .arg("-f")
        .arg(&script)
        .arg(database_url)
        .output();
    let _ = std::fs::remove_file(&script);
    let output = output?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("pgbench failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    text.lines()
        .filter(|l| l.starts_with("tps = "))
        .find_map(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output: {text}"))
}
