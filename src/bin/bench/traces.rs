//! Mutation throughput with traces off and on. "On" exports every span over
//! OTLP/HTTP (protobuf) to a receiver inside the bench, which decodes and
//! counts them, so the figure includes building, batching, encoding and
//! sending. Off and on alternate, each round on a freshly started server,
//! so a drift of the machine (other load, a growing database) falls on both.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{Value, json};

use crate::report::{Row, round3};
use crate::server::{Env, Server};
use crate::{cost, load};

/// Spans and export requests the receiver got.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
}

async fn export(
    State(counts): State<Arc<Counts>>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) {
        let spans: usize =
            request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        counts.spans.fetch_add(spans as u64, Ordering::Relaxed);
    }
    ([("content-type", "application/x-protobuf")], Vec::new())
}

async fn receiver() -> anyhow::Result<(SocketAddr, Arc<Counts>)> {
    let counts = Arc::new(Counts::default());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, counts))
}

/// What one measured run did.
struct OneRun {
    /// Deposits per second in the measured part.
    rate: f64,
    /// Every mutation of the run: accounts opened, warm-up and measured.
    mutations: u64,
    /// Database checkouts of the server over the run, when `/metrics` told.
    checkouts: Option<f64>,
    /// CPU time of the server over the run, in seconds.
    cpu_s: f64,
}

/// Accounts each run opens.
const ACCOUNTS: usize = 64;

