//! What the runners of this process report about their projections, and
//! the board their checkpoint commits are posted to (read-your-writes waits
//! on it instead of polling).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::failure::{Failure, FailureKind};
use super::progress::ProgressBoard;

/// How a projection runner in this process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionStatus {
    /// Applying events (or idle and caught up).
    Running,
    /// Its last attempt failed; it retries.
    Failing,
    /// Its runner ended (shutdown).
    Stopped,
}

impl ProjectionStatus {
    /// The name shown by the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionStatus::Running => "RUNNING",
            ProjectionStatus::Failing => "FAILING",
            ProjectionStatus::Stopped => "STOPPED",
        }
    }
}

impl fmt::Display for ProjectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live state of the projections running in this process.
#[derive(Default)]
pub struct ProjectionMonitor {
    states: Mutex<HashMap<&'static str, RunState>>,
    /// Every checkpoint commit of this process is posted here, for
    /// read-your-writes waiters (and other processes).
    pub progress: Arc<ProgressBoard>,
}

#[derive(Debug, Clone)]
pub struct RunState {
    pub status: ProjectionStatus,
    /// The last failure seen, kept after recovery so an operator can read
    /// it (its detail is in the log, under its reference).
    pub last_error: Option<Failure>,
    /// Attempts that failed transiently and were retried, since start.
    pub transient_failures: u64,
    /// Transport entries ignored because they could not be trusted
    /// (unreadable, or contradicting the event store), since start.
    pub rejected_entries: u64,
}

impl RunState {
    fn new() -> Self {
        RunState {
            status: ProjectionStatus::Running,
            last_error: None,
            transient_failures: 0,
            rejected_entries: 0,
        }
    }
}

impl ProjectionMonitor {
    /// Records `status`; `last_error` replaces the previous one when given.
    pub fn set(&self, name: &'static str, status: ProjectionStatus, last_error: Option<Failure>) {
        self.update(name, |entry| {
            entry.status = status;
            if last_error.is_some() {
                entry.last_error = last_error;
            }
        });
    }

    /// Logs an attempt that failed transiently (the `failures`th in a row)
    /// and records it: the projection is `FAILING` until an attempt succeeds.
    pub fn transient_failure(&self, name: &'static str, error: &dyn fmt::Display, failures: u32) {
        let failure = Failure::new(FailureKind::Transient, error);
        tracing::warn!(projection = name, reference = ?failure.reference, error = %error, failures, "transient failure; retrying");
        self.update(name, |entry| {
            entry.status = ProjectionStatus::Failing;
            entry.last_error = Some(failure);
            entry.transient_failures += 1;
        });
    }

    /// Logs a transport entry that was ignored, and why, and records it.
    pub fn rejected_entry(&self, name: &'static str, reason: String) {
        let failure = Failure::new(FailureKind::Untrusted, &reason);
        tracing::error!(projection = name, reference = ?failure.reference, "{reason}");
        self.update(name, |entry| {
            entry.last_error = Some(failure);
            entry.rejected_entries += 1;
        });
    }

    /// Logs a failure of a runner (it restarts) and records the projection
    /// as `FAILING`.
    pub fn runner_failed(&self, name: &'static str, error: &dyn fmt::Display) {
        let failure = Failure::new(FailureKind::Runner, error);
        tracing::error!(projection = name, reference = ?failure.reference, error = %error, "projection runner failed; restarting");
        self.set(name, ProjectionStatus::Failing, Some(failure));
    }

    fn update(&self, name: &'static str, change: impl FnOnce(&mut RunState)) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        change(states.entry(name).or_insert_with(RunState::new));
    }

    /// The state of `name`, or `None` when it does not run in this process.
    pub fn state(&self, name: &str) -> Option<RunState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}
