//! Bank accounts, as in the seed: open, deposit, withdraw, write checks, with
//! an overdraft limit.

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{BankAccount, BankCommand, BankError};
pub use events::{BankEvent, upcast_account_opened_v1};
