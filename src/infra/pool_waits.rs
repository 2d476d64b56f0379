//! Who waits for a database connection: how many tasks wait now
//! (`eventfold_db_pool_waiting`) and how long each checkout took
//! (`eventfold_db_pool_acquire_seconds`), over every pool of the process.
//!
//! sqlx's pool counts open and idle connections but not the tasks queued
//! for one. It does report each checkout as it ends (the event
//! `sqlx::pool::acquire` with `acquired_after_secs`, once
//! [`PoolOptions::acquire_time_level`] lets it), and SeaORM runs every
//! pooled statement and every transaction's `begin` inside a span of its
//! own that opens before the checkout. So a task waits from the moment
//! such a span opens until the checkout's event fires inside it, or until
//! the span closes without one (the checkout timed out or was dropped).
//! Both ends are seen by this [`Layer`], which keeps the count in a gauge
//! of the process-wide recorder.
//!
//! A checkout outside SeaORM (none today) would still be timed, and would
//! leave the count alone.
//!
//! [`PoolOptions::acquire_time_level`]: sea_orm::sqlx::pool::PoolOptions::acquire_time_level

use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Where SeaORM's pooled connections open their spans.
const SEA_ORM_DRIVERS: &str = "sea_orm::driver";
/// The target of sqlx's event for a finished checkout.
const CHECKOUT: &str = "sqlx::pool::acquire";
/// The SeaORM driver methods that check a connection out first.
const CHECKING_OUT: &[&str] =
    &["execute", "execute_unprepared", "query_one", "query_all", "stream", "begin", "transaction"];

const WAITING: &str = "eventfold_db_pool_waiting";
const ACQUIRE_SECONDS: &str = "eventfold_db_pool_acquire_seconds";

/// The layer, filtered to the spans and events it reads: the filter gives
/// every other call site a cached "never", so the rest of the program's
/// tracing costs what it did.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let targets = Targets::new()
        .with_target(SEA_ORM_DRIVERS, Level::TRACE)
        .with_target(CHECKOUT, Level::TRACE);
    PoolWaits.with_filter(targets)
}

/// The two figures' handles on the process-wide recorder, made once it is
/// installed (a lookup per checkout would cost more than the counting).
static FIGURES: OnceLock<(metrics::Gauge, metrics::Histogram)> = OnceLock::new();

/// Describes the two figures and takes their handles; called once the
/// process-wide recorder is installed. Before that, nothing is counted.
pub fn describe() {
    metrics::describe_gauge!(
        WAITING,
        "Tasks waiting for a database connection now (every pool of the process)."
    );
    metrics::describe_histogram!(
        ACQUIRE_SECONDS,
        metrics::Unit::Seconds,
        "Time each database checkout waited for a connection (every pool of the process)."
    );
    let waiting = metrics::gauge!(WAITING);
    waiting.increment(0.0);
    let _ = FIGURES.set((waiting, metrics::histogram!(ACQUIRE_SECONDS)));
}

struct PoolWaits;

/// Marks a span whose checkout has not ended yet.
struct Waiting;

fn checks_out(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && metadata.target().starts_with(SEA_ORM_DRIVERS)
        && CHECKING_OUT.contains(&metadata.name())
}

impl<S> Layer<S> for PoolWaits
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !checks_out(attrs.metadata()) {
            return;
        }
        if let (Some(span), Some((waiting, _))) = (ctx.span(id), FIGURES.get()) {
            span.extensions_mut().insert(Waiting);
            waiting.increment(1.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != CHECKOUT {
            return;
        }
        let Some((_, acquire_seconds)) = FIGURES.get() else { return };
        let mut waited = Waited(None);
        event.record(&mut waited);
        if let Some(seconds) = waited.0 {
            acquire_seconds.record(seconds);
        }
        if let Some(span) = ctx.event_span(event) {
            stop_waiting(&span);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            stop_waiting(&span);
        }
    }
}

fn stop_waiting<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    if span.extensions_mut().remove::<Waiting>().is_some()
        && let Some((waiting, _)) = FIGURES.get()
    {
        waiting.decrement(1.0);
    }
}

/// Reads `acquired_after_secs` off a checkout event.
struct Waited(Option<f64>);

impl Visit for Waited {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "acquired_after_secs" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}
