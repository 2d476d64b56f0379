//! `account_balance_history`: the balance after every event of an account,
//! so "balance at time T" is one indexed lookup.
//!
//! On PostgreSQL a batch's deposits and withdrawals on open accounts are
//! one INSERT that adds each event's running total to the account's latest
//! row, where that row is the version before them; the rest (openings, an
//! account not where expected, an overflow) is folded from each account's
//! latest row, loaded in one query.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use entity::account_balance_history as history;
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, Select,
};
use uuid::Uuid;

use crate::domain::bank::BankEvent;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{
    Cover, OneStatement, Projection, ProjectionError, ROUND_TRIP_BYTES, follows,
};
use crate::es::upcast::Upcasters;
use crate::read_models::{
    RunningTotal, account_ids, add_cents, bank_events, moved_cents, runs_statement, to_cents,
};

pub const NAME: &str = "account_balance_history";

pub struct BalanceHistoryProjection {
    pub upcasters: Arc<Upcasters>,
}

#[async_trait]
impl Projection for BalanceHistoryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["BankAccount"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["account_balance_history"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        self.apply_batch(txn, &[event]).await
    }

    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        self.fold_rows(txn, &bank_events(events)).await?;
        Ok(vec![])
    }

    fn one_statement(
        &self,
        events: &[&RecordedEvent],
    ) -> Result<Option<OneStatement>, ProjectionError> {
        runs_statement(events, |run| balances(run, &self.upcasters), insert_runs)
    }
}

impl BalanceHistoryProjection {
    /// Reads each account's latest row once (one query per batch), folds
    /// `events` (bank events) in memory and inserts the new rows together.
    async fn fold_rows(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut last: HashMap<Uuid, (i64, i64)> = latest_rows(&account_ids(events))
            .all(txn)
            .await?
            .into_iter()
            .map(|row| (row.account_id, (row.version, row.balance_cents)))
            .collect();
        let mut rows = Vec::new();
        for event in events {
            let id = event.stream.stream_id;
            let (version, before) = last.get(&id).copied().unwrap_or((0, 0));
            if !follows(version, event)? {
                continue;
            }
            let balance = match self.upcasters.decode::<BankEvent>(event)? {
                BankEvent::AccountOpened { initial_deposit, .. } => {
                    to_cents(initial_deposit.amount())?
                }
                moved => {
                    let (deposited, withdrawn) = moved_cents(&moved)?.unwrap_or((0, 0));
                    add_cents(add_cents(before, deposited)?, -withdrawn)?
                }
            };
            last.insert(id, (event.version, balance));
            rows.push(history::ActiveModel {
                account_id: Set(id),
                version: Set(event.version),
                balance_cents: Set(balance),
                recorded_at: Set(event.recorded_at),
            });
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            history::Entity::insert_many(chunk.iter().cloned())
                .on_conflict(
                    OnConflict::columns([history::Column::AccountId, history::Column::Version])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }
}

/// Rows per INSERT of the fold: about 56 bytes of parameters each, so an
/// INSERT stays under [`ROUND_TRIP_BYTES`].
const ROWS_PER_INSERT: usize = ROUND_TRIP_BYTES / 64;

/// One account's run of a batch (see [`account_runs`]): each event's
/// balance as what it adds to the balance of the version before the run,
/// `base`, and the stored balances from which no step overflows.
#[derive(Debug, PartialEq)]
struct Run {
    id: Uuid,
    base: i64,
    /// Each event's version, running total and time.
    steps: Vec<(i64, i64, chrono::DateTime<chrono::Utc>)>,
    total: RunningTotal,
}

/// The run of `events`; `None` when its total overflows (the fold reports it).
fn balances(
    events: &[&RecordedEvent],
    upcasters: &Upcasters,
) -> Result<Option<Run>, ProjectionError> {
    let mut total = RunningTotal::default();
    let mut steps = Vec::with_capacity(events.len());
    for event in events {
        // Only an account's first event opens it; an opening later in a run
        // is left to the fold.
        let Some((deposited, withdrawn)) = moved_cents(&upcasters.decode(event)?)? else {
            return Ok(None);
        };
        if deposited.checked_sub(withdrawn).and_then(|c| total.add(c)).is_none() {
            return Ok(None);
        }
        steps.push((event.version, total.total, event.recorded_at));
    }
    let id = events[0].stream.stream_id;
    Ok(Some(Run { id, base: events[0].version - 1, steps, total }))
}

/// The statement that inserts the rows of `runs`; nothing of an account
/// whose latest row is not where its run expects goes in.
fn insert_runs(runs: &[Run]) -> OneStatement {
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .flat_map(|r| {
            let (from, to) = r.total.room();
            r.steps.iter().map(move |(version, total, at)| {
                serde_json::json!({
                    "id": r.id, "base": r.base, "version": version, "total": total, "at": at,
                    "balance_from": from, "balance_to": to,
                })
            })
        })
        .collect();
    let covers =
        runs.iter().map(|r| Cover { stream_id: r.id, rows: r.steps.len(), change: None }).collect();
    OneStatement::of_json_rows(INSERT_RUNS_PG, rows, covers)
}

/// The rows of the JSON array `$1`, each at its account's latest balance
/// plus its running total, for the accounts whose latest row is at their
/// `base` version with room for every step. The latest row is one step
/// down the primary key per JSON row (a `LATERAL` lookup is always a
/// nested loop): a join the planner may choose could read the table
/// whole, and a plan chosen on a small table is kept as it grows.
pub const INSERT_RUNS_PG: &str = "INSERT INTO account_balance_history \
       (account_id, version, balance_cents, recorded_at) \
     SELECT u.id, u.version, h.balance_cents + u.total, u.at \
     FROM jsonb_to_recordset($1) AS u(id uuid, base bigint, version bigint, total bigint, \
       at timestamptz, balance_from bigint, balance_to bigint) \
     CROSS JOIN LATERAL (SELECT l.version, l.balance_cents FROM account_balance_history l \
       WHERE l.account_id = u.id ORDER BY l.version DESC LIMIT 1) AS h \
     WHERE h.version = u.base AND h.balance_cents BETWEEN u.balance_from AND u.balance_to \
     ON CONFLICT (account_id, version) DO NOTHING \
     RETURNING account_id AS key";

/// The row of each account's highest version among `ids`, one condition
/// per account: `version = (SELECT MAX(version) … WHERE account_id = id)`
/// is one step down the primary key's index, however long the account's
/// history (a grouped MAX reads every version of the account).
pub fn latest_rows(ids: &[Uuid]) -> Select<history::Entity> {
    let mut newest = Condition::any();
    for id in ids {
        let max = Query::select()
            .expr(history::Column::Version.max())
            .from(history::Entity)
            .and_where(history::Column::AccountId.eq(*id))
            .to_owned();
        newest = newest.add(Condition::all().add(history::Column::AccountId.eq(*id)).add(
            Expr::col(history::Column::Version).eq(Expr::SubQuery(None, Box::new(max.into()))),
        ));
    }
    history::Entity::find().filter(newest)
}
