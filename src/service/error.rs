//! What a service call can fail with. The GraphQL layer maps each variant to
//! one `extensions.code` (in `graphql/error.rs`); the variants that are not
//! the client's doing keep their source error for the log.

use std::time::Duration;

use uuid::Uuid;

use crate::domain::money::MoneyError;
use crate::es::aggregate::{Rejection, RejectionKind};
use crate::es::command::CommandError;
use crate::es::store::StoreError;
use crate::infra::read_your_writes::WaitError;
use crate::read_models::ReadError;

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `VALIDATION_ERROR`: the input cannot be turned into a command or a
    /// query (bad amount, bad `minPosition`, negative `expectedVersion`…).
    #[error("{0}")]
    Invalid(String),
    /// The domain refused the command; nothing was appended. The code
    /// follows the rejection's kind.
    #[error("{source}")]
    Rejected { kind: RejectionKind, source: Source },
    /// `UNAUTHENTICATED`: no token where one is needed, or a token that
    /// does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// `FORBIDDEN`: the caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// `NOT_FOUND`: a queried row does not exist (or is not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// `CONCURRENCY_CONFLICT`: a pinned `expectedVersion` did not match, or
    /// retries ran out.
    #[error("concurrency conflict: stream is at version {actual}, expected {expected}")]
    Conflict { expected: i64, actual: i64 },
    /// `VALIDATION_ERROR`: a command id was reused for a different stream.
    #[error("commandId {0} was already used for another command")]
    CommandIdReused(Uuid),
    /// `CONCURRENCY_CONFLICT`: the same operation is already running (a
    /// second rebuild of one projection); try again once it has finished.
    #[error("{0}")]
    AlreadyRunning(String),
    /// `TIMEOUT`: the projections did not reach `minPosition` in time.
    #[error("projection did not reach the requested position within {0:?}")]
    Timeout(Duration),
    /// `INTERNAL`: the event store failed.
    #[error(transparent)]
    Store(StoreError),
    /// `INTERNAL`: a read table could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// `INTERNAL`: an operation (retry, rebuild) failed on its way.
    #[error(transparent)]
    Internal(Source),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(message.into())
    }

    pub(crate) fn internal(err: anyhow::Error) -> Self {
        ServiceError::Internal(err.into())
    }
}

impl From<MoneyError> for ServiceError {
    fn from(err: MoneyError) -> Self {
        ServiceError::Rejected { kind: err.kind(), source: Box::new(err) }
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(err: sea_orm::DbErr) -> Self {
        ServiceError::Read(ReadError::Db(err))
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { expected, actual, .. } => {
                ServiceError::Conflict { expected, actual }
            }
            other => ServiceError::Store(other),
        }
    }
}

impl From<WaitError> for ServiceError {
    fn from(err: WaitError) -> Self {
        match err {
            WaitError::Timeout(after) => ServiceError::Timeout(after),
        }
    }
}

impl<E> From<CommandError<E>> for ServiceError
where
    E: Rejection + std::error::Error + Send + Sync + 'static,
{
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Rejected(e) => {
                ServiceError::Rejected { kind: e.kind(), source: Box::new(e) }
            }
            CommandError::Conflict { expected, actual } => {
                ServiceError::Conflict { expected, actual }
            }
            CommandError::CommandIdReused(id) => ServiceError::CommandIdReused(id),
            CommandError::Store(e) => e.into(),
        }
    }
}
