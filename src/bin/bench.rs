//! `cargo build --release && cargo run --release --bin bench -- [--quick] [--traces-only] [--lag-only RATE] [--json PATH]`
//!
//! Starts the real `eventfold` server (all roles, PostgreSQL + Redis Streams)
//! on a fresh database and Redis prefix, drives it over HTTP and prints the
//! figures issue 3 asks for, each beside its target, as a table and as JSON.
//! Then measures the raw one-event INSERT limit of the same PostgreSQL,
//! appends of 2 KiB events through the event store, and the load time of a
//! 10,000-event stream with and without a snapshot.
//! Mutation throughput with OpenTelemetry traces off and on (exported to a
//! receiver in the bench) is compared too; `--traces-only` runs just that,
//! and `--lag-only RATE` only the projection lag at RATE deposits/s.
//! Everything runs on loopback, bounded in time; the database and the Redis
//! keys are removed at the end.

#[path = "bench/cost.rs"]
mod cost;
#[path = "bench/http.rs"]
mod http;
#[path = "bench/large.rs"]
mod large;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/pgbench.rs"]
mod pgbench;
#[path = "bench/raw.rs"]
mod raw;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/server.rs"]
mod server;
#[path = "bench/snapshot.rs"]
mod snapshot;
#[path = "bench/stages.rs"]
mod stages;
#[path = "bench/traces.rs"]
mod traces;

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use report::{Row, round3};
use server::{Env, Server};

/// Concurrency levels for mutations and raw inserts.
const LEVELS: [usize; 3] = [1, 16, 64];
/// Clients of the hot-account and projection-lag runs.
const CLIENTS: usize = 16;
/// Longest wait for the projections to catch up between phases.
const SETTLE: Duration = Duration::from_secs(120);

struct Options {
    quick: bool,
    /// Only the traces off/on comparison.
    traces_only: bool,
    /// Only the projection lag, at this many deposits/s.
    lag_only: Option<f64>,
    json: Option<std::path::PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let mut opts = Options { quick: false, traces_only: false, lag_only: None, json: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--traces-only" => opts.traces_only = true,
            "--lag-only" => {
                let rate = args.next().context("--lag-only needs a RATE (deposits/s)")?;
                opts.lag_only = Some(rate.parse().context("--lag-only RATE: a number")?);
            }
            "--json" => opts.json = Some(args.next().context("--json needs a PATH")?.into()),
            "-h" | "--help" => {
                println!(
                    "usage: bench [--quick] [--traces-only] [--lag-only RATE] [--json PATH]   (needs `cargo build --release`)"
                );
                std::process::exit(0);
            }
            other => bail!(
                "unknown argument {other:?} (usage: bench [--quick] [--traces-only] [--lag-only RATE] [--json PATH])"
            ),
        }
    }
    Ok(opts)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = options()?;
    let env = Env::new()?;
    env.create_database().await?;
    eprintln!("bench database {}, Redis prefix {}", env.db_name, env.redis_prefix);
    let outcome = run(&env, &opts).await;
    env.cleanup().await;
    if outcome.is_ok() {
        // The server log is kept only when something failed.
        let _ = std::fs::remove_file(env.server_log());
    }
    let (rows, json) = outcome?;
    println!("\n{}", report::table(&rows));
    let text = serde_json::to_string_pretty(&json)?;
    println!("{text}");
    if let Some(path) = &opts.json {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("Failed to write {}", path.display()))?;
    }
    Ok(())
}

fn progress(what: &str) {
    eprintln!("[bench] {what}");
}

/// Appends committed and their group-commit transactions so far, from the
/// server's `/metrics` (the append group-size histogram's sum and count).
async fn append_groups(addr: std::net::SocketAddr) -> Option<(f64, f64)> {
    let text = http::scrape(addr).await.ok()?;
    let appends = http::sample(&text, "eventfold_append_group_size_sum")?;
    let transactions = http::sample(&text, "eventfold_append_group_size_count")?;
    Some((appends, transactions))
}