/// One measured run: a fresh server, accounts, a warm-up, then `clients`
/// depositing for `duration`.
async fn one_run(
    env: &Env,
    extra: &[(&str, String)],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<OneRun> {
    let server = Server::start_with(env, extra).await?;
    let cpu_before = cost::cpu_seconds(server.pid()).unwrap_or(0.0);
    let checkouts_before = checkouts(server.addr).await;
    let accounts = load::open_accounts(server.addr, ACCOUNTS).await?;
    let warm = load::deposits(server.addr, &accounts, clients, Duration::from_secs(1)).await?;
    let run = load::deposits(server.addr, &accounts, clients, duration).await?;
    let checkouts_after = checkouts(server.addr).await;
    let cpu_s = cost::cpu_seconds(server.pid()).unwrap_or(0.0) - cpu_before;
    server.stop().await?;
    Ok(OneRun {
        rate: run.per_second(),
        mutations: ACCOUNTS as u64 + warm.ok + run.ok,
        checkouts: checkouts_before.zip(checkouts_after).map(|(b, a)| a - b),
        cpu_s,
    })
}

/// The server's database checkouts so far (`/metrics`), if it answers.
async fn checkouts(addr: SocketAddr) -> Option<f64> {
    let text = crate::http::scrape(addr).await.ok()?;
    crate::http::sample(&text, "eventfold_db_pool_acquire_seconds_count")
}

/// What the instrumentation costs a process that exports no trace, timed
/// here under the very subscriber such a process runs
/// ([`eventfold::app::telemetry::subscriber_without_traces`]):
/// - a span of the program's own (`debug`, so switched off): created,
///   entered, a field recorded, dropped;
/// - the counting of one database checkout (SeaORM's span around it and
///   sqlx's event at its end, seen by the pool-waits layer, which moves a
///   gauge and a histogram).
///
/// Nanoseconds for each.
fn disabled_instrumentation_ns() -> (f64, f64) {
    use std::hint::black_box;
    use std::time::Instant;
    const N: u32 = 2_000_000;
    eventfold::infra::metrics::install();
    let subscriber =
        eventfold::app::telemetry::subscriber_without_traces(eventfold::app::LogFormat::Text);
    tracing::subscriber::with_default(subscriber, || {
        let started = Instant::now();
        for i in 0..N {
            let span = tracing::debug_span!(
                target: "eventfold::es::command",
                "command",
                aggregate = "BankAccount",
                stream = i,
                outcome = tracing::field::Empty
            );
            span.in_scope(|| black_box(i));
            span.record("outcome", "ok");
        }
        let span_ns = started.elapsed().as_nanos() as f64 / f64::from(N);
        let started = Instant::now();
        for i in 0..N / 10 {
            let span = tracing::trace_span!(target: "sea_orm::driver::sqlx_postgres", "execute");
            span.in_scope(|| {
                tracing::trace!(
                    target: "sqlx::pool::acquire",
                    acquired_after_secs = black_box(f64::from(i) * 1e-9),
                    "acquired connection"
                );
            });
        }
        let checkout_ns = started.elapsed().as_nanos() as f64 / f64::from(N / 10);
        (span_ns, checkout_ns)
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Off/on rounds at `clients` clients; rows and the JSON figures.
pub(crate) async fn compare(
    env: &Env,
    clients: usize,
    rounds: usize,
    duration: Duration,
) -> anyhow::Result<(Vec<Row>, Value)> {
    let (addr, counts) = receiver().await?;
    let on_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_SERVICE_NAME", "eventfold-bench".to_owned()),
    ];
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        for traced in order {
            let label = if traced { "on" } else { "off" };
            crate::progress(&format!(
                "traces {label}: depositMoney, {clients} clients, round {round}/{rounds}"
            ));
            let extra: &[(&str, String)] = if traced { &on_env } else { &[] };
            let run = one_run(env, extra, clients, duration).await?;
            if traced { on.push(run) } else { off.push(run) }
        }
    }
    let spans_received = counts.spans.load(Ordering::Relaxed) as f64;
    let idle = idle_cost(&off, spans_received / on.iter().map(|r| r.mutations).sum::<u64>() as f64);
    let (off, on): (Vec<f64>, Vec<f64>) =
        (off.iter().map(|r| r.rate).collect(), on.iter().map(|r| r.rate).collect());
    let (off_rate, on_rate) = (median(off.clone()), median(on.clone()));
    let ratio = if off_rate > 0.0 { on_rate / off_rate } else { 0.0 };
    let cost = (1.0 - ratio) * 100.0;
    let spans = counts.spans.load(Ordering::Relaxed);
    let requests = counts.requests.load(Ordering::Relaxed);
    let mut rows = vec![
        Row::plain(
            format!("mutations/s, {clients} clients, traces off (median)"),
            format!("{} /s", crate::report::pretty(off_rate)),
        ),
        Row::plain(
            format!("mutations/s, {clients} clients, traces on (median)"),
            format!("{} /s", crate::report::pretty(on_rate)),
        ),
        Row::at_most("  cost of traces on", cost, "%", 10.0),
        Row::plain("  spans received / export requests", format!("{spans} / {requests}")),
    ];
    rows.extend(idle.0);
    let json = json!({
        "clients": clients,
        "rounds": rounds,
        "off_per_s": off.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "on_per_s": on.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "off_median_per_s": round3(off_rate),
        "on_median_per_s": round3(on_rate),
        "on_over_off": round3(ratio),
        "cost_percent": round3(cost),
        "spans_received": spans,
        "export_requests": requests,
        "off_instrumentation": idle.1,
    });
    Ok((rows, json))
}

/// The instrumentation's cost with traces off, per mutation: the measured
/// price of one switched-off span and of counting one checkout, times how
/// many of each a mutation meets (spans: as many as the "on" rounds
/// exported per mutation; checkouts: the "off" servers' own count), against
/// the server's CPU per mutation in the "off" rounds.
fn idle_cost(off: &[OneRun], spans_per_mutation: f64) -> (Vec<Row>, Value) {
    let (span_ns, checkout_ns) = disabled_instrumentation_ns();
    let mutations: u64 = off.iter().map(|r| r.mutations).sum();
    let cpu_us = off.iter().map(|r| r.cpu_s).sum::<f64>() * 1e6 / mutations.max(1) as f64;
    let checkouts: Option<f64> = off.iter().map(|r| r.checkouts).sum();
    let checkouts_per_mutation = checkouts.map(|c| c / mutations.max(1) as f64);
    let spans_ns = spans_per_mutation * span_ns;
    let checkouts_ns = checkouts_per_mutation.unwrap_or(0.0) * checkout_ns;
    let share = |ns: f64| if cpu_us > 0.0 { ns / 1e3 / cpu_us * 100.0 } else { 0.0 };
    let cpu = crate::report::pretty(cpu_us);
    let rows = vec![
        Row::plain(
            "  traces off: switched-off spans per mutation",
            format!(
                "{spans_per_mutation:.1} × {span_ns:.1} ns = {spans_ns:.0} ns ({:.3} % of the server's {cpu} µs CPU)",
                share(spans_ns)
            ),
        ),
        Row::plain(
            "  database checkouts counted per mutation",
            match checkouts_per_mutation {
                Some(c) => format!(
                    "{c:.1} × {checkout_ns:.0} ns = {checkouts_ns:.0} ns ({:.3} %)",
                    share(checkouts_ns)
                ),
                None => format!("n/a × {checkout_ns:.0} ns"),
            },
        ),
    ];
    let json = json!({
        "span_ns": round3(span_ns),
        "checkout_ns": round3(checkout_ns),
        "spans_per_mutation": round3(spans_per_mutation),
        "checkouts_per_mutation": checkouts_per_mutation.map(round3),
        "spans_ns_per_mutation": round3(spans_ns),
        "checkouts_ns_per_mutation": round3(checkouts_ns),
        "per_mutation_ns": round3(spans_ns + checkouts_ns),
        "server_cpu_us_per_mutation": round3(cpu_us),
        "spans_percent_of_server_cpu": round3(share(spans_ns)),
        "percent_of_server_cpu": round3(share(spans_ns + checkouts_ns)),
    });
    (rows, json)
}
