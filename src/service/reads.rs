//! What every query shares: waiting for `minPosition`, and following the
//! announced changes of a read model.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use futures::Stream;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{ServiceError, Services};
use crate::es::envelope::{BadPosition, Position};
use crate::infra::read_your_writes::WaitError;
use crate::infra::trace_context;
use crate::read_models::ReadModel;

/// The `minPosition` waits of one request. The request's fields share one
/// deadline (a request waits at most `MIN_POSITION_TIMEOUT_MS` in all,
/// however many fields ask) and one wait per projection and position, so
/// many aliases of `account(minPosition: P)` wait once.
#[derive(Default)]
pub struct RequestWaits {
    deadline: OnceLock<Instant>,
    waits: Mutex<HashMap<(&'static str, Position), SharedWait>>,
}

type SharedWait = Shared<BoxFuture<'static, Result<(), WaitError>>>;

/// A query's `minPosition` as the client sent it, and the waits of the
/// request it came with (`None`: a call outside any request, which waits
/// on its own).
#[derive(Clone, Copy, Default)]
pub struct MinPosition<'a> {
    pub position: Option<&'a str>,
    pub request: Option<&'a RequestWaits>,
}

impl Services {
    /// Waits until `projections` reached `min.position` (if given), within
    /// the deadline of `min.request`.
    pub(super) async fn wait_for(
        &self,
        projections: &[&'static str],
        min: MinPosition<'_>,
    ) -> Result<(), ServiceError> {
        let Some(raw) = min.position else { return Ok(()) };
        let position: Position = raw
            .parse()
            .map_err(|e: BadPosition| ServiceError::invalid(format!("minPosition: {e}")))?;
        let alone = RequestWaits::default();
        let request = min.request.unwrap_or(&alone);
        let rw = &self.read_your_writes;
        let deadline = *request.deadline.get_or_init(|| Instant::now() + rw.timeout);
        for &projection in projections {
            let wait = {
                let mut waits = request.waits.lock().unwrap_or_else(|p| p.into_inner());
                let shared = waits
                    .entry((projection, position))
                    .or_insert_with(|| rw.wait(projection, position, deadline).boxed().shared());
                shared.clone()
            };
            wait.await?;
        }
        Ok(())
    }

    /// A stream of freshly loaded rows of `model`, one per announced change
    /// (optionally of one id). If the subscriber falls behind, it skips to
    /// the current row instead of replaying every missed change. Each push
    /// (loading the row for this subscriber) is a `subscription push` span,
    /// a child of the projector apply that announced the change.
    pub(super) fn changed_rows<T, F, Fut>(
        self: Arc<Self>,
        model: ReadModel,
        id: Option<Uuid>,
        load: F,
    ) -> impl Stream<Item = T> + use<T, F, Fut>
    where
        T: Send + 'static,
        F: Fn(Arc<Services>, Uuid) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<T>> + Send,
    {
        let receiver = self.changes.subscribe();
        futures::stream::unfold(
            (receiver, self, load),
            move |(mut rx, services, load)| async move {
                loop {
                    let (wanted, traceparent) = match rx.recv().await {
                        Ok(change) if model.is(&change) && id.is_none_or(|i| i == change.id) => {
                            (change.id, change.traceparent)
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => match id {
                            Some(id) => (id, None),
                            None => continue,
                        },
                        Err(RecvError::Closed) => return None,
                    };
                    let span = tracing::debug_span!(
                        "subscription push",
                        otel.name = %format_args!("subscription push {}", model.as_str()),
                        model = model.as_str(),
                        id = %wanted,
                    );
                    trace_context::continue_from(&span, traceparent.as_deref());
                    if let Some(row) = load(services.clone(), wanted).instrument(span).await {
                        return Some((row, (rx, services, load)));
                    }
                }
            },
        )
    }
}
