//! W3C trace context across processes: what the spans of one mutation use
//! to join up when the work leaves the request — the `traceparent` stored
//! in an event's metadata (read by the relay and the projectors in other
//! processes) and carried along a change announcement (read by the API
//! process that pushes to subscribers).
//!
//! Every function here is a no-op unless [`enable`] was called, which the
//! start-up does only when an OTLP exporter is configured: without it no
//! `traceparent` is written and no context is parsed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (and metadata key) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Whether spans are exported: set once at start-up. A process-wide flag
/// because the tracing subscriber it mirrors is process-wide too.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns propagation on (an OTLP exporter is installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether propagation is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span context of the current span, if tracing is on and the span
/// belongs to a trace.
fn current() -> Option<SpanContext> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The `traceparent` of the current span, if tracing is on and the span
/// belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    current()
        .map(|sc| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The trace id and span id (hex) of the current span, for log lines.
pub fn current_ids() -> Option<(String, String)> {
    current().map(|sc| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The span context a `traceparent` names (`None` if it is malformed).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Makes `span` (just created, not yet entered) a child of the remote span
/// `traceparent` names, when tracing is on and it parses.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(sc) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// Relates `span` (just created, not yet entered), which works on a batch,
/// to the spans that caused its items: a link to each distinct one, and
/// when they are all one span, that span as parent too, so the common case
/// of one mutation reads as one trace.
pub fn link_batch<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    if !enabled() {
        return;
    }
    let mut seen: Vec<SpanContext> = Vec::new();
    for sc in traceparents.into_iter().filter_map(parse) {
        if !seen.iter().any(|s| s.span_id() == sc.span_id() && s.trace_id() == sc.trace_id()) {
            seen.push(sc);
        }
    }
    if let [only] = seen.as_slice() {
        let parent = opentelemetry::Context::new().with_remote_span_context(only.clone());
        let _ = span.set_parent(parent);
    }
    for sc in seen {
        span.add_link(sc);
    }
}

/// The `traceparent` a stored event's metadata carries, if any.
pub fn of_metadata(metadata: &serde_json::Value) -> Option<&str> {
    metadata.get(TRACEPARENT).and_then(|v| v.as_str())
}