async fn run(env: &Env, opts: &Options) -> anyhow::Result<(Vec<Row>, Value)> {
    let duration = Duration::from_secs(if opts.quick { 2 } else { 5 });
    let mut rows = Vec::new();
    let mut out = Map::new();
    out.insert("date".into(), json!(chrono::Utc::now().to_rfc3339()));
    out.insert("duration_s".into(), json!(duration.as_secs()));
    out.insert("cpus".into(), json!(std::thread::available_parallelism().map_or(0, |n| n.get())));
    out.insert("loadavg_before".into(), json!(loadavg()));
    if opts.traces_only {
        let rounds = if opts.quick { 1 } else { 3 };
        let (trace_rows, trace_json) = traces::compare(env, CLIENTS, rounds, duration).await?;
        rows.extend(trace_rows);
        out.insert("traces".into(), trace_json);
        out.insert("loadavg_after".into(), json!(loadavg()));
        return Ok((rows, Value::Object(out)));
    }
    if let Some(rate) = opts.lag_only {
        let rounds = if opts.quick { 1 } else { 3 };
        out.insert(
            "projection_lag".into(),
            lag_only(env, rate, rounds, duration, &mut rows).await?,
        );
        out.insert("loadavg_after".into(), json!(loadavg()));
        return Ok((rows, Value::Object(out)));
    }

    progress("starting the server");
    let server = Server::start(env).await?;
    let addr = server.addr;
    let accounts = load::open_accounts(addr, 64).await?;
    let hot = load::open_accounts(addr, 1).await?.remove(0);
    progress("warm-up (1 s, 16 clients, not counted)");
    load::deposits(addr, &accounts, CLIENTS, Duration::from_secs(1)).await?;
    load::settle(addr, SETTLE).await?;
    let mut probe =
        cost::Probe::new(&env.database_url, &env.db_name, &env.redis_url, server.pid()).await?;

    let mut peak = 0.0f64;
    let mut cpu_16 = None;
    let mut mutations = Map::new();
    let mut ours = Vec::new();
    for clients in LEVELS {
        progress(&format!("depositMoney, {clients} clients, own accounts"));
        cost::quiesce().await;
        let before = probe.sample().await?;
        let groups_before = append_groups(addr).await;
        let mut run = load::deposits(addr, &accounts, clients, duration).await?;
        let groups =
            append_groups(addr).await.zip(groups_before).map(|(a, b)| (a.0 - b.0, a.1 - b.1));
        let rate = run.per_second();
        peak = peak.max(rate);
        ours.push(rate);
        let name = format!("mutations/s, {clients} client(s)");
        rows.push(if clients == 16 {
            Row::at_least(&name, rate, "/s", 6400.0)
        } else {
            Row::plain(name, format!("{} /s", report::pretty(rate)))
        });
        rows.push(latency_row(&format!("  mutation latency, {clients}"), &mut run));
        let mut run_json = run_json(&mut run);
        if let Some((appends, transactions)) = groups.filter(|g| g.1 > 0.0) {
            rows.push(Row::plain(
                format!(
                    "  appends per group commit, {clients} ({} writer tasks)",
                    eventfold::infra::event_store::POSTGRES_WRITERS
                ),
                format!(
                    "{:.2} ({} transactions)",
                    appends / transactions,
                    report::pretty(transactions)
                ),
            ));
            run_json["appends_per_group"] = json!(round3(appends / transactions));
        }
        run_json["projection_backlog"] = backlog(addr, &mut rows).await?;
        let spent = cost_of(&mut probe, before, run.ok, &mut rows, clients).await?;
        if clients == CLIENTS {
            cpu_16 = spent["cpu_us_total"].as_f64();
        }
        run_json["cost_per_mutation"] = spent;
        mutations.insert(clients.to_string(), run_json);
    }
    out.insert("mutations".into(), Value::Object(mutations));

    if let Some(cpu) = cpu_16 {
        rows.push(Row::at_most("CPU per mutation, all processes, 16", cpu, "us", 500.0));
    }
    let own_16 = ours[LEVELS.iter().position(|&c| c == CLIENTS).unwrap_or(0)];

    progress("depositMoney, 16 clients, one hot account");
    cost::quiesce().await;
    let before = probe.sample().await?;
    let mut hot_run = load::hot_deposits(addr, &hot, CLIENTS, duration).await?;
    rows.push(Row::plain(
        "mutations/s, 16 clients, 1 hot account",
        format!("{} /s", report::pretty(hot_run.per_second())),
    ));
    rows.push(latency_row("  hot-account latency, 16", &mut hot_run));
    let mut hot_json = run_json(&mut hot_run);
    hot_json["projection_backlog"] = backlog(addr, &mut rows).await?;
    hot_json["cost_per_mutation"] =
        cost_of(&mut probe, before, hot_run.ok, &mut rows, CLIENTS).await?;
    let hot_ratio = hot_run.per_second() / own_16;
    rows.push(Row::at_least("  hot / own accounts, 16", hot_ratio, "x", 0.8));
    hot_json["hot_over_own"] = json!(round3(hot_ratio));
    out.insert("hot_account_16".into(), hot_json);

    progress("projection lag at half the peak mutation rate");
    out.insert(
        "projection_lag".into(),
        lag_run(addr, &accounts, peak / 2.0, duration, &mut rows).await?,
    );
    let mut queries = Map::new();
    for clients in [1, CLIENTS] {
        progress(&format!("account query, {clients} clients"));
        let mut run = load::queries(addr, &accounts, clients, duration).await?;
        let p99 = run.latencies.quantile_ms(0.99);
        rows.push(Row::plain(
            format!("account queries/s, {clients} client(s)"),
            format!("{} /s", report::pretty(run.per_second())),
        ));
        rows.push(Row::plain(
            format!("  account query p50, {clients}"),
            format!("{:.2} ms", run.latencies.quantile_ms(0.5)),
        ));
        rows.push(Row::at_most(&format!("  account query p99, {clients}"), p99, "ms", 2.0));
        queries.insert(clients.to_string(), run_json(&mut run));
    }
    out.insert("account_query".into(), Value::Object(queries));

    let rss_mib = server.peak_rss_kib()? as f64 / 1024.0;
    rows.push(Row::at_most("server peak RSS (VmHWM)", rss_mib, "MiB", 150.0));
    out.insert("server_peak_rss_mib".into(), json!(round3(rss_mib)));
    server.stop().await?;

    let rounds = if opts.quick { 1 } else { 2 };
    let (trace_rows, trace_json) = traces::compare(env, CLIENTS, rounds, duration).await?;
    rows.extend(trace_rows);
    out.insert("traces".into(), trace_json);

    progress("projection rebuild");
    let rebuild = rebuild(env).await?;
    match rebuild.get("events_per_s").and_then(Value::as_f64) {
        Some(rate) => {
            let events = rebuild["events"].as_i64().unwrap_or(0);
            rows.push(Row::plain(
                format!("rebuild bank_account_summary, whole command ({events} events)"),
                format!("{} events/s", report::pretty(rate)),
            ));
            if let Some(replay) = rebuild["replay_events_per_s"].as_f64() {
                rows.push(Row::at_least("  rebuild replay", replay, "events/s", 50_000.0));
            }
        }
        None => rows.push(Row::plain("rebuild", "not available")),
    }
    out.insert("rebuild".into(), rebuild);

    raw::create_table(&env.database_url).await?;
    let mut raw_json = Map::new();
    for (clients, our_rate) in LEVELS.into_iter().zip(ours) {
        progress(&format!("raw one-event INSERT transactions, {clients} clients"));
        let mut run = raw::inserts(&env.database_url, clients, duration).await?;
        let ratio = our_rate / run.per_second();
        rows.push(Row::plain(
            format!("raw INSERT tx/s, {clients} client(s)"),
            format!("{} /s", report::pretty(run.per_second())),
        ));
        let name = format!("  ours / raw, {clients}");
        rows.push(if clients == 16 {
            Row::at_least(&format!("{name} (moonshot)"), ratio, "x", 1.0)
        } else {
            Row::plain(name, format!("{ratio:.2} x"))
        });
        raw_json.insert(
            clients.to_string(),
            json!({
                "per_s": round3(run.per_second()),
                "latency": run.latencies.summary(),
                "ours_over_raw": round3(ratio),
            }),
        );
    }
    out.insert("raw_insert".into(), Value::Object(raw_json));
    out.insert("pgbench_insert".into(), pgbench_runs(env, duration, own_16, &mut rows));

    progress(&format!("large appends (2 KiB events), {CLIENTS} clients"));
    let mut run = large::appends(&env.database_url, CLIENTS, duration).await?;
    rows.push(Row::plain(
        format!("2 KiB-event appends/s (store, no HTTP), {CLIENTS} clients"),
        format!("{} /s", report::pretty(run.per_second())),
    ));
    out.insert(
        "large_appends".into(),
        json!({
            "clients": CLIENTS,
            "payload_bytes": large::PAYLOAD_BYTES,
            "per_s": round3(run.per_second()),
            "latency": run.latencies.summary(),
        }),
    );

    progress("snapshot load time (10,000-event stream)");
    let snap = snapshot::measure(&env.database_url, 20).await?;
    rows.push(Row::plain(
        format!("load {} events, no snapshot (median)", snapshot::EVENTS),
        format!("{:.2} ms", snap.without_ms),
    ));
    rows.push(Row::plain(
        format!("load {} events, snapshot + tail (median)", snapshot::EVENTS),
        format!("{:.2} ms", snap.with_ms),
    ));
    out.insert(
        "snapshot_load".into(),
        json!({
            "events": snapshot::EVENTS,
            "runs": snap.runs,
            "without_snapshot_median_ms": round3(snap.without_ms),
            "with_snapshot_median_ms": round3(snap.with_ms),
        }),
    );
    out.insert("loadavg_after".into(), json!(loadavg()));
    Ok((rows, Value::Object(out)))
}

