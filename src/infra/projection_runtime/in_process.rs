//! The in-process transport: a projection reads the event log directly, in
//! commit order, woken by local commits (and polling for other writers).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::applier::Applier;
use super::checkpoint::{Claim, load_checkpoint};
use super::monitor::ProjectionStatus;
use crate::es::envelope::Position;
use crate::es::store::EventStore;

/// Drives one projection straight from the event store.
pub struct InProcessRunner {
    pub store: Arc<dyn EventStore>,
    pub applier: Applier,
}

impl InProcessRunner {
    /// Runs until `shutdown` turns true. A failure (the store or the read
    /// database unreachable) is reported and retried; it never ends the run.
    pub async fn run(
        self,
        mut commits: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let name = self.applier.name();
        let monitor = self.applier.monitor.clone();
        let claim = Claim::unleased(name);
        monitor.set(name, ProjectionStatus::Running, None);
        let mut checkpoint = None;
        loop {
            let pause = match self.catch_up(&claim, &mut checkpoint).await {
                Ok(()) => {
                    monitor.set(name, ProjectionStatus::Running, None);
                    self.applier.settings.poll_interval
                }
                Err(e) => {
                    monitor.runner_failed(name, &format!("{e:#}"));
                    checkpoint = None;
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = commits.changed() => tokio::time::sleep(self.applier.settings.linger).await,
                _ = tokio::time::sleep(pause) => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        monitor.set(name, ProjectionStatus::Stopped, None);
        Ok(())
    }

    /// Applies everything visible after the checkpoint (read first when
    /// not known).
    async fn catch_up(&self, claim: &Claim, known: &mut Option<Position>) -> anyhow::Result<()> {
        let mut checkpoint = match *known {
            Some(c) => c,
            None => load_checkpoint(&self.applier.read_db, &claim.key).await?,
        };
        let batch_size = self.applier.settings.batch_size;
        loop {
            let batch = self.store.read_committed(checkpoint, batch_size).await?;
            if batch.is_empty() {
                break;
            }
            checkpoint = self.applier.apply(claim, &batch, None).await?;
            *known = Some(checkpoint);
            if (batch.len() as u64) < batch_size {
                break;
            }
        }
        *known = Some(checkpoint);
        Ok(())
    }
}
