//! Metrics: code anywhere records through the `metrics` facade (a facade
//! like `tracing`: no HTTP here), and the Prometheus exporter's recorder
//! keeps the figures; `/metrics` renders them with [`render`].
//!
//! Two kinds of figures:
//! - events counted where they happen (requests, commands, appends,
//!   batches, connections): the process-wide recorder installed once by
//!   [`install`];
//! - states read when scraped (checkpoints, lag, dead letters, pools): set
//!   on a recorder of their own made for each scrape (see [`render`]), so
//!   that several applications in one process (tests) never overwrite each
//!   other's gauges.
//!
//! Names carry the `eventfold_` prefix and base units (`_seconds`,
//! `_bytes`); counters end in `_total`. Every label value is a static
//! string or comes from a bounded set, so the cost on the hot path is a
//! lookup, not an allocation.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `_seconds` histogram: from half a millisecond to ten
/// seconds.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets of every `_size` histogram (events per batch, appends per group).
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes (a scrape folds them too); bounds the memory they hold.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static GLOBAL: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS))
        // Only empty bucket lists are refused, and these are constants.
        .expect("the bucket lists are not empty")
}

/// Installs the process-wide recorder (once; later calls do nothing). When
/// another recorder was installed first, figures go there and [`render`]
/// shows only the scraped states.
pub fn install() {
    GLOBAL.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only states");
            return None;
        }
        describe();
        super::pool_waits::describe();
        // Counters without labels are shown from the start, at zero.
        for name in [
            "eventfold_command_conflicts_total",
            "eventfold_command_retries_total",
            "eventfold_relay_published_events_total",
        ] {
            metrics::counter!(name).increment(0);
        }
        metrics::gauge!("eventfold_websocket_connections").increment(0.0);
        metrics::gauge!("eventfold_subscriptions_active").increment(0.0);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let upkeep = handle.clone();
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP_EVERY).await;
                    upkeep.run_upkeep();
                }
            });
        }
        Some(handle)
    });
}

/// The Prometheus text of everything recorded in this process, after the
/// states `scraped` sets (through the `metrics` macros, on a recorder made
/// for this scrape; their names must not be recorded elsewhere).
pub fn render(scraped: impl FnOnce()) -> String {
    let local = builder().build_recorder();
    metrics::with_local_recorder(&local, scraped);
    let mut out = local.handle().render();
    if let Some(Some(global)) = GLOBAL.get() {
        out.push_str(&global.render());
    }
    out
}

/// Help texts of the figures counted where they happen.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "eventfold_http_requests_total",
        "HTTP requests by route, method and status class."
    );
    describe_histogram!(
        "eventfold_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's headers to its response headers."
    );
    describe_counter!(
        "eventfold_graphql_operations_total",
        "GraphQL operations by name (anonymous when unnamed), type and outcome (ok or the error code)."
    );
    describe_histogram!(
        "eventfold_graphql_operation_duration_seconds",
        Unit::Seconds,
        "Time to run a GraphQL operation (queries and mutations)."
    );
    describe_counter!(
        "eventfold_commands_total",
        "Commands by aggregate, command and outcome (ok, a rejection kind, conflict, invalid, error)."
    );
    describe_counter!(
        "eventfold_command_conflicts_total",
        "Appends that lost an optimistic-concurrency race (retried or reported)."
    );
    describe_counter!("eventfold_command_retries_total", "Commands run again after a lost race.");
    describe_histogram!("eventfold_append_group_size", "Appends committed in one transaction.");
    describe_histogram!(
        "eventfold_append_duration_seconds",
        Unit::Seconds,
        "Time of one append, queueing for its group included."
    );
    describe_histogram!(
        "eventfold_append_write_duration_seconds",
        Unit::Seconds,
        "From a group's events INSERT (their recorded_at) to its COMMIT: the commit-order lock's wait and hold."
    );
    describe_counter!(
        "eventfold_relay_published_events_total",
        "Events the relay published to Redis."
    );
    describe_gauge!("eventfold_relay_position", "Global position the relay has published up to.");
    describe_gauge!(
        "eventfold_relay_lag_events",
        "Committed events the relay had not published after its last batch."
    );
    describe_gauge!(
        "eventfold_relay_lag_seconds",
        Unit::Seconds,
        "Age of the oldest event of the relay's last batch when it was published (0 when idle)."
    );
    describe_histogram!(
        "eventfold_projection_batch_size",
        "Events applied in one projector transaction."
    );
    describe_histogram!(
        "eventfold_projection_apply_duration_seconds",
        Unit::Seconds,
        "Time to apply a batch and commit it with its checkpoint."
    );
    describe_histogram!(
        "eventfold_relay_read_age_seconds",
        Unit::Seconds,
        "Per event: time from its append to the relay's read of it."
    );
    describe_histogram!(
        "eventfold_projection_receive_age_seconds",
        Unit::Seconds,
        "Per event a projection reads: time from its append to the worker's read from Redis."
    );
    describe_histogram!(
        "eventfold_projection_applied_age_seconds",
        Unit::Seconds,
        "Per event: time from its append to the commit of the projector's transaction."
    );
    describe_gauge!("eventfold_websocket_connections", "Open GraphQL WebSocket connections.");
    describe_gauge!(
        "eventfold_subscriptions_active",
        "GraphQL operations running over WebSockets (subscriptions, mostly)."
    );
}
