//! Operations: projection progress (for the API, `/metrics` and the CLI),
//! stream history from the audit log, and readiness.

use uuid::Uuid;

use super::{ServiceError, Services};
use crate::es::envelope::Position;
use crate::infra::projection_runtime::RunState;
use crate::infra::projection_runtime::dead_letters::{self, DeadLetter};
use crate::read_models::Page;
use crate::read_models::audit_log::{self, query::LoggedEvent};

/// Lag is counted up to this many events.
const LAG_CAP: u64 = 1_000_000;

/// How far one projection is.
pub struct ProjectionReport {
    pub name: &'static str,
    pub checkpoint: Position,
    /// Committed events not yet applied, up to [`LAG_CAP`].
    pub lag: u64,
    /// Its runner's state when it runs in this process; `None` when it runs
    /// elsewhere.
    pub state: Option<RunState>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Services {
    /// Progress of every projection: checkpoint, lag and parked events.
    pub async fn projection_reports(&self) -> Result<Vec<ProjectionReport>, ServiceError> {
        let mut reports = Vec::with_capacity(self.projection_names.len());
        for &name in &self.projection_names {
            let checkpoint = self.read_your_writes.checkpoint(name).await?;
            let lag = self.store.count_after(checkpoint, LAG_CAP).await?;
            let dead_letters = dead_letters::list(&self.read_db, name).await?;
            let state = self.monitor.state(name);
            reports.push(ProjectionReport { name, checkpoint, lag, state, dead_letters });
        }
        Ok(reports)
    }

    /// The history of one stream, oldest first, after version `after_version`.
    pub async fn stream_events(
        &self,
        stream_type: &str,
        stream_id: Uuid,
        after_version: i64,
        limit: u64,
        min_position: Option<&str>,
    ) -> Result<Page<LoggedEvent>, ServiceError> {
        self.wait_for(&[audit_log::NAME], min_position).await?;
        let page = audit_log::query::stream_page(
            &self.read_db,
            stream_type,
            stream_id,
            after_version,
            limit,
        );
        Ok(page.await?)
    }

    /// Whether the read database answers.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        Ok(self.read_db.ping().await?)
    }
}
