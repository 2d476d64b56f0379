//! A started application and how each of its tasks ended (the shape of
//! mini-redis's and zero-to-production's `main`): the HTTP server, whose end
//! ends the process, and the supervised background tasks, which restart
//! after a failure and end on the shutdown signal.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{self, JoinSet};

use crate::infra::supervisor::Supervisor;
use crate::service::Services;

/// How long stopping waits for the tasks before aborting the rest (an HTTP
/// server waits for its open connections, a WebSocket may stay open).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How one task ended: its name and its result.
pub type Ended = (String, anyhow::Result<()>);

/// A started application: its address, its HTTP server and its supervised
/// background tasks (relay, projectors), which restart after a failure
/// instead of ending the process.
pub struct RunningApp {
    pub addr: Option<SocketAddr>,
    /// Where `/metrics` is served without authentication (`METRICS_LISTEN`).
    pub metrics_addr: Option<SocketAddr>,
    pub services: Arc<Services>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    names: HashMap<task::Id, String>,
    /// The HTTP server: when it ends, the process ends.
    server: Option<task::Id>,
}

impl RunningApp {
    pub(super) fn new(services: Arc<Services>, shutdown: watch::Sender<bool>) -> Self {
        RunningApp {
            addr: None,
            metrics_addr: None,
            services,
            shutdown,
            tasks: JoinSet::new(),
            names: HashMap::new(),
            server: None,
        }
    }

    /// Runs `start`'s task under `supervisor`, as `name`.
    pub(super) fn supervise<F, Fut>(&mut self, supervisor: &Supervisor, name: String, start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let id = self.tasks.spawn(supervisor.clone().run(name.clone(), start)).id();
        self.names.insert(id, name);
    }

    /// Runs a task that is not restarted, as `name` (its end is reported).
    pub(super) fn spawn(
        &mut self,
        name: String,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Runs the HTTP server: when it ends, the process ends.
    pub(super) fn serve(
        &mut self,
        server: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(server).id();
        self.names.insert(id, "http server".into());
        self.server = Some(id);
    }

    /// Asks every task to stop and reports how each ended; tasks still
    /// running after [`STOP_GRACE`] are aborted.
    pub async fn stop(mut self) -> Vec<Ended> {
        let _ = self.shutdown.send(true);
        let mut ended = Vec::new();
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => ended.push(self.ended(joined)),
                Ok(None) => return ended,
                Err(_) => {
                    tracing::warn!(grace = ?STOP_GRACE, "tasks did not stop in time; aborting them");
                    self.tasks.abort_all();
                    while let Some(joined) = self.tasks.join_next_with_id().await {
                        ended.push(self.ended(joined));
                    }
                    return ended;
                }
            }
        }
    }

    /// Runs until the HTTP server ends or `signal` resolves, then stops
    /// the rest. A supervised task never ends the process: it restarts
    /// after a failure, and one that ends anyway is only reported.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Vec<Ended> {
        let mut ended = Vec::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                Some(joined) = self.tasks.join_next_with_id() => {
                    let id = joined.as_ref().map_or_else(|e| e.id(), |(id, _)| *id);
                    let (name, result) = self.ended(joined);
                    tracing::warn!(task = name, result = ?result, "task ended before shutdown");
                    ended.push((name, result));
                    if self.server == Some(id) {
                        break;
                    }
                }
            }
        }
        ended.extend(self.stop().await);
        ended
    }

    fn ended(&mut self, joined: Result<(task::Id, anyhow::Result<()>), task::JoinError>) -> Ended {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) if e.is_cancelled() => {
                (e.id(), Err(anyhow::anyhow!("did not stop within {STOP_GRACE:?}; aborted")))
            }
            Err(e) => (e.id(), Err(anyhow::anyhow!(e))),
        };
        (self.names.remove(&id).unwrap_or_else(|| "task".into()), result)
    }
}
