//! The HTTP request as the root span of a trace (`http request`, a server
//! span), continuing the client's trace when it sends a W3C `traceparent`
//! header. Only when traces are exported; otherwise the request passes
//! untouched.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::infra::trace_context::{self, TRACEPARENT};

pub(super) async fn request_span(request: Request, next: Next) -> Response {
    if !trace_context::enabled() {
        return next.run(request).await;
    }
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let span = tracing::debug_span!(
        "http request",
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    let incoming = request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    trace_context::continue_from(&span, incoming);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}
