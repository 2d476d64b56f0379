//! What the runners of this process report about their projections, and a
//! signal that fires after every checkpoint commit (read-your-writes waits
//! on it instead of polling).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use tokio::sync::watch;

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
    /// Bumped after every checkpoint commit, for read-your-writes waiters.
    progress: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
pub struct RunState {
    pub status: ProjectionStatus,
    /// The last failure seen, kept after recovery so an operator can read it.
    pub last_error: Option<String>,
}

impl ProjectionMonitor {
    /// Records `status`; `last_error` replaces the previous one when given.
    pub fn set(&self, name: &'static str, status: ProjectionStatus, last_error: Option<String>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let entry = states
            .entry(name)
            .or_insert(RunState { status: ProjectionStatus::Running, last_error: None });
        entry.status = status;
        if last_error.is_some() {
            entry.last_error = last_error;
        }
    }

    /// The state of `name`, or `None` when it does not run in this process.
    pub fn state(&self, name: &str) -> Option<RunState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Signals that some checkpoint moved.
    pub(super) fn advanced(&self) {
        self.progress.send_modify(|n| *n += 1);
    }
}
