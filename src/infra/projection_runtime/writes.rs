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

use sea_orm::{ConnectionTrait as _, DatabaseTransaction, DbBackend, DbErr, Statement, Value};
use tracing::Instrument as _;
use uuid::Uuid;

use super::applier::{Share, park_row};
use super::checkpoint::{Claim, save_checkpoints, save_statement};
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
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut number = 0usize;
        let mut digits = false;
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            number = number * 10 + d as usize;
            digits = true;
            chars.next();
        }
        if digits {
            let _ = write!(out, "{}", number + by);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shift_params;

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
}
