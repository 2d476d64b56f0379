//! The HTTP workloads against the running server: mutation throughput and
//! latency, projection lag at a fixed rate, and `account` query latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::http::Conn;
use crate::report::Latencies;

const OPEN: &str =
    "mutation($input: OpenAccountInput!) { openAccount(input: $input) { id version position } }";
const DEPOSIT: &str =
    "mutation($input: DepositMoneyInput!) { depositMoney(input: $input) { id version position } }";
const ACCOUNT: &str = "query($id: UUID!) { account(id: $id) { id owner balance totalDeposits \
                       totalWithdrawals lastTransactionAt version } }";
const VERSION: &str = "query($id: UUID!) { account(id: $id) { version } }";

/// Result of one fixed-duration run.
pub(crate) struct Run {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Latencies,
    pub(crate) first_error: Option<String>,
}

impl Run {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Opens `n` accounts and returns their ids.
pub(crate) async fn open_accounts(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<String>> {
    let mut conn = Conn::connect(addr).await?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let input = json!({ "owner": format!("bench {i}"), "initialDeposit": "100", "overdraftLimit": "0" });
        let data = conn.graphql(OPEN, json!({ "input": input })).await?;
        let id = data.pointer("/openAccount/id").and_then(Value::as_str).context("no id")?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

fn deposit_vars(account: &str) -> Value {
    json!({ "input": { "accountId": account, "amount": "1.00" } })
}

/// Runs `clients` closed-loop clients for `duration`; client `i` uses
/// `pick(i)` as its account and `query`/`vars` as its request.
async fn closed_loop(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    query: &'static str,
    vars: impl Fn(usize) -> Value,
) -> anyhow::Result<Run> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(Conn::connect(addr).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let vars = vars(i);
        tasks.spawn(async move {
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut latencies = Latencies::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                match conn.graphql(query, vars.clone()).await {
                    Ok(_) => {
                        ok += 1;
                        latencies.push(sent.elapsed());
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        // GraphQL and status errors start with "HTTP "; anything
                        // else means the connection is unusable.
                        if !e.to_string().starts_with("HTTP ") {
                            break;
                        }
                    }
                }
            }
            (ok, errors, latencies, first_error)
        });
    }
    let mut run = Run {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Latencies::default(),
        first_error: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let (ok, errors, latencies, first_error) = joined?;
        run.ok += ok;
        run.errors += errors;
        run.latencies.merge(latencies);
        if run.first_error.is_none() {
            run.first_error = first_error;
        }
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// `depositMoney` by `clients` clients, each on its own account.
pub(crate) async fn deposits(
    addr: SocketAddr,
    accounts: &[String],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    closed_loop(addr, clients, duration, DEPOSIT, |i| deposit_vars(&accounts[i % accounts.len()]))
        .await
}

/// `depositMoney` by `clients` clients, all on one account.
pub(crate) async fn hot_deposits(
    addr: SocketAddr,
    account: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    closed_loop(addr, clients, duration, DEPOSIT, |_| deposit_vars(account)).await
}

/// `account(id)` reads (no `minPosition`), each client on its own account.
pub(crate) async fn queries(
    addr: SocketAddr,
    accounts: &[String],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    closed_loop(addr, clients, duration, ACCOUNT, |i| json!({ "id": accounts[i % accounts.len()] }))
        .await
}

/// Projection lag samples, with the mutation rate actually reached.
pub(crate) struct Lag {
    pub(crate) target_rate: f64,
    pub(crate) achieved_rate: f64,
    pub(crate) lags: Latencies,
    pub(crate) timeouts: u64,
}

/// A mutation whose visibility the prober should time.
struct Sample {
    account: String,
    version: i64,
    answered: Instant,
}

/// Runs `clients` clients paced to `rate` deposits/s in total. Whenever the
/// single prober is idle, the next mutation's (account, version) goes to it:
/// it polls `account(id){version}` every ~1 ms on its own connection until
/// the new version shows, and records the time from the mutation's response
/// to the response of the first poll that shows it (an upper bound of the
/// commit-to-visible lag by about one query round trip). Handing samples
/// only to an idle prober means no sample waits in a queue.
pub(crate) async fn projection_lag(
    addr: SocketAddr,
    accounts: &[String],
    clients: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Lag> {
    let idle = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::channel::<Sample>(1);
    let mut prober_conn = Conn::connect(addr).await?;
    let prober_idle = idle.clone();
    let prober = tokio::spawn(async move {
        let (mut lags, mut timeouts) = (Latencies::default(), 0u64);
        while let Some(sample) = rx.recv().await {
            let vars = json!({ "id": sample.account });
            let give_up = sample.answered + Duration::from_secs(2);
            loop {
                let data = prober_conn.graphql(VERSION, vars.clone()).await?;
                let seen = data.pointer("/account/version").and_then(Value::as_i64).unwrap_or(0);
                if seen >= sample.version {
                    lags.push(sample.answered.elapsed());
                    break;
                }
                if Instant::now() > give_up {
                    timeouts += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            prober_idle.store(true, Ordering::Release);
        }
        anyhow::Ok((lags, timeouts))
    });
    let interval = Duration::from_secs_f64(clients as f64 / rate);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for i in 0..clients {
        let mut conn = Conn::connect(addr).await?;
        let (account, tx, idle) = (accounts[i % accounts.len()].clone(), tx.clone(), idle.clone());
        // Stagger the clients evenly over one interval.
        let mut next = started + interval.mul_f64(i as f64 / clients as f64);
        tasks.spawn(async move {
            let mut done = 0u64;
            while next < deadline {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                let data = conn.graphql(DEPOSIT, deposit_vars(&account)).await?;
                let answered = Instant::now();
                done += 1;
                let version = data.pointer("/depositMoney/version").and_then(Value::as_i64);
                if let Some(version) = version
                    && idle
                        .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    let _ = tx.try_send(Sample { account: account.clone(), version, answered });
                }
            }
            anyhow::Ok(done)
        });
    }
    drop(tx);
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        done += joined??;
    }
    let achieved_rate = done as f64 / started.elapsed().as_secs_f64();
    let (lags, timeouts) = prober.await??;
    Ok(Lag { target_rate: rate, achieved_rate, lags, timeouts })
}

/// How far the projections were behind and how long they took to catch up.
pub(crate) struct Settled {
    /// Largest `lag` (events not yet applied) over all projections at the start.
    pub(crate) backlog: i64,
    pub(crate) drained_in: Duration,
    pub(crate) drained: bool,
}

/// Waits (at most `limit`) until every projection reports `lag` 0, so the
/// next phase neither competes with a catch-up nor measures it.
pub(crate) async fn settle(addr: SocketAddr, limit: Duration) -> anyhow::Result<Settled> {
    let mut conn = Conn::connect(addr).await?;
    let started = Instant::now();
    let mut backlog = None;
    loop {
        let data = conn.graphql("{ projections { name lag } }", json!({})).await?;
        let lag = data
            .get("projections")
            .and_then(Value::as_array)
            .map(|ps| ps.iter().filter_map(|p| p.get("lag").and_then(Value::as_i64)).max())
            .unwrap_or_default()
            .unwrap_or(0);
        let backlog = *backlog.get_or_insert(lag);
        if lag == 0 || started.elapsed() > limit {
            return Ok(Settled { backlog, drained_in: started.elapsed(), drained: lag == 0 });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
