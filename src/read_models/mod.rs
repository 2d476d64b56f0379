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

use crate::domain::bank::BankAccount;
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError};
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

/// The bank account events of a batch, and the distinct accounts they touch.
pub(crate) fn bank_events<'a>(events: &[&'a RecordedEvent]) -> (Vec<&'a RecordedEvent>, Vec<Uuid>) {
    let bank: Vec<&RecordedEvent> = events
        .iter()
        .copied()
        .filter(|e| e.stream.stream_type == <BankAccount as Aggregate>::STREAM_TYPE)
        .collect();
    let mut ids: Vec<Uuid> = bank.iter().map(|e| e.stream.stream_id).collect();
    ids.sort();
    ids.dedup();
    (bank, ids)
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
