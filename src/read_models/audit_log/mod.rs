//! `audit_log`: a copy of every event of every stream, for stream history.

mod projector;
pub mod query;

pub use projector::{AuditLogProjection, NAME};
