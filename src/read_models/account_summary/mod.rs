//! `bank_account_summary_view`: one row per account with its balance and
//! totals, as in the seed's BankAccountSummaryProjection.

mod projector;
pub mod query;

pub use projector::{ADD_INCREMENTS_PG, AccountSummaryProjection, NAME};
