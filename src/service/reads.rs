//! What every query shares: waiting for `minPosition`, and following the
//! announced changes of a read model.

use std::future::Future;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{ServiceError, Services};
use crate::es::envelope::{BadPosition, Position};
use crate::read_models::ReadModel;

impl Services {
    /// Waits until `projections` reached `min_position` (if given).
    pub(super) async fn wait_for(
        &self,
        projections: &[&str],
        min_position: Option<&str>,
    ) -> Result<(), ServiceError> {
        let Some(raw) = min_position else { return Ok(()) };
        let position: Position = raw
            .parse()
            .map_err(|e: BadPosition| ServiceError::invalid(format!("minPosition: {e}")))?;
        Ok(self.read_your_writes.wait(projections, position).await?)
    }

    /// A stream of freshly loaded rows of `model`, one per announced change
    /// (optionally of one id). If the subscriber falls behind, it skips to
    /// the current row instead of replaying every missed change.
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
                    let wanted = match rx.recv().await {
                        Ok(change) if model.is(&change) && id.is_none_or(|i| i == change.id) => {
                            change.id
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => match id {
                            Some(id) => id,
                            None => continue,
                        },
                        Err(RecvError::Closed) => return None,
                    };
                    if let Some(row) = load(services.clone(), wanted).await {
                        return Some((row, (rx, services, load)));
                    }
                }
            },
        )
    }
}
