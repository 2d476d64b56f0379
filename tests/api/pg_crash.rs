//! A crash of PostgreSQL itself, on a private cluster of the test's own.
//!
//! A group's read transactions and the relay's checkpoint commit without
//! waiting for their flush; the event log always waits. An immediate
//! shutdown (no flush, no checkpoint: what a crash leaves) therefore loses
//! the last read commits and nothing else: every event a mutation was
//! answered for is still there, and the projections, finding their
//! checkpoints behind what they had applied, come back equal to a fold of
//! the event log.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sea_orm::Database;
use serde_json::{Value, json};

use crate::convergence::assert_tables_match_replay;
use crate::helpers::*;
use crate::process::{Server, free_port};

/// A PostgreSQL cluster in a temporary directory, on a port of its own,
/// run as the `postgres` user when the tests run as root (PostgreSQL
/// refuses root). Stopped and removed on drop.
struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivateCluster {
    fn create() -> PrivateCluster {
        let dir = std::env::temp_dir().join(format!("efpg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let as_postgres = running_as_root();
        let cluster =
            PrivateCluster { dir, bin: server_programs(), port: free_port(), as_postgres };
        if as_postgres {
            let owned = Command::new("chown").arg("postgres:postgres").arg(&cluster.dir).status();
            assert!(owned.unwrap().success(), "chown of {}", cluster.dir.display());
        }
        let dir = cluster.dir.display().to_string();
        cluster.run("initdb", &["-D", &dir, "-U", "postgres", "-A", "trust", "--no-sync"]);
        cluster
    }

    /// Starts it and waits until it accepts connections. The WAL writer
    /// runs every 10 s (its longest), so an unflushed commit stays in
    /// shared memory, where a crash loses it, for seconds.
    fn start(&self) {
        let dir = self.dir.display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {dir} -c wal_writer_delay=10000 \
             -c fsync=off -c shared_buffers=16MB -c max_connections=60",
            self.port
        );
        let log = format!("{dir}/server.log");
        self.run("pg_ctl", &["-D", &dir, "-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
    }

    /// What a crash does: every server process ends at once, writing
    /// nothing more; the next start recovers from the WAL on disk.
    fn crash(&self) {
        let dir = self.dir.display().to_string();
        self.run("pg_ctl", &["-D", &dir, "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.as_postgres {
            true => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(path);
                command
            }
            false => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).stdin(Stdio::null()).output();
        let out = out.unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &dir, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    let id = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// Where PostgreSQL's server programs are (Debian keeps them out of PATH):
/// the newest `/usr/lib/postgresql/N/bin`, else the directory of `initdb`
/// on PATH. Their absence fails the test, as a missing server does.
fn server_programs() -> PathBuf {
    let debian = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let newest = debian
        .filter_map(|d| Some((d.file_name().to_str()?.parse::<u32>().ok()?, d.path())))
        .filter(|(_, path)| path.join("bin/initdb").exists())
        .max_by_key(|(version, _)| *version);
    if let Some((_, path)) = newest {
        return path.join("bin");
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists());
    on_path.expect("PostgreSQL's server programs (initdb, pg_ctl) are installed")
}

/// A GraphQL request to `server`: the response's JSON (errors included),
/// or nothing when no response came.
async fn try_post(
    client: &reqwest::Client,
    server: &Server,
    query: &str,
    variables: Value,
) -> Option<Value> {
    let url = format!("http://{}/graphql", server.addr);
    let body = json!({ "query": query, "variables": variables });
    let sent = client.post(url).json(&body).timeout(Duration::from_secs(10)).send().await;
    sent.ok()?.json().await.ok()
}

async fn post(client: &reqwest::Client, server: &Server, query: &str, variables: Value) -> Value {
    try_post(client, server, query, variables).await.expect("the server answers")
}

/// Whether every projection reports a lag of 0.
async fn caught_up(client: &reqwest::Client, server: &Server) -> bool {
    let data = try_post(client, server, "{ projections { lag } }", json!({})).await;
    data.unwrap_or_default()["data"]["projections"]
        .as_array()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|p| p["lag"] == 0))
}

/// The last lines the server logged.
fn tail(server: &Server) -> String {
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test]
async fn a_postgres_crash_loses_only_unflushed_read_commits_and_the_projections_apply_them_again() {
    let cluster = PrivateCluster::create();
    cluster.start();
    let server = Server::start(&cluster.url(), &fresh_redis(), "all");
    server.ready().await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let input = json!({ "owner": format!("owner {i}"), "initialDeposit": "100", "overdraftLimit": "0" });
        let opened = post(&client, &server, OPEN, json!({ "input": input })).await;
        ids.push(opened["data"]["openAccount"]["id"].as_str().expect("opened").to_owned());
    }
    let mut answered = ids.len() as i64;
    // An unflushed commit survives the crash if the WAL writer ran in
    // between (once every 10 s): a round loses something nine times in
    // ten. At most three rounds.
    let mut lost = Vec::new();
    for _round in 0..3 {
        for i in 0..24 {
            let input = json!({ "accountId": ids[i % ids.len()], "amount": "1" });
            let deposited = post(&client, &server, DEPOSIT, json!({ "input": input })).await;
            assert!(deposited["errors"].is_null(), "deposit answered: {deposited}");
            answered += 1;
        }
        let applied = eventually(Duration::from_secs(30), || caught_up(&client, &server)).await;
        assert!(applied, "the projections apply every event before the crash");
        // Frozen, the server commits nothing between the crash and the
        // look at what the crash left.
        server.signal("-STOP");
        cluster.crash();
        cluster.start();
        let db = Database::connect(cluster.url()).await.unwrap();
        let stored = scalar_i64(&db, "SELECT count(*) FROM events").await;
        assert_eq!(stored, answered, "every event a mutation was answered for survived");
        let summed = scalar_i64(
            &db,
            "SELECT coalesce(sum(version), 0)::bigint FROM bank_account_summary_view",
        )
        .await;
        let relay = scalar_i64(
            &db,
            "SELECT count(*) FROM projection_checkpoints \
             WHERE name = '__relay' AND position < (SELECT max(position) FROM events)",
        )
        .await;
        if summed < stored || relay > 0 {
            lost.push((stored - summed, relay));
        }
        db.close().await.unwrap();
        server.signal("-CONT");
        let back = eventually(Duration::from_secs(60), || caught_up(&client, &server)).await;
        let report =
            post(&client, &server, "{ projections { name lag status lastError } }", json!({}))
                .await;
        assert!(back, "the projections catch up after the crash: {report}; log: {}", tail(&server));
        if !lost.is_empty() {
            break;
        }
    }
    assert!(!lost.is_empty(), "a crash lost an unflushed read commit (three rounds)");
    // What the server reports may still be what it had applied before the
    // crash: the tables themselves must come back.
    let db = Database::connect(cluster.url()).await.unwrap();
    let restored = eventually(Duration::from_secs(60), || async {
        let events = scalar_i64(&db, "SELECT count(*) FROM events").await;
        scalar_i64(&db, "SELECT coalesce(sum(version), 0)::bigint FROM bank_account_summary_view")
            .await
            == events
            && scalar_i64(&db, "SELECT count(*) FROM audit_log").await == events
    })
    .await;
    assert!(restored, "the read tables are applied again after the crash: {lost:?}");
    assert_tables_match_replay(&db).await;
    let relay =
        scalar_i64(&db, "SELECT position FROM projection_checkpoints WHERE name = '__relay'");
    assert!(relay.await > 0, "the relay's checkpoint is saved again");
    db.close().await.unwrap();
}
