//! A batch's writes to the read database, in as few round trips as they
//! can go: on PostgreSQL the one statement of each projection that has one
//! for the batch ([`Projection::one_statement`]) and the move of every
//! checkpoint are a single statement, each a data-modifying `WITH` query
//! of it; then each projection folds what its statement did not apply, and
//! parks the events of its parked streams. A statement carries at most
//! [`ROUND_TRIP_BYTES`](crate::es::projector::ROUND_TRIP_BYTES) of parameters: a large batch's statements go in
//! several, and one larger than that alone is left to the fold.
//!
//! The queries of one statement share a snapshot and write different
//! tables (each projection owns its own; the checkpoints are the
//! runtime's), so none depends on another's writes. The caller's
//! transaction already holds the checkpoints' locks, taken by an earlier
//! statement: every statement here sees what committed before them.

use std::collections::HashSet;
use std::fmt::Write as _;

use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    Value,
};
use tracing::Instrument as _;
use uuid::Uuid;

use super::applier::{Share, park_row};
use super::checkpoint::{
    Claim, ONE_TRIP_READY_PG, OneTripMove, one_trip_ready_values, save_checkpoints, save_statement,
};
use super::failure::{Failure, WAITING};
use crate::es::changes::Change;
use crate::es::envelope::{Position, RecordedEvent, StreamKey};
use crate::es::projector::{
    OneStatement, Projection, ProjectionError, one_statement_within, round_trips,
};

/// One projection's part of a batch: its projection, its share, and the
/// span its fold runs in.
pub(super) struct Member<'a> {
    pub projection: &'a dyn Projection,
    pub share: &'a Share<'a>,
    pub span: tracing::Span,
}

/// A member's events as the batch goes: those of parked streams wait,
/// the others are applied, first by its statement if it has one.
struct Plan<'a> {
    ready: Vec<&'a RecordedEvent>,
    waiting: Vec<&'a RecordedEvent>,
    one: Option<OneStatement>,
}

