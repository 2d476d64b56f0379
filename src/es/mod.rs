//! The generic event-sourcing kernel. It knows nothing of the domain, of
//! GraphQL or of the read tables; adapters plug into its ports.
//!
//! - [`aggregate`]: the aggregate and event contracts.
//! - [`envelope`]: stored events, positions and metadata.
//! - [`store`]: the event store port (append with expected versions, load).
//! - [`upcast`]: conversion of old event shapes on read.
//! - [`command`]: load → handle → append, with retries and idempotency.
//! - [`unit_of_work`]: the same over several streams with one atomic append.
//! - [`projector`]: the projection contract and its runtime.
//! - [`changes`]: announcements of changed read-model rows.
//! - `testing` (tests only): given/when/then for aggregates, and stored
//!   events without a database.

pub mod aggregate;
mod batch;
mod cache;
pub mod changes;
pub mod command;
pub mod envelope;
mod locks;
pub mod partition;
pub mod projector;
pub mod store;
#[cfg(test)]
pub mod testing;
pub mod unit_of_work;
pub mod upcast;