/// pgbench's prepared one-event INSERT at 1 and 16 clients, if installed.
fn pgbench_runs(env: &Env, duration: Duration, own_16: f64, rows: &mut Vec<Row>) -> Value {
    let Some(bin) = pgbench::find() else {
        rows.push(Row::plain("pgbench INSERT", "pgbench not installed"));
        return json!({ "available": false });
    };
    let mut out = Map::new();
    out.insert("available".into(), json!(true));
    for clients in [1, CLIENTS] {
        progress(&format!("pgbench prepared one-event INSERT, {clients} clients"));
        match pgbench::tps(&bin, &env.database_url, clients, duration) {
            Ok(tps) => {
                rows.push(Row::plain(
                    format!("pgbench prepared INSERT tx/s, {clients} client(s)"),
                    format!("{} /s", report::pretty(tps)),
                ));
                let mut run = json!({ "per_s": round3(tps) });
                if clients == CLIENTS {
                    let ratio = own_16 / tps;
                    rows.push(Row::plain("  ours / pgbench, 16", format!("{ratio:.2} x")));
                    run["ours_over_pgbench"] = json!(round3(ratio));
                }
                out.insert(clients.to_string(), run);
            }
            Err(e) => {
                eprintln!("pgbench: {e:#}");
                out.insert(clients.to_string(), json!({ "error": format!("{e:#}") }));
            }
        }
    }
    Value::Object(out)
}