/// Applies each member's fresh events in `txn`, except those of a stream
/// in `parked` (from `parked_streams`): each of those is parked behind it
/// (waiting; the key is marked already, or its stream would not be in
/// `parked`). Moves the checkpoints by `moves`. Returns the rows each
/// member changed, in member order.
pub(super) async fn write_batch(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    parked: &HashSet<(&'static str, StreamKey)>,
    moves: &[(&Claim, Position)],
) -> Result<Vec<Vec<Change>>, ProjectionError> {
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let mut plans = Vec::with_capacity(members.len());
    for Member { projection, share, .. } in members {
        let (waiting, ready): (Vec<&RecordedEvent>, Vec<&RecordedEvent>) =
            share.fresh.iter().partition(|e| parked.contains(&(share.name, e.stream.clone())));
        let one = match postgres && !ready.is_empty() {
            true => one_statement_within(*projection, &ready)?,
            false => None,
        };
        plans.push(Plan { ready, waiting, one });
    }
    let (keys, saved) = run_together(txn, &plans, moves).await?;
    let mut changed = Vec::with_capacity(members.len());
    for ((member, plan), keys) in members.iter().zip(plans).zip(keys) {
        let (left, mut changes) = match &plan.one {
            Some(one) => one.left(&plan.ready, &keys),
            None => (plan.ready, Vec::new()),
        };
        if !left.is_empty() {
            let folding = member.projection.apply_batch(txn, &left);
            changes.extend(folding.instrument(member.span.clone()).await?);
        }
        for event in plan.waiting {
            park_row(txn, member.share.name, event, &Failure::waiting(), WAITING, 0).await?;
        }
        changed.push(changes);
    }
    if !saved {
        // Last, as before the one statements: on SQLite this is what takes
        // the write lock, and a process manager's fold commands the write
        // side, on another connection, before it.
        save_checkpoints(txn, moves).await?;
    }
    Ok(changed)
}

/// A live batch of a group as one statement with no transaction around
/// it: no `BEGIN`, no separate lock, no `COMMIT`, one round trip where a
/// transaction takes four. It opens with [`ONE_TRIP_READY_PG`] (the locks,
/// and the checkpoints moved only where the group last committed them),
/// then runs each member's one statement, and refuses itself whole unless
/// every checkpoint moved and every member's statement applied all of its
/// events. A refused statement wrote nothing; the caller then applies the
/// batch in a transaction, which finds out why.
pub(super) struct OneTrip {
    statement: Statement,
    /// Each member's one statement, if it has events.
    ones: Vec<Option<OneStatement>>,
}

impl OneTrip {
    /// The statement for `members` (each with its share, whose checkpoint
    /// the group last committed at its `locked.at`, under `claims`), taking
    /// `locks` and moving each checkpoint to `reached` (in member order);
    /// `None` when the batch needs a transaction: a member's events not all
    /// covered by its one statement, or more than one round trip of
    /// parameters.
    pub(super) fn plan(
        members: &[Member<'_>],
        claims: &[Claim],
        locks: Vec<i64>,
        reached: &[Position],
    ) -> Result<Option<OneTrip>, ProjectionError> {
        let mut ones = Vec::with_capacity(members.len());
        for Member { projection, share, .. } in members {
            if share.fresh.is_empty() {
                ones.push(None);
                continue;
            }
            let Some(one) = one_statement_within(*projection, &share.fresh)? else {
                return Ok(None);
            };
            let covered: HashSet<Uuid> = one.covers.iter().map(|c| c.stream_id).collect();
            if share.fresh.iter().any(|e| !covered.contains(&e.stream.stream_id)) {
                return Ok(None);
            }
            ones.push(Some(one));
        }
        if round_trips(ones.iter().flatten().map(|one| one.bytes)).len() > 1 {
            return Ok(None);
        }
        let moves: Vec<OneTripMove> = claims
            .iter()
            .zip(members)
            .zip(reached)
            .map(|((claim, m), to)| OneTripMove {
                claim,
                from: m.share.locked.at,
                fresh: !m.share.fresh.is_empty(),
                to: *to,
            })
            .collect();
        let mut sql = String::from(ONE_TRIP_READY_PG);
        let mut values = one_trip_ready_values(locks, &moves);
        // Each member's statement, the rows it returns, and how many it
        // must return (the count's parameter comes after its own).
        let (mut union, mut counts) = (Vec::new(), Vec::new());
        for (i, one) in ones.iter().enumerate() {
            let Some(one) = one else { continue };
            let _ = write!(sql, ", m{i} AS ({})", ready_params(one.sql, values.len()));
            values.extend(one.values.iter().cloned());
            union.push(format!("SELECT {i} AS member, key FROM m{i}"));
            values.push((one.covers.iter().map(|c| c.rows).sum::<usize>() as i64).into());
            counts.push(format!("(SELECT count(*) FROM m{i}) = ${}", values.len()));
        }
        // The refusal of `ready` must run whatever the members: with none
        // (a watermark), nothing else reads it.
        union.push("SELECT NULL::int AS member, NULL::uuid AS key FROM ready WHERE NOT ok".into());
        counts.push("(SELECT ok FROM ready)".into());
        let _ = write!(
            sql,
            " SELECT w.member, w.key FROM ({}) AS w \
             WHERE eventfold_expect({}, 'every event of the batch applied')",
            union.join(" UNION ALL "),
            counts.join(" AND ")
        );
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        Ok(Some(OneTrip { statement, ones }))
    }

    /// Runs the statement on `db`; returns the rows each member changed,
    /// in member order. An error that
    /// [`is_refused`](super::errors::is_refused) wrote nothing.
    pub(super) async fn run(
        self,
        db: &DatabaseConnection,
        members: &[Member<'_>],
    ) -> Result<Vec<Vec<Change>>, DbErr> {
        let mut keys = vec![Vec::new(); self.ones.len()];
        for row in db.query_all_raw(self.statement).await? {
            let member: i32 = row.try_get("", "member")?;
            keys[member as usize].push(row.try_get::<Uuid>("", "key")?);
        }
        let mut changed = Vec::with_capacity(members.len());
        for ((member, one), keys) in members.iter().zip(&self.ones).zip(&keys) {
            let Some(one) = one else {
                changed.push(Vec::new());
                continue;
            };
            // Nothing is left: the statement refuses itself otherwise.
            let (left, changes) = one.left(&member.share.fresh, keys);
            debug_assert!(left.is_empty(), "the one-statement commit left events unapplied");
            changed.push(changes);
        }
        Ok(changed)
    }
}

/// Runs the plans' statements and the checkpoints' move in as few
/// statements as fit [`ROUND_TRIP_BYTES`](crate::es::projector::ROUND_TRIP_BYTES) each (one, for a live batch of
/// a few events; the move goes with the first); returns the keys each
/// plan's statement returned, in plan order, and whether the checkpoints
/// moved (not when no plan has a statement).
async fn run_together(
    txn: &DatabaseTransaction,
    plans: &[Plan<'_>],
    moves: &[(&Claim, Position)],
) -> Result<(Vec<Vec<Uuid>>, bool), DbErr> {
    let mut keys = vec![Vec::new(); plans.len()];
    let ones: Vec<(usize, &OneStatement)> =
        plans.iter().enumerate().filter_map(|(i, p)| Some((i, p.one.as_ref()?))).collect();
    let trips = round_trips(ones.iter().map(|(_, one)| one.bytes));
    for (n, trip) in trips.iter().enumerate() {
        let moves = if n == 0 { moves } else { &[] };
        for row in txn.query_all_raw(compose(&ones[trip.clone()], moves)).await? {
            let member: i32 = row.try_get("", "member")?;
            keys[member as usize].push(row.try_get::<Uuid>("", "key")?);
        }
    }
    Ok((keys, !trips.is_empty()))
}

/// The statements of `trip` (each with the index of its plan) and the
/// checkpoints' move as one statement: each a `WITH` query, the rows they
/// return tagged with their plan's index.
fn compose(trip: &[(usize, &OneStatement)], moves: &[(&Claim, Position)]) -> Statement {
    let mut sql = String::from("WITH ");
    let mut values: Vec<Value> = Vec::new();
    for (i, one) in trip {
        let _ = write!(sql, "m{i} AS ({}), ", shift_params(one.sql, values.len()));
        values.extend(one.values.iter().cloned());
    }
    if !moves.is_empty() {
        let save = save_statement(moves);
        let _ = write!(sql, "saved AS ({}), ", shift_params(&save.sql, values.len()));
        values.extend(save.values.map(|v| v.0).unwrap_or_default());
    }
    sql.truncate(sql.len() - 2);
    for (n, (i, _)) in trip.iter().enumerate() {
        let union = if n == 0 { " " } else { " UNION ALL " };
        let _ = write!(sql, "{union}SELECT {i} AS member, key FROM m{i}");
    }
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `sql` with every parameter `$n` renumbered `$(n + by)` (the statements
/// composed here have no `$` but in parameters).
fn shift_params(sql: &str, by: usize) -> String {
    renumber(sql, by, "$", "")
}

/// [`shift_params`], each parameter read through the one-statement
/// commit's `ready` query: `(SELECT $(n + by) FROM ready)`, so the
/// statement reads none before the checkpoints are locked and checked.
fn ready_params(sql: &str, by: usize) -> String {
    renumber(sql, by, "(SELECT $", " FROM ready)")
}

fn renumber(sql: &str, by: usize, before: &str, after: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut number = 0usize;
        let mut digits = false;
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            number = number * 10 + d as usize;
            digits = true;
            chars.next();
        }
        match digits {
            true => {
                let _ = write!(out, "{before}{}{after}", number + by);
            }
            false => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{ready_params, shift_params};

    #[test]
    fn parameters_are_renumbered_whatever_their_width() {
        assert_eq!(
            shift_params("a = $1 AND b = ANY($12::bigint[])", 0),
            "a = $1 AND b = ANY($12::bigint[])"
        );
        assert_eq!(
            shift_params("a = $1 AND b = ANY($12::bigint[])", 3),
            "a = $4 AND b = ANY($15::bigint[])"
        );
        assert_eq!(shift_params("x $ y $9", 1), "x $ y $10");
    }

    #[test]
    fn parameters_read_through_ready_are_renumbered_too() {
        assert_eq!(
            ready_params("a = $1 AND b = ANY($12::bigint[])", 5),
            "a = (SELECT $6 FROM ready) AND b = ANY((SELECT $17 FROM ready)::bigint[])"
        );
        assert_eq!(ready_params("x $ y", 5), "x $ y");
    }
}
