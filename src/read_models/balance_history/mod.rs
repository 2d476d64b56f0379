//! `account_balance_history`: the balance after every event of an account,
//! so "balance at time T" is one indexed lookup.

mod projector;
pub mod query;

pub use projector::{BalanceHistoryProjection, INSERT_RUNS_PG, NAME, latest_rows};
