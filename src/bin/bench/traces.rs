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

use crate::load;
use crate::report::{Row, round3};
use crate::server::{Env, Server};

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

/// One measured run: a fresh server, accounts, a warm-up, then `clients`
/// depositing for `duration`.
async fn one_run(
    env: &Env,
    extra: &[(&str, String)],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let server = Server::start_with(env, extra).await?;
    let accounts = load::open_accounts(server.addr, 64).await?;
    load::deposits(server.addr, &accounts, clients, Duration::from_secs(1)).await?;
    let run = load::deposits(server.addr, &accounts, clients, duration).await?;
    server.stop().await?;
    Ok(run.per_second())
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
            let rate = one_run(env, extra, clients, duration).await?;
            if traced { on.push(rate) } else { off.push(rate) }
        }
    }
    let (off_rate, on_rate) = (median(off.clone()), median(on.clone()));
    let ratio = if off_rate > 0.0 { on_rate / off_rate } else { 0.0 };
    let cost = (1.0 - ratio) * 100.0;
    let spans = counts.spans.load(Ordering::Relaxed);
    let requests = counts.requests.load(Ordering::Relaxed);
    let rows = vec![
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
    });
    Ok((rows, json))
}
