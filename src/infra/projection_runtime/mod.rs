//! The projection runtime: what drives a [`Projection`](crate::es::projector::Projection)
//! over a transport, in one home.
//!
//! - [`Applier`]: applies a batch of events and the checkpoint in one
//!   read-database transaction, retries, parks poison events. Shared by both
//!   runners and by the rebuild.
//! - [`InProcessRunner`]: the embedded transport; reads the event log
//!   directly, in commit order, woken by local commits.
//! - [`ProjectionGroup`]: the projections of one read database applied
//!   together, one transaction per batch for all of them.
//! - [`PartitionedRunner`]: the production transport; one Redis consumer
//!   group per projection group, one lease per partition.
//! - [`ProjectionMonitor`]: the live [`ProjectionStatus`] of each projection
//!   running in this process (its last [`Failure`] as it may be shown), and
//!   the [`ProgressBoard`] read-your-writes waits on.
//! - `writes`: a batch's writes, its projections' one statements and the
//!   checkpoints' move together, in round trips of bounded size.
//! - [`checkpoint`] and [`dead_letters`]: the runtime's own tables.

mod applier;
pub mod checkpoint;
pub mod dead_letters;
mod errors;
mod failure;
mod group;
mod in_process;
mod monitor;
mod partitioned;
mod progress;
mod writes;

pub use applier::{Applier, ApplyError, RuntimeSettings};
pub use checkpoint::{Claim, Fenced};
pub use errors::is_transient;
pub use failure::{Failure, FailureKind};
pub use group::{GroupError, ProjectionGroup};
pub use in_process::InProcessRunner;
pub use monitor::{ProjectionMonitor, ProjectionStatus, RunState};
pub use partitioned::PartitionedRunner;
pub use progress::ProgressBoard;
