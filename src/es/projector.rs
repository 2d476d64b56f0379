//! The projection contract. A projection folds events into read tables
//! inside a transaction of the read database that the runtime opens and
//! commits together with the projection's checkpoint.

use async_trait::async_trait;
use sea_orm::DatabaseTransaction;

use super::changes::Change;
use super::envelope::RecordedEvent;

/// Why a projection could not apply an event. The text goes to logs and to
/// the dead-letter record, never to API clients.
///
/// The runtime retries what may pass ([`ProjectionError::Unavailable`], and
/// the database errors it classifies as transient: lost connections,
/// timeouts, deadlocks…) for as long as it lasts, and parks an event only
/// for what would fail again on the same input.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read database failed; the runtime decides whether it may pass.
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// The event cannot be applied as it is (unreadable, out of order,
    /// against an invariant of the read model): retrying fails again.
    #[error("{0}")]
    Rejected(String),
    /// Something the projection depends on is unavailable for now (say,
    /// the write side a process manager commands); worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl ProjectionError {
    /// A rejection of the event, see [`ProjectionError::Rejected`].
    pub fn new(err: impl std::fmt::Display) -> Self {
        ProjectionError::Rejected(err.to_string())
    }

    /// `event` cannot be applied because its stream's row is at
    /// `row_version`, not at the version just before it: an earlier event
    /// is missing. Reported, never papered over.
    pub fn version_gap(event: &RecordedEvent, row_version: i64) -> Self {
        ProjectionError::Rejected(format!(
            "{} v{} of {}/{} does not follow the read model's v{row_version}: an earlier event is missing",
            event.event_type, event.version, event.stream.stream_type, event.stream.stream_id
        ))
    }
}

impl From<super::upcast::DecodeError> for ProjectionError {
    fn from(err: super::upcast::DecodeError) -> Self {
        ProjectionError::new(err)
    }
}

/// Whether `event` is the next one for a read-model row at `row_version`:
/// `Ok(true)` to apply it, `Ok(false)` when the row already reflects it (a
/// replay), and a [`ProjectionError::version_gap`] when events are missing
/// in between.
pub fn follows(row_version: i64, event: &RecordedEvent) -> Result<bool, ProjectionError> {
    match event.version - row_version {
        1 => Ok(true),
        ..=0 => Ok(false),
        _ => Err(ProjectionError::version_gap(event, row_version)),
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
