//! Several projections of one read database applied together: one
//! transaction per batch for all of them.
//!
//! The transaction takes every member's advisory lock (shared) and reads
//! and locks every member's checkpoint in one statement, then applies to
//! each member the events it reads that lie past its own checkpoint (a
//! member a rebuild moved ahead skips what it already has) and moves every
//! checkpoint, on PostgreSQL in one more statement for a live batch (see
//! the `writes` module): BEGIN, two statements, COMMIT. Once the group has
//! committed a partition's checkpoints it knows where they are, and a live
//! batch is one statement with no transaction around it
//! ([`OneTrip`](super::writes::OneTrip)): locks, checkpoints checked, writes,
//! all or nothing; refused, the batch goes through the transaction. The
//! rows each member changed are announced after the commit, in that
//! member's `projector apply` span.
//!
//! What stays per projection: checkpoints (and so status, lag and
//! `minPosition`), dead letters and rebuilds. A deterministic failure of
//! any member rolls the shared transaction back and the batch is applied
//! again member by member through each one's [`Applier`], which isolates
//! the poison event and parks only that member's stream; the other
//! members apply it in their own transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbBackend, TransactionTrait};

use super::applier::{ApplyError, Attempt, Share, parked_streams, record_applied};
use super::checkpoint::{Claim, Locked, lock_checkpoints, projection_lock_id};
use super::errors::{is_refused, is_transient};
use super::failure::Failure;
use super::monitor::ProjectionStatus;
use super::writes::{Member, OneTrip, write_batch};
use super::{Applier, ProjectionMonitor};
use crate::es::changes::Change;
use crate::es::envelope::{Position, RecordedEvent};
use crate::infra::trace_context::{self, of_metadata};

/// Projections applied together. A group of one is a projection alone.
#[derive(Clone)]
pub struct ProjectionGroup {
    /// Names the group's consumer group, leases and workers in the
    /// transport (a member's name for a group of one).
    pub name: &'static str,
    /// The members (at least one), all on one read database and one
    /// monitor, with the same settings.
    pub members: Vec<Applier>,
    /// Where this group last committed each checkpoint key, as far as it
    /// knows: what a one-statement commit expects to find.
    pub committed: Committed,
}

impl ProjectionGroup {
    /// The group of `members`, named `name`, knowing no checkpoint yet.
    pub fn new(name: &'static str, members: Vec<Applier>) -> Self {
        ProjectionGroup { name, members, committed: Committed::default() }
    }
}

/// Checkpoint keys and where a group last committed them (shared by the
/// clones of a group, so by its partitions' tasks, each writing its own
/// keys), and how many batches went in one statement.
#[derive(Clone, Default)]
pub struct Committed {
    at: Arc<Mutex<HashMap<String, Position>>>,
    one_statement: Arc<AtomicU64>,
}

