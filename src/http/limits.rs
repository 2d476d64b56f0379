//! Limits of the HTTP layer: the request timeout and the body size.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::graphql_error;
use super::negotiate::{MediaType, response_media_type};

/// Ends a request that takes longer than `limit` (reading its body
/// included) with 503 and `TIMEOUT`. A mutation cut short may still have
/// been applied; a client retrying it with its `commandId` is safe.
pub(super) async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let media = response_media_type(request.headers()).unwrap_or(MediaType::Json);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => graphql_error(
            StatusCode::SERVICE_UNAVAILABLE,
            media,
            "TIMEOUT",
            &format!("the request took longer than {} ms", limit.as_millis()),
        ),
    }
}

/// Why a body was not read.
pub(super) enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The client broke off or sent malformed framing.
    Unreadable,
}

/// After the limit, how much more of a body is read (and dropped) before
/// answering 413, so that an ordinary client reads the answer instead of
/// a connection reset by a server that stopped reading.
const DRAIN: usize = 4 * 1_048_576;

/// Reads a body of at most `limit` bytes.
pub(super) async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > limit.saturating_add(DRAIN) {
            return Err(BodyError::TooLarge);
        } else {
            kept = Vec::new();
        }
    }
    if seen > limit { Err(BodyError::TooLarge) } else { Ok(Bytes::from(kept)) }
}
