//! `bank_account_summary_view`: one row per account with its balance and
//! totals, as in the seed's BankAccountSummaryProjection. On PostgreSQL a
//! batch's deposits and withdrawals on open accounts are one UPDATE that
//! adds them to each row it finds at the version before them; whatever that
//! does not cover (openings, a row not where expected, an amount that would
//! overflow) is folded in memory from the rows, loaded in one query, and
//! each changed row written once.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use entity::bank_account_summary_view as view;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::domain::bank::BankEvent;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{
    Cover, OneStatement, Projection, ProjectionError, ROUND_TRIP_BYTES, follows,
};
use crate::es::upcast::Upcasters;
use crate::read_models::{
    ReadModel, RunningTotal, account_ids, add_cents, bank_events, moved_cents, runs_statement,
    to_cents,
};

pub const NAME: &str = "bank_account_summary";

pub struct AccountSummaryProjection {
    pub upcasters: Arc<Upcasters>,
}

/// The row after `event`, or `None` when the row already reflects it.
fn fold(
    row: Option<&view::Model>,
    event: &RecordedEvent,
    decoded: BankEvent,
) -> Result<Option<view::Model>, ProjectionError> {
    let id = event.stream.stream_id;
    let Some(row) = row else {
        let BankEvent::AccountOpened { owner, initial_deposit, overdraft_limit, customer_id } =
            decoded
        else {
            return Err(ProjectionError::new(format!(
                "{} for account {id} arrived before AccountOpened",
                event.event_type
            )));
        };
        let deposit = to_cents(initial_deposit.amount())?;
        return Ok(Some(view::Model {
            account_id: id,
            owner,
            balance_cents: deposit,
            overdraft_limit_cents: to_cents(overdraft_limit.amount())?,
            total_deposits_cents: deposit,
            total_withdrawals_cents: 0,
            opened_at: event.recorded_at,
            last_transaction_at: event.recorded_at,
            version: event.version,
            position: event.position.pos,
            customer_id,
        }));
    };
    if !follows(row.version, event)? {
        return Ok(None);
    }
    let (deposit, withdrawal) = moved_cents(&decoded)?.unwrap_or((0, 0));
    Ok(Some(view::Model {
        balance_cents: add_cents(row.balance_cents, deposit - withdrawal)?,
        total_deposits_cents: add_cents(row.total_deposits_cents, deposit)?,
        total_withdrawals_cents: add_cents(row.total_withdrawals_cents, withdrawal)?,
        last_transaction_at: event.recorded_at,
        version: event.version,
        position: event.position.pos,
        ..row.clone()
    }))
}

fn to_active(m: view::Model) -> view::ActiveModel {
    view::ActiveModel {
        account_id: Set(m.account_id),
        owner: Set(m.owner),
        balance_cents: Set(m.balance_cents),
        overdraft_limit_cents: Set(m.overdraft_limit_cents),
        total_deposits_cents: Set(m.total_deposits_cents),
        total_withdrawals_cents: Set(m.total_withdrawals_cents),
        opened_at: Set(m.opened_at),
        last_transaction_at: Set(m.last_transaction_at),
        version: Set(m.version),
        position: Set(m.position),
        customer_id: Set(m.customer_id),
    }
}

#[async_trait]
impl Projection for AccountSummaryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["BankAccount"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["bank_account_summary_view"]
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
        self.fold_rows(txn, &bank_events(events)).await
    }

    fn one_statement(
        &self,
        events: &[&RecordedEvent],
    ) -> Result<Option<OneStatement>, ProjectionError> {
        runs_statement(events, |run| increment(run, &self.upcasters), add_increments)
    }
}