impl Committed {
    /// How many batches this group committed in one statement, without a
    /// transaction around it.
    pub fn one_statement_commits(&self) -> u64 {
        self.one_statement.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Position>> {
        self.at.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where each of `claims` was last committed, if all are known.
    fn of(&self, claims: &[Claim]) -> Option<Vec<Position>> {
        let at = self.lock();
        claims.iter().map(|c| at.get(&c.key).copied()).collect()
    }

    fn set(&self, claims: &[Claim], reached: &[Position]) {
        let mut at = self.lock();
        for (claim, reached) in claims.iter().zip(reached) {
            at.insert(claim.key.clone(), *reached);
        }
    }

    fn forget(&self, claims: &[Claim]) {
        let mut at = self.lock();
        for claim in claims {
            at.remove(&claim.key);
        }
    }
}

/// Why a group batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A member's checkpoint is behind what the caller has delivered to
    /// the group (something moved it back): applying the batch would skip
    /// the events in between for that member. Nothing was written; the
    /// caller catches the group up from the event store.
    #[error("projection {projection} is behind its group (at {at}, the group at {floor})")]
    Behind { projection: &'static str, at: Position, floor: Position },
    /// Recording the group's progress in the transport failed.
    #[error(transparent)]
    Transport(#[from] redis::RedisError),
}

/// What one member got from a committed batch.
struct Applied {
    reached: Position,
    changes: Vec<Change>,
    span: tracing::Span,
}

impl ProjectionGroup {
    pub fn monitor(&self) -> &ProjectionMonitor {
        &self.members[0].monitor
    }

    fn read_db(&self) -> &DatabaseConnection {
        &self.members[0].read_db
    }

    /// The members' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.members.iter().map(|m| m.name())
    }

    /// Whether any member reads any of `events`: if none does, they need
    /// no transaction (the caller records that they passed, as for a
    /// watermark).
    pub fn reads_any(&self, events: &[RecordedEvent]) -> bool {
        events.iter().any(|e| self.members.iter().any(|m| reads(m, e)))
    }

    /// Records `status` for every member.
    pub fn set(&self, status: ProjectionStatus, last_error: Option<Failure>) {
        for name in self.names() {
            self.monitor().set(name, status, last_error.clone());
        }
    }

    /// Applies `events` (every event of the caller's key, in order) to each
    /// member past its checkpoint, under `claims` (one per member, in
    /// order), and moves every checkpoint to the last event or to
    /// `watermark`, whichever is later. `floor`: the caller has already
    /// had every member applied up to there; a member found behind it is
    /// refused ([`GroupError::Behind`]). Returns each member's checkpoint.
    pub async fn apply(
        &self,
        claims: &[Claim],
        events: &[RecordedEvent],
        watermark: Option<Position>,
        floor: Position,
    ) -> Result<Vec<Position>, GroupError> {
        match self.one_trip(claims, events, watermark).await {
            Ok(Some(applied)) => return Ok(self.committed(claims, applied)),
            Ok(None) => {}
            // Whatever it was (refused: a checkpoint not where this group
            // left it, an event its statement could not apply; or a
            // failure), the transaction below finds out and handles it.
            Err(e) => match is_refused(&e) {
                true => metrics::counter!(
                    "eventfold_projection_one_statement_refused_total",
                    "group" => self.name
                )
                .increment(1),
                false => {
                    tracing::debug!(group = self.name, error = %e, "one-statement commit failed")
                }
            },
        }
        // Learnt again when the transaction commits.
        self.committed.forget(claims);
        let mut failures = 0;
        let rejection = loop {
            match self.apply_once(claims, events, watermark, floor).await {
                Ok(Err(behind)) => return Err(behind),
                Ok(Ok(applied)) => {
                    self.recovered(failures);
                    return Ok(self.committed(claims, applied));
                }
                Err(Attempt::Fenced(f)) => return Err(ApplyError::Fenced(f).into()),
                Err(Attempt::Failed(e)) if is_transient(&e) => {
                    failures += 1;
                    for name in self.names() {
                        self.monitor().transient_failure(name, &e, failures);
                    }
                    let backoff = Duration::from_millis(50u64 << failures.min(10));
                    tokio::time::sleep(backoff.min(self.members[0].settings.max_backoff)).await;
                }
                Err(Attempt::Failed(e)) => {
                    self.recovered(failures);
                    break e;
                }
            }
        };
        // A member refuses the batch: each applies it alone, and the
        // failing one isolates and parks the event that causes it.
        tracing::warn!(group = self.name, error = %rejection, "group batch failed; applying member by member");
        let delivered = delivered(events, watermark);
        let mut reached = Vec::with_capacity(self.members.len());
        for (member, claim) in self.members.iter().zip(claims) {
            let own: Vec<RecordedEvent> =
                events.iter().filter(|e| reads(member, e)).cloned().collect();
            reached.push(member.apply(claim, &own, delivered).await?);
        }
        Ok(reached)
    }

    fn recovered(&self, failures: u32) {
        if failures > 0 {
            tracing::info!(group = self.name, failures, "recovered");
            self.set(ProjectionStatus::Running, None);
        }
    }

    /// The batch in one statement, with no transaction around it (see
    /// [`OneTrip`]), when every member's checkpoint is known where this
    /// group last committed it and the batch moves one: a live batch.
    /// `Ok(None)`: the batch needs a transaction; an error wrote nothing.
    async fn one_trip(
        &self,
        claims: &[Claim],
        events: &[RecordedEvent],
        watermark: Option<Position>,
    ) -> Result<Option<Vec<Applied>>, sea_orm::DbErr> {
        let postgres = self.read_db().get_database_backend() == DbBackend::Postgres;
        let Some(known) = self.committed.of(claims).filter(|_| postgres) else {
            return Ok(None);
        };
        let started = Instant::now();
        let delivered = delivered(events, watermark).unwrap_or_default();
        let reached: Vec<Position> = known.iter().map(|at| (*at).max(delivered)).collect();
        if reached == known {
            // Nothing moves: the transaction checks the checkpoints (a
            // watermark now and then is how a lost commit is noticed).
            return Ok(None);
        }
        let locked: Vec<Locked> =
            known.iter().map(|at| Locked { at: *at, parked: false }).collect();
        let shares = self.shares(claims, &locked, events);
        let members = self.members_of(&shares);
        let locks = self.names().map(projection_lock_id).collect();
        // A projection's error in planning is the transaction's to handle.
        let Ok(Some(trip)) = OneTrip::plan(&members, claims, locks, &reached) else {
            return Ok(None);
        };
        let changed = trip.run(self.read_db(), &members).await?;
        self.committed.one_statement.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("eventfold_projection_one_statement_commits_total", "group" => self.name)
            .increment(1);
        let elapsed = started.elapsed().as_secs_f64();
        for share in &shares {
            record_applied(share.name, &share.fresh, elapsed);
        }
        Ok(Some(
            members
                .into_iter()
                .zip(reached)
                .zip(changed)
                .map(|((m, reached), changes)| Applied { reached, changes, span: m.span })
                .collect(),
        ))
    }

    /// One shared transaction for the batch; `Ok(Err(Behind))` when a
    /// member is found behind `floor` (nothing written).
    async fn apply_once(
        &self,
        claims: &[Claim],
        events: &[RecordedEvent],
        watermark: Option<Position>,
        floor: Position,
    ) -> Result<Result<Vec<Applied>, GroupError>, Attempt> {
        let started = Instant::now();
        let txn = self.read_db().begin().await?;
        let keys: Vec<(&str, &Claim)> = self.names().zip(claims).collect();
        // Unflushed: a lost commit leaves a member behind `floor`, which is
        // then caught up from the event store.
        let locked = lock_checkpoints(&txn, &keys, true).await?;
        for (name, at) in self.names().zip(&locked) {
            if at.at < floor {
                return Ok(Err(GroupError::Behind { projection: name, at: at.at, floor }));
            }
        }
        let shares = self.shares(claims, &locked, events);
        let parked = parked_streams(&txn, &shares).await?;
        let delivered = delivered(events, watermark).unwrap_or_default();
        let reached: Vec<Position> = shares.iter().map(|s| s.locked.at.max(delivered)).collect();
        let moves: Vec<(&Claim, Position)> =
            match reached.iter().zip(&locked).any(|(r, at)| *r > at.at) {
                true => claims.iter().zip(reached.iter().copied()).collect(),
                false => Vec::new(),
            };
        let members = self.members_of(&shares);
        let changed = write_batch(&txn, &members, &parked, &moves).await?;
        let applied: Vec<Applied> = members
            .into_iter()
            .zip(reached)
            .zip(changed)
            .map(|((m, reached), changes)| Applied { reached, changes, span: m.span })
            .collect();
        txn.commit().await?;
        let elapsed = started.elapsed().as_secs_f64();
        for share in &shares {
            record_applied(share.name, &share.fresh, elapsed);
        }
        Ok(Ok(applied))
    }

    /// Each member's share of `events`: those past its checkpoint as
    /// `locked` (in member order, as `claims`) of the streams it reads.
    fn shares<'a>(
        &self,
        claims: &'a [Claim],
        locked: &[Locked],
        events: &'a [RecordedEvent],
    ) -> Vec<Share<'a>> {
        self.members
            .iter()
            .zip(claims)
            .zip(locked)
            .map(|((m, claim), locked)| Share {
                name: m.name(),
                key: &claim.key,
                locked: *locked,
                fresh: events.iter().filter(|e| e.position > locked.at && reads(m, e)).collect(),
            })
            .collect()
    }