/// Samples the counters again after a run (and its backlog) and reports
/// what each of its `mutations` cost.
async fn cost_of(
    probe: &mut cost::Probe,
    before: cost::Sample,
    mutations: u64,
    rows: &mut Vec<Row>,
    clients: usize,
) -> anyhow::Result<Value> {
    cost::quiesce().await;
    let after = probe.sample().await?;
    let spent = probe.per_mutation(&before, &after, mutations);
    let f = |k: &str| spent[k].as_f64().unwrap_or(0.0);
    rows.push(Row::plain(
        format!("  CPU us/mutation, {clients}: server / pg / redis"),
        format!(
            "{:.0} / {:.0} / {:.0} = {:.0}",
            f("cpu_us_server"),
            f("cpu_us_postgres"),
            f("cpu_us_redis"),
            f("cpu_us_total")
        ),
    ));
    rows.push(Row::plain(
        format!("  per mutation, {clients}: pg tx / redis cmds"),
        format!("{:.2} / {:.2}", f("pg_transactions"), f("redis_commands")),
    ));
    Ok(spent)
}

/// Waits for the projections to catch up and reports the backlog the last
/// phase left behind (a row only when there was one).
async fn backlog(addr: std::net::SocketAddr, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let settled = load::settle(addr, SETTLE).await?;
    if settled.backlog > 0 {
        let done = if settled.drained { "drained in" } else { "NOT drained after" };
        rows.push(Row::plain(
            "  projection backlog at end",
            format!("{} events, {done} {:.1} s", settled.backlog, settled.drained_in.as_secs_f64()),
        ));
    }
    Ok(json!({
        "events": settled.backlog,
        "drained": settled.drained,
        "drain_s": round3(settled.drained_in.as_secs_f64()),
    }))
}

fn latency_row(name: &str, run: &mut load::Run) -> Row {
    let p50 = run.latencies.quantile_ms(0.5);
    let p99 = run.latencies.quantile_ms(0.99);
    let mut value = format!("p50 {p50:.2} / p99 {p99:.2} ms");
    if run.errors > 0 {
        value += &format!(" ({} errors)", run.errors);
    }
    Row::plain(name, value)
}