impl AccountSummaryProjection {
    /// Loads the rows of the accounts of `events` (bank events), folds the
    /// events into them and writes each changed row once.
    async fn fold_rows(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        let mut rows: HashMap<Uuid, view::Model> = view::Entity::find()
            .filter(view::Column::AccountId.is_in(account_ids(events)))
            .all(txn)
            .await?
            .into_iter()
            .map(|m| (m.account_id, m))
            .collect();
        let mut changed = Vec::new();
        for event in events {
            let id = event.stream.stream_id;
            if let Some(next) = fold(rows.get(&id), event, self.upcasters.decode(event)?)? {
                rows.insert(id, next);
                if !changed.contains(&id) {
                    changed.push(id);
                }
            }
        }
        if changed.is_empty() {
            return Ok(vec![]);
        }
        for chunk in changed.chunks(ROWS_PER_INSERT) {
            let written = chunk.iter().map(|id| to_active(rows[id].clone()));
            view::Entity::insert_many(written)
                .on_conflict(
                    OnConflict::column(view::Column::AccountId)
                        .update_columns([
                            view::Column::BalanceCents,
                            view::Column::TotalDepositsCents,
                            view::Column::TotalWithdrawalsCents,
                            view::Column::LastTransactionAt,
                            view::Column::Version,
                            view::Column::Position,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        Ok(changed.into_iter().map(|id| ReadModel::Account.changed(id)).collect())
    }
}

/// Rows per upsert of the fold: about 150 bytes of parameters each (with
/// an owner's name of a few dozen), so an upsert stays under
/// [`ROUND_TRIP_BYTES`].
const ROWS_PER_INSERT: usize = ROUND_TRIP_BYTES / 192;

/// One account's run of a batch (see [`account_runs`]) as what it adds to
/// the account's row: applied where the row is at `base`, the version
/// before the run, and every amount has room for every step (no overflow).
#[derive(Debug, PartialEq)]
struct Increment {
    id: Uuid,
    base: i64,
    version: i64,
    position: i64,
    at: chrono::DateTime<chrono::Utc>,
    balance: RunningTotal,
    deposits: RunningTotal,
    withdrawals: RunningTotal,
}

/// The increment of `run`; `None` when a total overflows (the fold reports it).
fn increment(
    run: &[&RecordedEvent],
    upcasters: &Upcasters,
) -> Result<Option<Increment>, ProjectionError> {
    let (first, last) = (run[0], run[run.len() - 1]);
    let (mut balance, mut deposits, mut withdrawals) =
        (RunningTotal::default(), RunningTotal::default(), RunningTotal::default());
    for event in run {
        // An opening after the first event moves nothing, as in the fold.
        let (deposited, withdrawn) = moved_cents(&upcasters.decode(event)?)?.unwrap_or((0, 0));
        let added = deposited
            .checked_sub(withdrawn)
            .and_then(|c| balance.add(c))
            .and(deposits.add(deposited))
            .and(withdrawals.add(withdrawn));
        if added.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(Increment {
        id: first.stream.stream_id,
        base: first.version - 1,
        version: last.version,
        position: last.position.pos,
        at: last.recorded_at,
        balance,
        deposits,
        withdrawals,
    }))
}

/// The statement that adds `increments` to their rows; an account whose
/// row does not take its increment is left as it was.
fn add_increments(increments: &[Increment]) -> OneStatement {
    let rows: Vec<serde_json::Value> = increments
        .iter()
        .map(|i| {
            let ((balance_from, balance_to), (deposits_from, deposits_to)) =
                (i.balance.room(), i.deposits.room());
            let (withdrawals_from, withdrawals_to) = i.withdrawals.room();
            serde_json::json!({
                "id": i.id, "base": i.base, "version": i.version, "position": i.position,
                "at": i.at,
                "balance": i.balance.total, "balance_from": balance_from, "balance_to": balance_to,
                "deposits": i.deposits.total, "deposits_from": deposits_from,
                "deposits_to": deposits_to,
                "withdrawals": i.withdrawals.total, "withdrawals_from": withdrawals_from,
                "withdrawals_to": withdrawals_to,
            })
        })
        .collect();
    let covers = increments
        .iter()
        .map(|i| Cover { stream_id: i.id, rows: 1, change: Some(ReadModel::Account.changed(i.id)) })
        .collect();
    OneStatement::of_json_rows(ADD_INCREMENTS_PG, rows, covers)
}

/// Each increment of the JSON array `$1` added to its row, if the row is
/// at the increment's base version and every amount has room for it. The
/// rows are found by their keys as one array (`= ANY`, an index scan
/// whatever the table's size): joined to the JSON rows alone, whose count
/// the planner cannot know, the table would be read whole.
pub const ADD_INCREMENTS_PG: &str = "UPDATE bank_account_summary_view AS v SET \
       balance_cents = v.balance_cents + u.balance, \
       total_deposits_cents = v.total_deposits_cents + u.deposits, \
       total_withdrawals_cents = v.total_withdrawals_cents + u.withdrawals, \
       last_transaction_at = u.at, version = u.version, position = u.position \
     FROM jsonb_to_recordset($1) AS u(id uuid, base bigint, version bigint, position bigint, \
       at timestamptz, balance bigint, balance_from bigint, balance_to bigint, \
       deposits bigint, deposits_from bigint, deposits_to bigint, \
       withdrawals bigint, withdrawals_from bigint, withdrawals_to bigint) \
     WHERE v.account_id = ANY (ARRAY(SELECT (e->>'id')::uuid FROM jsonb_array_elements($1) AS e)) \
       AND v.account_id = u.id AND v.version = u.base \
       AND v.balance_cents BETWEEN u.balance_from AND u.balance_to \
       AND v.total_deposits_cents BETWEEN u.deposits_from AND u.deposits_to \
       AND v.total_withdrawals_cents BETWEEN u.withdrawals_from AND u.withdrawals_to \
     RETURNING v.account_id AS key";