    /// The members with their shares, each with the span its writes run in.
    fn members_of<'a>(&'a self, shares: &'a [Share<'a>]) -> Vec<Member<'a>> {
        self.members
            .iter()
            .zip(shares)
            .map(|(m, share)| Member {
                projection: m.projection.as_ref(),
                share,
                span: apply_span(m, &share.fresh),
            })
            .collect()
    }

    /// Posts each member's new checkpoint and announces its changed rows.
    fn committed(&self, claims: &[Claim], applied: Vec<Applied>) -> Vec<Position> {
        let reached: Vec<Position> = applied.iter().map(|a| a.reached).collect();
        self.committed.set(claims, &reached);
        for ((member, claim), a) in self.members.iter().zip(claims).zip(applied) {
            member.monitor.progress.committed(&claim.key, a.reached);
            if !a.changes.is_empty() {
                a.span.in_scope(|| member.committed(a.changes));
            }
        }
        reached
    }
}

/// The furthest a batch goes: its last event or its watermark.
fn delivered(events: &[RecordedEvent], watermark: Option<Position>) -> Option<Position> {
    events.iter().map(|e| e.position).max().max(watermark)
}

/// Whether `member` reads `event`'s stream type.
pub(super) fn reads(member: &Applier, event: &RecordedEvent) -> bool {
    member.projection.stream_types().is_none_or(|t| t.contains(&event.stream.stream_type.as_str()))
}

/// A member's `projector apply` span for its share of a batch, linked to
/// the spans that appended those events (none for an empty share).
fn apply_span(member: &Applier, events: &[&RecordedEvent]) -> tracing::Span {
    if events.is_empty() {
        return tracing::Span::none();
    }
    let span = tracing::debug_span!(
        "projector apply",
        otel.name = %format_args!("projector apply {}", member.name()),
        projection = member.name(),
        batch_size = events.len(),
    );
    trace_context::link_batch(&span, events.iter().filter_map(|e| of_metadata(&e.metadata)));
    span
}