fn run_json(run: &mut load::Run) -> Value {
    json!({
        "per_s": round3(run.per_second()),
        "ok": run.ok,
        "errors": run.errors,
        "first_error": run.first_error,
        "latency": run.latencies.summary(),
    })
}

/// Runs `eventfold projections rebuild bank_account_summary` if this build
/// has it; events/s is the number of events in the store over the
/// command's wall time (process start and connection included).
async fn rebuild(env: &Env) -> anyhow::Result<Value> {
    let mut help = env.command();
    help.args(["projections", "--help"]);
    let (_, text, _) =
        tokio::task::spawn_blocking(move || server::run_to_end(help, Duration::from_secs(30)))
            .await??;
    if !text.lines().any(|l| l.trim_start().starts_with("rebuild")) {
        eprintln!("rebuild: not available (`eventfold projections --help` lists no rebuild)");
        return Ok(json!({ "available": false }));
    }
    let events = count_events(&env.database_url).await?;
    let mut cmd = env.command();
    cmd.args(["projections", "rebuild", "bank_account_summary"]);
    let (ok, text, elapsed) =
        tokio::task::spawn_blocking(move || server::run_to_end(cmd, Duration::from_secs(600)))
            .await??;
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    if !ok {
        bail!("rebuild failed: {}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let rate = events as f64 / elapsed.as_secs_f64();
    // "… events in X s (R events/s; replay Y s, P events/s), at …"
    let replay_rate = text
        .lines()
        .find_map(|l| {
            l.split("; replay ").nth(1)?.split(", ").nth(1)?.split(' ').next()?.parse().ok()
        })
        .map(round3);
    Ok(json!({
        "available": true,
        "events": events,
        "wall_s": round3(elapsed.as_secs_f64()),
        "events_per_s": round3(rate),
        "replay_events_per_s": replay_rate,
        "output_tail": tail.into_iter().rev().collect::<Vec<_>>(),
    }))
}

async fn count_events(database_url: &str) -> anyhow::Result<i64> {
    use sea_orm::ConnectionTrait as _;
    let db = sea_orm::Database::connect(database_url).await?;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM events".to_owned(),
        ))
        .await?
        .context("no count")?;
    let n = row.try_get_by_index::<i64>(0)?;
    db.close().await?;
    Ok(n)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// The projection lag at `rate` deposits/s over `duration`, with where it
/// goes (the server's stage histograms between two scrapes).
async fn lag_run(
    addr: std::net::SocketAddr,
    accounts: &[String],
    rate: f64,
    duration: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let metrics_before = http::scrape(addr).await?;
    let mut lag = load::projection_lag(addr, accounts, CLIENTS, rate, duration).await?;
    let metrics_after = http::scrape(addr).await?;
    let lag_p99 = lag.lags.quantile_ms(0.99);
    rows.push(Row::plain(
        "lag run: target / achieved rate",
        format!("{} / {} /s", report::pretty(lag.target_rate), report::pretty(lag.achieved_rate)),
    ));
    rows.push(Row::plain("projection lag p50", format!("{:.2} ms", lag.lags.quantile_ms(0.5))));
    rows.push(Row::at_most("projection lag p99", lag_p99, "ms", 20.0));
    let mut lag_json = lag.lags.summary();
    lag_json["target_rate"] = json!(round3(lag.target_rate));
    lag_json["achieved_rate"] = json!(round3(lag.achieved_rate));
    lag_json["timeouts"] = json!(lag.timeouts);
    lag_json["stages"] = stages::report(&metrics_before, &metrics_after, rows);
    lag_json["projection_backlog"] = backlog(addr, rows).await?;
    Ok(lag_json)
}

/// `--lag-only RATE`: a server, a warm-up, then the projection lag at
/// `rate` deposits/s, three times (once with `--quick`).
async fn lag_only(
    env: &Env,
    rate: f64,
    rounds: usize,
    duration: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    progress("starting the server");
    let server = Server::start(env).await?;
    let accounts = load::open_accounts(server.addr, 64).await?;
    progress("warm-up (1 s, 16 clients, not counted)");
    load::deposits(server.addr, &accounts, CLIENTS, Duration::from_secs(1)).await?;
    load::settle(server.addr, SETTLE).await?;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        progress(&format!("projection lag at {rate} deposits/s, round {round}/{rounds}"));
        runs.push(lag_run(server.addr, &accounts, rate, duration, rows).await?);
    }
    server.stop().await?;
    Ok(json!(runs))
}
