//! Logging and metrics set-up, in one place, so that what a process
//! reports is decided once: the log format (`LOG_FORMAT`), the filter
//! (`RUST_LOG`), and the metrics recorder `/metrics` renders.
//!
//! The subscriber is built as a stack of layers (a filter, then one
//! formatting layer); another layer (trace export, say) is added in
//! [`init`] beside the formatter.

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use super::LogFormat;

/// The filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn";

/// Installs the log subscriber for `format`, the trace exporter when
/// `with_traces` and the `OTEL_*` variables ask for one, and the metrics
/// recorder. Errors when a subscriber is installed already. The guard
/// returned flushes the traces on shutdown.
pub fn init(
    format: LogFormat,
    with_traces: bool,
) -> anyhow::Result<Option<super::tracing_otel::TracesGuard>> {
    let (otel, guard) = match with_traces.then(super::tracing_otel::layer).transpose()?.flatten() {
        Some((layer, guard)) => (Some(layer), Some(guard)),
        None => (None, None),
    };
    tracing_subscriber::registry().with(otel).with(untraced(format)).try_init()?;
    crate::infra::metrics::install();
    Ok(guard)
}

/// The subscriber a process runs with when no trace is exported, not
/// installed: the bench measures what the program's instrumentation costs
/// under it.
pub fn subscriber_without_traces(format: LogFormat) -> impl Subscriber + Send + Sync {
    tracing_subscriber::registry().with(untraced(format))
}

/// Every layer but the trace exporter: the log output, filtered by
/// `RUST_LOG`, and the count of tasks waiting for a database connection.
fn untraced<S>(format: LogFormat) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        // One object per line: time, level, target, the message and every
        // field of the event at the top level, the innermost span's name
        // the spans it ran in and, with traces on, its trace and span ids.
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().event_format(super::log_json::JsonLines).boxed()
        }
    };
    output.with_filter(filter).and_then(crate::infra::pool_waits::layer())
}
