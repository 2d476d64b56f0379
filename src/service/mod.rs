//! The application services: what the GraphQL resolvers, the CLI and
//! `/metrics` call. Commands go through the kernel's executor to the domain;
//! queries read the read models (waiting for `minPosition` first). Inputs
//! arrive as plain values and are parsed into domain types here; failures
//! come back as [`ServiceError`]. Nothing here knows GraphQL or HTTP.
//!
//! One `impl Services` block per context: [`bank`], [`customers`],
//! [`products`], [`orders`]; [`ops`] for projections and stream history; and
//! [`console`] for what the event console adds.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::es::changes::ChangeBus;
use crate::es::command::{CommandContext, CommandExecutor};
pub use crate::es::envelope::{CorrelationId, Position};
use crate::es::projector::Projection;
use crate::es::store::EventStore;
use crate::infra::event_feed::EventFeed;
pub use crate::infra::event_feed::FeedFilter;
use crate::infra::projection_runtime::ProjectionMonitor;
use crate::infra::read_your_writes::ReadYourWrites;

mod auth;
mod bank;
mod console;
mod customers;
mod error;
mod feed;
mod ops;
mod orders;
mod products;
mod reads;

pub use crate::es::store::Outcome;
pub use crate::infra::db::PoolStats;
pub use crate::infra::projection_runtime::dead_letters::{DeadLetter, Retried as RetryReport};
pub use crate::infra::projection_runtime::{Failure, FailureKind};
pub use crate::read_models::Page;
pub use crate::read_models::account_summary::query::AccountSummary;
pub use crate::read_models::audit_log::query::LoggedEvent;
pub use crate::read_models::audit_log::query::{StreamFilter, StreamSummary, StreamTypeCount};
pub use crate::read_models::balance_history::query::BalanceAt;
pub use crate::read_models::customers::query::CustomerSummary;
pub use crate::read_models::orders_with_details::query::{
    OrderCustomer, OrderDetails, OrderFilter, OrderInvoice, OrderItem, OrderShipping,
};
pub use crate::read_models::product_stock::query::ProductStock;
pub use auth::{Access, Caller, CallerRole};
pub use bank::OpenAccount;
pub use console::{FOLDABLE, FoldedState, RebuildPhase, RebuildProgress, Rebuilds};
pub use error::ServiceError;
pub use ops::{
    HealthProbes, LAG_CAP, ProjectionReport, ReadinessReport, RebuildSource, Session, Sessions,
    WaitStats,
};
pub use orders::OrderLineRequest;
pub use reads::{MinPosition, RequestWaits};

/// Everything the services need, shared behind an `Arc`.
pub struct Services {
    pub commands: Arc<CommandExecutor>,
    pub store: Arc<dyn EventStore>,
    pub read_db: DatabaseConnection,
    pub changes: Arc<dyn ChangeBus>,
    pub monitor: Arc<ProjectionMonitor>,
    pub read_your_writes: ReadYourWrites,
    /// Every projection of the application (running here or elsewhere).
    pub projections: Vec<Arc<dyn Projection>>,
    /// Where a rebuild reads the log and writes the read tables.
    pub rebuild_source: RebuildSource,
    /// Invoice URLs are `{invoice_base_url}/invoices/{invoice_id}.pdf`.
    pub invoice_base_url: String,
    /// How callers are authenticated.
    pub access: Access,
    /// What readiness checks.
    pub health: HealthProbes,
    /// The event log as a feed.
    pub feed: Arc<EventFeed>,
    /// The background rebuilds this process started.
    pub rebuilds: Rebuilds,
}

/// What a client may say about any command beyond its content.
#[derive(Debug, Clone, Default)]
pub struct CommandOptions {
    /// The same id again returns the first result and appends nothing.
    pub command_id: Option<Uuid>,
    /// The stream version the client expects; a mismatch is a conflict.
    pub expected_version: Option<i64>,
    /// The request's business transaction (`X-Correlation-Id`); a new one
    /// per command when `None`.
    pub correlation_id: Option<CorrelationId>,
}

impl CommandOptions {
    /// The kernel's context for a command of `caller`, with
    /// `expectedVersion` checked.
    fn context(&self, caller: &Caller) -> Result<CommandContext, ServiceError> {
        if self.expected_version.is_some_and(|v| v < 0) {
            return Err(ServiceError::invalid("expectedVersion must not be negative"));
        }
        // A command from the API is caused by the client's command, known
        // by its `commandId` when it gave one.
        Ok(CommandContext {
            command_id: self.command_id,
            expected_version: self.expected_version,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.command_id,
            actor: Some(caller.actor()),
        })
    }
}

/// Namespace for ids derived from client command ids.
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7466_6f6c_6400_0000_0000_0001);

/// A new aggregate id: derived from the command id when there is one, so a
/// retried "create" targets the same stream and is deduplicated.
fn new_stream_id(command_id: Option<Uuid>) -> Uuid {
    match command_id {
        Some(c) => Uuid::new_v5(&COMMAND_ID_NAMESPACE, c.as_bytes()),
        None => Uuid::now_v7(),
    }
}

/// A count from a client as the domain's unsigned quantity; the domain
/// checks the range.
fn quantity(value: i32, field: &str) -> Result<u32, ServiceError> {
    u32::try_from(value)
        .map_err(|_| ServiceError::invalid(format!("{field} must be between 1 and 1000000")))
}
