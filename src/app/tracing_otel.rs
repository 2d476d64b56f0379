//! Traces over OTLP/HTTP, configured by the standard `OTEL_*` variables.
//!
//! Only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is
//! not `true`) is there an exporter and a layer at all; otherwise the spans
//! of [`crate::infra::trace_context`]'s users stay disabled and cost a
//! callsite check. The exporter itself reads the endpoint, headers,
//! timeout and compression variables; `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`
//! picks `http/protobuf` (the default) or `http/json`; the SDK reads
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*` and `OTEL_RESOURCE_ATTRIBUTES`;
//! `OTEL_SERVICE_NAME` defaults to `eventfold`.

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

/// Keeps the tracer provider; [`TracesGuard::shutdown`] exports what is
/// still buffered.
pub struct TracesGuard {
    provider: SdkTracerProvider,
}

impl TracesGuard {
    /// Flushes the buffered spans and stops the exporter (off the async
    /// workers: the provider blocks until its batch task answers).
    pub async fn shutdown(self) {
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("traces not flushed: {e}"),
            Err(e) => eprintln!("traces not flushed: {e}"),
        }
    }
}

/// Whether the environment asks for traces.
pub fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OpenTelemetry layer and its guard, when [`configured`]; turns on
/// trace-context propagation. Must run inside the Tokio runtime (the batch
/// exporter is a task of it).
pub fn layer<S>() -> anyhow::Result<Option<(impl Layer<S>, TracesGuard)>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol()?)
        .build()
        .context("Failed to build the OTLP trace exporter")?;
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.trim().is_empty());
    let resource = Resource::builder()
        .with_service_name(service.unwrap_or_else(|| "eventfold".into()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider =
        SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
    let tracer = provider.tracer("eventfold");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(filter_fn(exported));
    crate::infra::trace_context::enable();
    Ok(Some((layer, TracesGuard { provider })))
}

/// What reaches the exporter: this program's spans (they are `debug`, so
/// that the log filter leaves them off when nothing is exported), and
/// events of `info` and above as span events.
fn exported(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        metadata.target().starts_with("eventfold") && *metadata.level() <= Level::DEBUG
    } else {
        *metadata.level() <= Level::INFO
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`:
/// `http/protobuf` (the default) or `http/json`. gRPC is not built in.
fn protocol() -> anyhow::Result<Protocol> {
    let chosen = ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    match chosen.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Protocol::HttpBinary),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported: use http/protobuf or http/json"
        ),
    }
}
