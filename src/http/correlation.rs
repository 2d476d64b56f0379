//! The correlation id of a request: the one place that picks it.
//!
//! A client names its business transaction with `X-Correlation-Id` (1 to
//! 128 printable ASCII characters, no spaces); a request without one takes
//! its trace id when traces are exported (so the trace and the events of one
//! transaction find each other), else a new id (a UUIDv7). Every event the request's mutations record carries it,
//! and so do the events process managers record in reaction to them. The
//! response echoes it in the same header. A header that is not a valid id
//! is refused (400, `VALIDATION_ERROR`) rather than replaced, so a client
//! never searches for an id that was silently dropped.

use axum::http::{HeaderMap, HeaderName};

use crate::infra::trace_context;
use crate::service::CorrelationId;

pub(super) const HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The request's correlation id, or why its header is refused.
pub(super) fn pick(headers: &HeaderMap) -> Result<CorrelationId, String> {
    let Some(value) = headers.get(&HEADER) else {
        let traced = trace_context::current_ids().and_then(|(trace, _)| trace.parse().ok());
        return Ok(traced.unwrap_or_default());
    };
    let value = value.to_str().unwrap_or("\u{0}");
    value
        .parse()
        .map_err(|e: crate::es::envelope::BadCorrelationId| format!("X-Correlation-Id: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_valid_header_is_kept_and_a_missing_one_is_made_up() {
        let mut headers = HeaderMap::new();
        let made_up = pick(&headers).unwrap();
        assert!(uuid::Uuid::parse_str(made_up.as_str()).is_ok());
        headers.insert(HEADER, HeaderValue::from_static("checkout-17"));
        assert_eq!(pick(&headers).unwrap().as_str(), "checkout-17");
        headers.insert(HEADER, HeaderValue::from_static("two words"));
        assert!(pick(&headers).is_err());
    }
}
