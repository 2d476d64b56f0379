//! The read side: one module per read model, each owning its tables with
//! its projector (events in) and its queries (plain structs out) side by
//! side, so nothing outside knows a table's columns, cents or JSON layout.
//!
//! Each projector folds events into its tables inside the transaction the
//! runtime gives it, and is idempotent on its own too (a row remembers the
//! stream version it has seen).

use std::sync::Arc;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::domain::bank::{BankAccount, BankEvent};
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{OneStatement, Projection, ProjectionError};
use crate::es::upcast::Upcasters;

pub mod account_summary;
pub mod audit_log;
pub mod balance_history;
pub mod customers;
pub mod orders_with_details;
pub mod product_stock;

/// The name the read-model projections go by together, where they are
/// consumed as one group (its consumer groups, leases and workers).
pub const GROUP: &str = "read_models";

/// Every read-model projection, in the order they are started.
pub fn all(upcasters: Arc<Upcasters>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(account_summary::AccountSummaryProjection { upcasters: upcasters.clone() }),
        Arc::new(balance_history::BalanceHistoryProjection { upcasters: upcasters.clone() }),
        Arc::new(audit_log::AuditLogProjection),
        Arc::new(customers::CustomersProjection { upcasters: upcasters.clone() }),
        Arc::new(product_stock::ProductStockProjection { upcasters: upcasters.clone() }),
        Arc::new(orders_with_details::OrdersWithDetailsProjection { upcasters }),
    ]
}

/// The read models whose changed rows are announced to subscribers. On the
/// wire (Redis pub/sub) a change names its model by [`ReadModel::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModel {
    Account,
    Customer,
    Product,
    Order,
}

impl ReadModel {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadModel::Account => "account",
            ReadModel::Customer => "customer",
            ReadModel::Product => "product",
            ReadModel::Order => "order",
        }
    }

    /// The announcement that row `id` of this model changed.
    pub fn changed(self, id: Uuid) -> Change {
        Change { model: self.as_str().into(), id, traceparent: None }
    }

    /// Whether `change` is about a row of this model.
    pub fn is(self, change: &Change) -> bool {
        change.model == self.as_str()
    }
}

/// Why a read-model query failed. Neither is the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A stored row that its own projector could not have written.
    #[error("{table} row {id} has an unreadable {what}")]
    Corrupt { table: &'static str, id: Uuid, what: &'static str },
}

/// One page of a list ordered by id.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether rows follow the last one.
    pub has_next: bool,
}

impl<T> Page<T> {
    /// The page of `limit` items out of `fetched`, read with a limit of
    /// `limit + 1`: one more than fits means there is a next page.
    pub fn of(mut fetched: Vec<T>, limit: u64) -> Page<T> {
        let has_next = fetched.len() as u64 > limit;
        fetched.truncate(limit as usize);
        Page { items: fetched, has_next }
    }

    /// Converts every item (infallibly), keeping the page's shape.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), has_next: self.has_next }
    }

    /// Converts every item, keeping the page's shape.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        let items = self.items.into_iter().map(f).collect::<Result<_, _>>()?;
        Ok(Page { items, has_next: self.has_next })
    }
}

/// Up to `limit` rows of `E` with a key after `after`, in key order.
pub(crate) async fn page_by_key<E>(
    db: &DatabaseConnection,
    key: E::Column,
    after: Option<Uuid>,
    limit: u64,
    filter: impl FnOnce(sea_orm::Select<E>) -> sea_orm::Select<E>,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
{
    let mut query = filter(E::find().order_by_asc(key));
    if let Some(after) = after {
        query = query.filter(key.gt(after));
    }
    Ok(Page::of(query.limit(limit + 1).all(db).await?, limit))
}

/// The bank account events of a batch.
pub(crate) fn bank_events<'a>(events: &[&'a RecordedEvent]) -> Vec<&'a RecordedEvent> {
    events
        .iter()
        .copied()
        .filter(|e| e.stream.stream_type == <BankAccount as Aggregate>::STREAM_TYPE)
        .collect()
}

/// The distinct accounts (streams) of `events`.
pub(crate) fn account_ids(events: &[&RecordedEvent]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.stream.stream_id).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The cents a bank event moves: `Some((deposited, withdrawn))` for a
/// deposit, a withdrawal or a check, `None` for an opening (each read
/// model folds that its own way).
pub(crate) fn moved_cents(event: &BankEvent) -> Result<Option<(i64, i64)>, ProjectionError> {
    Ok(match event {
        BankEvent::MoneyDeposited { amount } => Some((to_cents(amount.amount())?, 0)),
        BankEvent::MoneyWithdrawn { amount } | BankEvent::CheckWritten { amount, .. } => {
            Some((0, to_cents(amount.amount())?))
        }
        BankEvent::AccountOpened { .. } => None,
    })
}

