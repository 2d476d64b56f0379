//! One projector per read table. Each folds events into its table inside
//! the transaction the runtime gives it; each is idempotent on its own too
//! (a row remembers the stream version it has seen).

use std::sync::Arc;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::domain::bank::BankAccount;
use crate::es::aggregate::Aggregate;
use crate::es::command::CommandExecutor;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError};
use crate::es::upcast::Upcasters;

pub mod account_summary;
pub mod audit_log;
pub mod balance_history;
pub mod customers;
pub mod orders_with_details;
pub mod product_stock;
pub mod shipping_process;

pub use account_summary::AccountSummaryProjection;
pub use audit_log::AuditLogProjection;
pub use balance_history::BalanceHistoryProjection;
pub use customers::CustomersProjection;
pub use orders_with_details::OrdersWithDetailsProjection;
pub use product_stock::ProductStockProjection;
pub use shipping_process::ShippingProcess;

/// Every projection of the application, in the order they are started.
/// `commands` is what process managers execute their commands with.
pub fn all(upcasters: Arc<Upcasters>, commands: Arc<CommandExecutor>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(AccountSummaryProjection { upcasters: upcasters.clone() }),
        Arc::new(BalanceHistoryProjection { upcasters: upcasters.clone() }),
        Arc::new(AuditLogProjection),
        Arc::new(CustomersProjection { upcasters: upcasters.clone() }),
        Arc::new(ProductStockProjection { upcasters: upcasters.clone() }),
        Arc::new(OrdersWithDetailsProjection { upcasters: upcasters.clone() }),
        Arc::new(ShippingProcess { upcasters, commands }),
    ]
}

/// The bank account events of a batch, and the distinct accounts they touch.
pub(crate) fn bank_events<'a>(
    events: &[&'a RecordedEvent],
) -> (Vec<&'a RecordedEvent>, Vec<uuid::Uuid>) {
    let bank: Vec<&RecordedEvent> = events
        .iter()
        .copied()
        .filter(|e| e.stream.stream_type == <BankAccount as Aggregate>::STREAM_TYPE)
        .collect();
    let mut ids: Vec<uuid::Uuid> = bank.iter().map(|e| e.stream.stream_id).collect();
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

pub fn from_cents(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// Adds with overflow turned into a projection error instead of a panic.
pub fn add_cents(a: i64, b: i64) -> Result<i64, ProjectionError> {
    a.checked_add(b).ok_or_else(|| ProjectionError::new("amount overflow"))
}
