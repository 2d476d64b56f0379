//! A started application and how each of its tasks ended (the shape of
//! mini-redis's and zero-to-production's `main`): the HTTP server, whose end
//! ends the process, and the supervised background tasks, which restart
//! after a failure and end on the shutdown signal.
//!
//! Stopping drains in order: the shutdown signal makes the process not
//! ready, closes the listeners and the WebSockets (1001), lets requests
//! in flight finish (up to the shutdown timeout), projectors commit their
//! batch and release their leases, the relay finish its batch; once those
//! have ended and the sessions closed, the late tasks (the `METRICS_LISTEN`
//! server, which answers readiness meanwhile) stop too.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{self, JoinSet};

use crate::infra::supervisor::Supervisor;
use crate::service::Services;

/// How much longer than the shutdown timeout stopping waits for the tasks
/// before aborting the rest: the HTTP servers cut their connections at the
/// shutdown timeout themselves, this is for anything else stuck.
const ABORT_MARGIN: Duration = Duration::from_secs(1);

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
    /// Stops the late tasks, after all the others.
    late: watch::Sender<bool>,
    late_tasks: HashSet<task::Id>,
    /// How long requests in flight may take after the shutdown signal.
    shutdown_timeout: Duration,
    tasks: JoinSet<anyhow::Result<()>>,
    names: HashMap<task::Id, String>,
    /// The HTTP server: when it ends, the process ends.
    server: Option<task::Id>,
}

impl RunningApp {
    pub(super) fn new(
        services: Arc<Services>,
        shutdown: watch::Sender<bool>,
        shutdown_timeout: Duration,
    ) -> Self {
        RunningApp {
            addr: None,
            metrics_addr: None,
            services,
            shutdown,
            late: watch::channel(false).0,
            late_tasks: HashSet::new(),
            shutdown_timeout,
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

    /// The signal of the late tasks: it turns true once every other task
    /// has ended.
    pub(super) fn late_stop(&self) -> watch::Receiver<bool> {
        self.late.subscribe()
    }

    /// Runs a task that is not restarted and stops last (on
    /// [`RunningApp::late_stop`]), as `name`.
    pub(super) fn spawn_late(
        &mut self,
        name: String,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
        self.late_tasks.insert(id);
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

    /// Asks every task to stop and reports how each ended: first all but
    /// the late ones (and the WebSocket sessions), then the late ones.
    /// Tasks still running shortly after the shutdown timeout are aborted.
    pub async fn stop(mut self) -> Vec<Ended> {
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down: draining");
        let _ = self.shutdown.send(true);
        let mut ended = Vec::new();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout + ABORT_MARGIN;
        while self.tasks.len() > self.late_tasks.len() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => ended.push(self.ended(joined)),
                Ok(None) | Err(_) => break,
            }
        }
        let sessions = self.services.health.sessions.clone();
        if tokio::time::timeout_at(deadline, sessions.all_closed()).await.is_err() {
            tracing::warn!(
                open = sessions.count(),
                "WebSocket sessions still open at the deadline"
            );
        }
        let _ = self.late.send(true);
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => ended.push(self.ended(joined)),
                Ok(None) => return ended,
                Err(_) => {
                    let grace = self.shutdown_timeout + ABORT_MARGIN;
                    tracing::warn!(?grace, "tasks did not stop in time; aborting them");
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
                let grace = self.shutdown_timeout + ABORT_MARGIN;
                (e.id(), Err(anyhow::anyhow!("did not stop within {grace:?}; aborted")))
            }
            Err(e) => (e.id(), Err(anyhow::anyhow!(e))),
        };
        self.late_tasks.remove(&id);
        (self.names.remove(&id).unwrap_or_else(|| "task".into()), result)
    }
}