/// The one statement of a bank read model for `events`: `plan` of each
/// account run of their bank events (see [`account_runs`]), written by
/// `statement`; an account `plan` gives nothing for is left to the fold,
/// and no plan at all is no statement.
pub(crate) fn runs_statement<T>(
    events: &[&RecordedEvent],
    mut plan: impl FnMut(&[&RecordedEvent]) -> Result<Option<T>, ProjectionError>,
    statement: impl FnOnce(&[T]) -> OneStatement,
) -> Result<Option<OneStatement>, ProjectionError> {
    let mut plans = Vec::new();
    for run in account_runs(&bank_events(events)) {
        plans.extend(plan(&run)?);
    }
    Ok((!plans.is_empty()).then(|| statement(&plans)))
}

/// Batches up to this many events go through the one-statement folds: they
/// save a round trip, which is what a live batch of a few events pays
/// for; a large batch (a rebuild, a catch-up) is folded from its rows,
/// whose binary multi-row writes cost less per event than the folds' JSON.
pub(crate) const ONE_STATEMENT_FOLD_MAX: usize = 64;

/// The events of each account of `events` (bank events of one batch), in
/// the order the accounts first appear, each account's in order, for the
/// one-statement folds: only an account whose events follow each other
/// without a gap after its opening (the common case: a batch of deposits
/// and withdrawals on open accounts) gets a run; the others are left out,
/// and so is every account of a batch larger than [`ONE_STATEMENT_FOLD_MAX`].
fn account_runs<'a>(events: &[&'a RecordedEvent]) -> Vec<Vec<&'a RecordedEvent>> {
    if events.len() > ONE_STATEMENT_FOLD_MAX {
        return Vec::new();
    }
    let mut runs: Vec<Vec<&RecordedEvent>> = Vec::new();
    let mut index: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for event in events {
        let at = *index.entry(event.stream.stream_id).or_insert_with(|| {
            runs.push(Vec::new());
            runs.len() - 1
        });
        runs[at].push(event);
    }
    runs.retain(|run| {
        run[0].version > 1 && run.windows(2).all(|w| w[1].version == w[0].version + 1)
    });
    runs
}

/// A running total of cents from zero, with the lowest and highest it
/// reached on the way: what a one-statement fold adds to a stored amount,
/// and the stored amounts from which no step of it overflows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunningTotal {
    pub(crate) total: i64,
    low: i64,
    high: i64,
}

impl RunningTotal {
    /// Adds `cents`; `None` when the total itself overflows.
    pub(crate) fn add(&mut self, cents: i64) -> Option<()> {
        self.total = self.total.checked_add(cents)?;
        self.low = self.low.min(self.total);
        self.high = self.high.max(self.total);
        Some(())
    }

    /// The stored amounts `(from, to)` to which every step of this total
    /// can be added without overflow (`low <= 0 <= high`, so neither bound
    /// overflows).
    pub(crate) fn room(&self) -> (i64, i64) {
        (i64::MIN - self.low, i64::MAX - self.high)
    }
}

/// Money in read tables is integer cents; domain money has two decimals.
pub fn to_cents(amount: Decimal) -> Result<i64, ProjectionError> {
    (amount * Decimal::ONE_HUNDRED)
        .trunc()
        .to_i64()
        .ok_or_else(|| ProjectionError::new(format!("amount {amount} out of range")))
}

/// Cents as stored back to money.
pub(crate) fn from_cents(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// Adds with overflow turned into a projection error instead of a panic.
pub(crate) fn add_cents(a: i64, b: i64) -> Result<i64, ProjectionError> {
    a.checked_add(b).ok_or_else(|| ProjectionError::new("amount overflow"))
}

#[cfg(test)]
mod running_total_tests {
    use super::RunningTotal;

    #[test]
    fn the_room_is_every_stored_amount_from_which_no_step_overflows() {
        let mut t = RunningTotal::default();
        t.add(5).unwrap();
        t.add(-8).unwrap();
        t.add(2).unwrap();
        assert_eq!(t.total, -1);
        // Steps reach +5 and -3 from the stored amount.
        assert_eq!(t.room(), (i64::MIN + 3, i64::MAX - 5));
        let (from, to) = t.room();
        assert!(to.checked_add(5).is_some() && (to + 1).checked_add(5).is_none());
        assert!(from.checked_add(-3).is_some() && (from - 1).checked_add(-3).is_none());
        assert_eq!(RunningTotal::default().room(), (i64::MIN, i64::MAX));
        let mut big = RunningTotal::default();
        big.add(i64::MAX).unwrap();
        assert!(big.add(1).is_none(), "the total itself overflows");
    }
}
