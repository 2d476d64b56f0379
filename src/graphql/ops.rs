//! Operational queries: projections with their progress and parked events.
//!
//! Failures show their kind and the reference of the server log line with
//! the detail; a driver's text (SQL, pool messages) is never shown.

use async_graphql::{ComplexObject, Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pagination::{bad_cursor, page_size};
use super::{ApiError, caller, services};
use crate::service::{self, Failure, LAG_CAP};

/// What kind of failure a projection met.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "service::FailureKind")]
pub enum FailureKind {
    /// May pass by itself (lost connection, timeout, deadlock, the write
    /// side unavailable); retried for as long as it lasts.
    Transient,
    /// The projector refused the event as it is (the reason is shown).
    Rejected,
    /// The read database refused the event's changes (a constraint, a
    /// trigger); the detail is in the server log.
    Database,
    /// A transport entry could not be trusted; the event store was read
    /// instead.
    Untrusted,
    /// Parked behind an earlier parked event of its stream.
    Waiting,
    /// The runner failed (store or transport unreachable) and restarts.
    Runner,
}

#[derive(SimpleObject)]
pub struct DeadLetter {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub event_type: String,
    /// What went wrong, as it may be shown: the kind, a projector's own
    /// reason, and the reference to look up in the server log.
    pub error: String,
    pub error_kind: FailureKind,
    /// The reference of the server log line with the detail (none for an
    /// event that only waits behind another).
    pub error_reference: Option<String>,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
    /// Pass as `after` to `deadLetters` for the page after this one.
    pub cursor: String,
}

impl From<service::DeadLetter> for DeadLetter {
    fn from(d: service::DeadLetter) -> Self {
        DeadLetter {
            position: d.position,
            event_id: d.event_id,
            stream_type: d.stream_type,
            stream_id: d.stream_id,
            event_type: d.event_type,
            error: d.failure.to_string(),
            error_kind: d.failure.kind.into(),
            error_reference: reference(&d.failure),
            attempts: d.attempts,
            parked_at: d.parked_at,
            cursor: d.position.to_string(),
        }
    }
}

fn reference(failure: &Failure) -> Option<String> {
    failure.reference.map(|r| r.to_string())
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProjectionInfo {
    pub name: String,
    /// The checkpoint: position of the last event applied.
    pub position: String,
    /// Committed events not yet applied, counted up to `lagCap` (a value of
    /// `lagCap` means at least that many).
    pub lag: i64,
    /// The most `lag` counts.
    pub lag_cap: i64,
    /// RUNNING, FAILING, STOPPED, or REMOTE when it runs in another process.
    pub status: String,
    /// The last failure, as it may be shown (see `DeadLetter.error`).
    pub last_error: Option<String>,
    pub last_error_kind: Option<FailureKind>,
    pub last_error_reference: Option<String>,
    /// How many events are parked (or wait behind a parked one).
    pub dead_letter_count: i64,
    /// The checkpoint of each partition (one entry without Redis);
    /// `position` is the lowest.
    pub partitions: Vec<PartitionCheckpoint>,
}

/// How far one partition of a projection has applied.
#[derive(SimpleObject)]
pub struct PartitionCheckpoint {
    pub partition: i32,
    /// Position of the last event applied in this partition.
    pub position: String,
}

#[ComplexObject]
impl ProjectionInfo {
    /// Parked events, oldest first, `first` (default 20, at most 100) at a
    /// time after the `cursor` of the last one seen.
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<DeadLetter>> {
        let limit = page_size(first)?;
        let after = match &after {
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| bad_cursor())?),
            None => None,
        };
        let page = services(ctx)?
            .dead_letters(caller(ctx)?, &self.name, after, limit)
            .await
            .map_err(ApiError::from)?;
        Ok(page.items.into_iter().map(DeadLetter::from).collect())
    }
}

#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// Every projection with its progress and parked events.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionInfo>> {
        let reports = services(ctx)?.projections(caller(ctx)?).await.map_err(ApiError::from)?;
        let out = reports
            .into_iter()
            .map(|r| {
                let last = r.state.as_ref().and_then(|s| s.last_error.clone());
                ProjectionInfo {
                    name: r.name.to_owned(),
                    position: r.checkpoint.to_string(),
                    lag: r.lag as i64,
                    lag_cap: LAG_CAP as i64,
                    status: r.state.as_ref().map_or("REMOTE", |s| s.status.as_str()).to_owned(),
                    last_error: last.as_ref().map(Failure::to_string),
                    last_error_kind: last.as_ref().map(|f| f.kind.into()),
                    last_error_reference: last.as_ref().and_then(reference),
                    dead_letter_count: r.dead_letters as i64,
                    partitions: r
                        .partitions
                        .iter()
                        .zip(0..)
                        .map(|(p, partition)| PartitionCheckpoint {
                            partition,
                            position: p.to_string(),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(out)
    }
}
