//! The in-process transport: a projection reads the event log directly, in
//! commit order, woken by local commits (and polling for other writers).

use std::sync::Arc;

use tokio::sync::watch;

use super::applier::Applier;
use super::checkpoint::load_checkpoint;
use super::monitor::ProjectionStatus;
use crate::es::envelope::Position;
use crate::es::store::EventStore;

/// Drives one projection straight from the event store.
pub struct InProcessRunner {
    pub store: Arc<dyn EventStore>,
    pub applier: Applier,
}

impl InProcessRunner {
    /// Runs until `shutdown` turns true.
    pub async fn run(
        self,
        mut commits: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let name = self.applier.name();
        let monitor = self.applier.monitor.clone();
        monitor.set(name, ProjectionStatus::Running, None);
        let mut checkpoint = load_checkpoint(&self.applier.read_db, name).await?;
        loop {
            match self.catch_up(&mut checkpoint).await {
                Ok(()) => monitor.set(name, ProjectionStatus::Running, None),
                Err(e) => {
                    tracing::error!(projection = name, error = %e, "projection stalled; retrying");
                    monitor.set(name, ProjectionStatus::Failing, Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = commits.changed() => tokio::time::sleep(self.applier.settings.linger).await,
                _ = tokio::time::sleep(self.applier.settings.poll_interval) => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        monitor.set(name, ProjectionStatus::Stopped, None);
        Ok(())
    }

    /// Applies everything visible after `checkpoint`.
    async fn catch_up(&self, checkpoint: &mut Position) -> anyhow::Result<()> {
        let batch_size = self.applier.settings.batch_size;
        loop {
            let batch = self.store.read_committed(*checkpoint, batch_size).await?;
            if batch.is_empty() {
                return Ok(());
            }
            *checkpoint = self.applier.apply(self.applier.name(), &batch, None).await?;
            if (batch.len() as u64) < batch_size {
                return Ok(());
            }
        }
    }
}
