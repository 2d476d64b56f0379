//! The projection contract. A projection folds events into read tables
//! inside a transaction of the read database that the runtime opens and
//! commits together with the projection's checkpoint.

use async_trait::async_trait;
use sea_orm::DatabaseTransaction;

use super::changes::Change;
use super::envelope::RecordedEvent;

/// Why a projection could not apply an event. The text goes to logs and to
/// the dead-letter record, never to API clients.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProjectionError(pub String);

impl ProjectionError {
    pub fn new(err: impl std::fmt::Display) -> Self {
        ProjectionError(err.to_string())
    }
}

impl From<sea_orm::DbErr> for ProjectionError {
    fn from(err: sea_orm::DbErr) -> Self {
        ProjectionError::new(err)
    }
}

impl From<super::upcast::DecodeError> for ProjectionError {
    fn from(err: super::upcast::DecodeError) -> Self {
        ProjectionError::new(err)
    }
}

#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and the name shown by `projections`.
    fn name(&self) -> &'static str;

    /// The stream types whose events this projection reads; `None` means
    /// all. A transport may skip other events without a transaction.
    fn stream_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The read tables this projection owns alone: a rebuild replaces
    /// exactly these. Empty means the projection cannot be rebuilt.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies one event and returns the read-model rows it changed. Events
    /// a projection does not care about return an empty list.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError>;

    /// Applies events in order, as `apply` would one by one. Projections
    /// override it to read and write each row once per batch.
    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        let mut changes = Vec::new();
        for event in events {
            changes.extend(self.apply(txn, event).await?);
        }
        Ok(changes)
    }
}
