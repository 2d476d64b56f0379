//! Applies events to one projection, effectively exactly once and in each
//! stream's order.
//!
//! A batch and the new checkpoint go in one read-database transaction
//! (skipping what the checkpoint already covers), then the changed rows are
//! announced. A crash before commit replays the batch, a crash after it
//! resumes past it.
//!
//! Failures are sorted ([`is_transient`]). One that may pass (a lost
//! connection, a timeout, a deadlock, an unavailable write side) is retried
//! with capped exponential backoff for as long as it lasts, the projection
//! reported `FAILING` meanwhile; nothing is skipped. One that would fail
//! again on the same input isolates the event (the batch is retried event
//! by event) and, after a few attempts, parks it in `dead_letters`. From
//! then on the stream waits: every later event of that stream is parked
//! behind it, so no row ever shows a later event without an earlier one;
//! other streams go on. An operator's retry (see `dead_letters`) applies a
//! stream's parked events in order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::dead_letters;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use super::checkpoint::{
    CheckpointError, Claim, Fenced, Locked, clear_parked, lock_checkpoint, mark_parked,
    save_checkpoint,
};
use super::errors::is_transient;
use super::failure::{Failure, FailureKind};
use super::monitor::{ProjectionMonitor, ProjectionStatus};
use super::writes::{Member, write_batch};
use crate::es::changes::{Change, ChangeBus};
use crate::es::envelope::{Position, RecordedEvent, StreamKey};
use crate::es::projector::{Projection, ProjectionError};
use crate::infra::trace_context::{self, of_metadata};

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub batch_size: u64,
    /// Attempts at an event that fails deterministically before it is parked.
    pub max_attempts: u32,
    /// Longest pause between two attempts after a transient failure.
    pub max_backoff: Duration,
    /// Fallback poll when no commit signal arrives.
    pub poll_interval: Duration,
    /// After a small batch, wait this long before reading again so the next
    /// batch is larger: fewer transactions per event under load, at the cost
    /// of this much latency when idle.
    pub linger: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            batch_size: 500,
            max_attempts: 5,
            max_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            linger: Duration::from_millis(3),
        }
    }
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The caller's lease was taken over: it must stop consuming.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// The read database failed while parking an event (after the
    /// transient failures that come with it were retried).
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl From<CheckpointError> for ApplyError {
    fn from(err: CheckpointError) -> Self {
        match err {
            CheckpointError::Fenced(f) => ApplyError::Fenced(f),
            CheckpointError::Db(e) => ApplyError::Projection(e.into()),
        }
    }
}

/// A failed attempt: fenced off, or the projection's failure (the
/// read-model group's attempts too).
pub(super) enum Attempt {
    Fenced(Fenced),
    Failed(ProjectionError),
}

impl From<CheckpointError> for Attempt {
    fn from(err: CheckpointError) -> Self {
        match err {
            CheckpointError::Fenced(f) => Attempt::Fenced(f),
            CheckpointError::Db(e) => Attempt::Failed(e.into()),
        }
    }
}

impl From<ProjectionError> for Attempt {
    fn from(err: ProjectionError) -> Self {
        Attempt::Failed(err)
    }
}

impl From<sea_orm::DbErr> for Attempt {
    fn from(err: sea_orm::DbErr) -> Self {
        Attempt::Failed(err.into())
    }
}

/// Applies events of one projection under a checkpoint [`Claim`] (the
/// projection name, or `name#partition` when the log is partitioned).
#[derive(Clone)]
pub struct Applier {
    pub read_db: DatabaseConnection,
    pub projection: Arc<dyn Projection>,
    pub changes: Arc<dyn ChangeBus>,
    pub monitor: Arc<ProjectionMonitor>,
    pub settings: RuntimeSettings,
}

