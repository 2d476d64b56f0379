//! SeaORM entities: the row shapes of the event store and the read tables.
//! They stay inside the adapters; the API has its own types.

pub mod account_balance_history;
pub mod audit_log;
pub mod bank_account_summary_view;
pub mod command_log;
pub mod customers_view;
pub mod dead_letters;
pub mod events;
pub mod order_view_customers;
pub mod orders_with_details_view;
pub mod product_stock_view;
pub mod projection_checkpoints;
pub mod snapshots;