impl Applier {
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Applies the events after the checkpoint of `claim`, then moves the
    /// checkpoint to the last event or to `watermark` (a position up to which
    /// the caller guarantees it has delivered every event of this key),
    /// whichever is later. Returns the new checkpoint.
    ///
    /// A batch of events is applied in a `projector apply` span (projection,
    /// batch size) linked to the spans that appended them.
    pub async fn apply(
        &self,
        claim: &Claim,
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> Result<Position, ApplyError> {
        let span = match events {
            [] => tracing::Span::none(),
            _ => tracing::debug_span!(
                "projector apply",
                otel.name = %format_args!("projector apply {}", self.name()),
                projection = self.name(),
                batch_size = events.len(),
            ),
        };
        trace_context::link_batch(&span, events.iter().filter_map(|e| of_metadata(&e.metadata)));
        self.apply_in_span(claim, events, watermark).instrument(span).await
    }

    async fn apply_in_span(
        &self,
        claim: &Claim,
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> Result<Position, ApplyError> {
        let rejection = match self.apply_retrying(claim, events, watermark).await? {
            Ok(checkpoint) => return Ok(checkpoint),
            Err(rejection) => rejection,
        };
        // A deterministic failure: find the event that causes it.
        if events.len() > 1 {
            tracing::warn!(projection = self.name(), error = %rejection, "batch failed; applying one by one");
        }
        for event in events {
            self.apply_with_retries(claim, event).await?;
        }
        Ok(self.apply_retrying(claim, &[], watermark).await??)
    }

    /// [`Applier::apply_once`], retried for as long as it fails
    /// transiently. The inner result is a deterministic failure.
    async fn apply_retrying(
        &self,
        claim: &Claim,
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> Result<Result<Position, ProjectionError>, ApplyError> {
        let mut failures = 0;
        loop {
            match self.apply_once(claim, events, watermark).await {
                Ok((checkpoint, changes)) => {
                    self.recovered(failures);
                    self.monitor.progress.committed(&claim.key, checkpoint);
                    self.committed(changes);
                    return Ok(Ok(checkpoint));
                }
                Err(Attempt::Fenced(f)) => return Err(f.into()),
                Err(Attempt::Failed(e)) if is_transient(&e) => {
                    failures += 1;
                    self.transient(&e, failures).await;
                }
                Err(Attempt::Failed(e)) => {
                    self.recovered(failures);
                    return Ok(Err(e));
                }
            }
        }
    }

    /// Announces the rows a commit changed, with the current span's trace
    /// context for the pushes that follow.
    pub(super) fn committed(&self, mut changes: Vec<Change>) {
        if let Some(traceparent) = trace_context::current_traceparent() {
            for change in &mut changes {
                change.traceparent = Some(traceparent.clone());
            }
        }
        self.changes.publish(changes);
    }

    /// Reports a transient failure and waits before the next attempt.
    async fn transient(&self, error: &ProjectionError, failures: u32) {
        self.monitor.transient_failure(self.name(), error, failures);
        let backoff = Duration::from_millis(50u64 << failures.min(10));
        tokio::time::sleep(backoff.min(self.settings.max_backoff)).await;
    }

    fn recovered(&self, failures: u32) {
        if failures > 0 {
            tracing::info!(projection = self.name(), failures, "recovered");
            self.monitor.set(self.name(), ProjectionStatus::Running, None);
        }
    }

    async fn apply_once(
        &self,
        claim: &Claim,
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> Result<(Position, Vec<Change>), Attempt> {
        let started = std::time::Instant::now();
        let txn = self.read_db.begin().await?;
        let locked = lock_checkpoint(&txn, self.name(), claim).await?;
        let fresh = events.iter().filter(|e| e.position > locked.at).collect();
        let share = Share { name: self.name(), key: &claim.key, locked, fresh };
        let parked = match share.fresh.is_empty() {
            true => HashSet::new(),
            false => parked_streams(&txn, std::slice::from_ref(&share)).await?,
        };
        let newest = share.fresh.iter().map(|e| e.position).max();
        let reached = locked.at.max(newest.unwrap_or_default()).max(watermark.unwrap_or_default());
        let moves = match reached > locked.at {
            true => vec![(claim, reached)],
            false => Vec::new(),
        };
        let member =
            Member { projection: self.projection.as_ref(), share: &share, span: Span::none() };
        let changes = write_batch(&txn, std::slice::from_ref(&member), &parked, &moves)
            .await?
            .pop()
            .unwrap_or_default();
        txn.commit().await?;
        record_applied(self.name(), &share.fresh, started.elapsed().as_secs_f64());
        Ok((reached, changes))
    }

    /// Applies one event alone, retrying transient failures for as long as
    /// they last and deterministic ones a few times, then parks it.
    async fn apply_with_retries(
        &self,
        claim: &Claim,
        event: &RecordedEvent,
    ) -> Result<Position, ApplyError> {
        let mut attempts = 0;
        loop {
            match self.apply_retrying(claim, std::slice::from_ref(event), None).await? {
                Ok(checkpoint) => return Ok(checkpoint),
                Err(e) => {
                    attempts += 1;
                    if attempts >= self.settings.max_attempts {
                        return self.park(claim, event, &e, attempts).await;
                    }
                    tokio::time::sleep(Duration::from_millis(10 << attempts.min(5))).await;
                }
            }
        }
    }

    /// Parks `event` (and with it, its stream) and moves the checkpoint
    /// past it.
    async fn park(
        &self,
        claim: &Claim,
        event: &RecordedEvent,
        error: &ProjectionError,
        attempts: u32,
    ) -> Result<Position, ApplyError> {
        let name = self.name();
        let failure = Failure::new(FailureKind::of(error), error);
        tracing::error!(projection = name, reference = ?failure.reference, position = %event.position, event_type = %event.event_type, stream = %event.stream.stream_id, error = %error, "event parked as dead letter; its stream waits");
        let mut failures = 0;
        loop {
            match self.park_once(claim, event, &failure, error, attempts).await {
                Ok(checkpoint) => {
                    self.monitor.set(name, ProjectionStatus::Running, Some(failure));
                    self.monitor.progress.committed(&claim.key, checkpoint);
                    return Ok(checkpoint);
                }
                Err(Attempt::Fenced(f)) => return Err(f.into()),
                Err(Attempt::Failed(e)) if is_transient(&e) => {
                    failures += 1;
                    self.transient(&e, failures).await;
                }
                Err(Attempt::Failed(e)) => return Err(e.into()),
            }
        }
    }

    async fn park_once(
        &self,
        claim: &Claim,
        event: &RecordedEvent,
        failure: &Failure,
        error: &ProjectionError,
        attempts: u32,
    ) -> Result<Position, Attempt> {
        let txn = self.read_db.begin().await?;
        let checkpoint = lock_checkpoint(&txn, self.name(), claim).await?.at;
        if event.position > checkpoint {
            let detail = error.to_string();
            park_row(&txn, self.name(), event, failure, &detail, attempts as i32).await?;
            mark_parked(&txn, &claim.key).await?;
            save_checkpoint(&txn, claim, event.position).await?;
        }
        txn.commit().await?;
        Ok(checkpoint.max(event.position))
    }
}

/// One projection's share of a locked batch: its name, the checkpoint key
/// it holds, the checkpoint as locked and the batch's events it has yet to
/// apply.
pub(super) struct Share<'a> {
    pub name: &'static str,
    pub key: &'a str,
    pub locked: Locked,
    pub fresh: Vec<&'a RecordedEvent>,
}

/// The (projection, stream) pairs among `shares`' fresh events that have a
/// parked event, in `txn` (which holds their checkpoints). Only shares whose
/// checkpoint is marked ([`Locked::parked`]) are looked at: every parking
/// transaction marks the key under the lock this one holds, so an unmarked
/// key has no parked stream. A marked share whose projection has no parked
/// event at all is unmarked here, and the next batch needs no look.
pub(super) async fn parked_streams(
    txn: &DatabaseTransaction,
    shares: &[Share<'_>],
) -> Result<HashSet<(&'static str, StreamKey)>, sea_orm::DbErr> {
    let marked: Vec<&Share> =
        shares.iter().filter(|s| s.locked.parked && !s.fresh.is_empty()).collect();
    if marked.is_empty() {
        return Ok(HashSet::new());
    }
    let names: Vec<&str> = marked.iter().map(|s| s.name).collect();
    let holding: HashSet<String> = dead_letters::Entity::find()
        .select_only()
        .column(dead_letters::Column::Projection)
        .filter(dead_letters::Column::Projection.is_in(names.iter().copied()))
        .distinct()
        .into_tuple::<String>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let clean: Vec<&str> =
        marked.iter().filter(|s| !holding.contains(s.name)).map(|s| s.key).collect();
    clear_parked(txn, &clean).await?;
    let marked: Vec<&Share> = marked.into_iter().filter(|s| holding.contains(s.name)).collect();
    if marked.is_empty() {
        return Ok(HashSet::new());
    }
    let names: Vec<&str> = marked.iter().map(|s| s.name).collect();
    let mut ids: Vec<Uuid> =
        marked.iter().flat_map(|s| &s.fresh).map(|e| e.stream.stream_id).collect();
    ids.sort();
    ids.dedup();
    let rows: Vec<(String, String, Uuid)> = dead_letters::Entity::find()
        .select_only()
        .column(dead_letters::Column::Projection)
        .column(dead_letters::Column::StreamType)
        .column(dead_letters::Column::StreamId)
        .filter(dead_letters::Column::Projection.is_in(names.iter().copied()))
        .filter(dead_letters::Column::StreamId.is_in(ids))
        .distinct()
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(p, t, id)| {
            let name = names.iter().copied().find(|n| *n == p)?;
            Some((name, StreamKey::new(&t, id)))
        })
        .collect())
}

/// Records `event` as parked for `projection` with `failure`, and the
/// error's full text (`detail`, for operators; never shown by the API).
/// Whoever parks a stream's first event also marks the checkpoint key it
/// holds ([`mark_parked`]); events parked behind it find the key marked.
pub(super) async fn park_row(
    txn: &DatabaseTransaction,
    projection: &str,
    event: &RecordedEvent,
    failure: &Failure,
    detail: &str,
    attempts: i32,
) -> Result<(), sea_orm::DbErr> {
    dead_letters::Entity::insert(dead_letters::ActiveModel {
        id: NotSet,
        projection: Set(projection.to_owned()),
        position: Set(event.position.pos),
        event_id: Set(event.event_id),
        stream_type: Set(event.stream.stream_type.clone()),
        stream_id: Set(event.stream.stream_id),
        event_type: Set(event.event_type.clone()),
        error: Set(detail.to_owned()),
        error_kind: Set(failure.kind.as_str().to_owned()),
        error_reference: Set(failure.reference),
        attempts: Set(attempts),
        parked_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([dead_letters::Column::Projection, dead_letters::Column::EventId])
            .update_columns([
                dead_letters::Column::Error,
                dead_letters::Column::ErrorKind,
                dead_letters::Column::ErrorReference,
                dead_letters::Column::Attempts,
            ])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Records a committed batch of `projection`: its size, how long its
/// transaction took, and each event's age from its append to this commit.
/// Nothing for an empty batch.
pub(super) fn record_applied(projection: &'static str, fresh: &[&RecordedEvent], elapsed: f64) {
    if fresh.is_empty() {
        return;
    }
    let labels = [("projection", projection)];
    metrics::histogram!("eventfold_projection_batch_size", &labels).record(fresh.len() as f64);
    metrics::histogram!("eventfold_projection_apply_duration_seconds", &labels).record(elapsed);
    let applied_age = metrics::histogram!("eventfold_projection_applied_age_seconds", &labels);
    let now = chrono::Utc::now();
    for event in fresh {
        let age = (now - event.recorded_at).num_microseconds().unwrap_or(0).max(0);
        applied_age.record(age as f64 / 1e6);
    }
}
