//! Supervised background work. A task that fails (returns an error or
//! panics) is logged with its name and started again after a capped
//! exponential pause, instead of ending the process or vanishing; a task
//! that returns `Ok` has finished its work and is not restarted; a stop
//! asked through the shutdown signal is not a failure.
//!
//! What each task is doing is kept on a [`TaskBoard`], which readiness
//! reads. Tasks that retry on their own (the relay) report their failures
//! there too, through a [`TaskHealth`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

/// The pause before restarting a failed task: `first`, doubled after each
/// consecutive failure, never more than `max`. A run that lasted at least
/// `max` counts as a recovery: the next failure pauses `first` again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl Backoff {
    /// The pause after `failures` (≥ 1) consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How a task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// It failed with this error and is being retried.
    Failing(String),
    /// It ended (finished, or stopped on shutdown).
    Stopped,
}

/// The state of every supervised task of a process, by name.
#[derive(Debug, Default)]
pub struct TaskBoard {
    states: Mutex<BTreeMap<String, TaskState>>,
}

impl TaskBoard {
    pub fn report(&self, task: &str, state: TaskState) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.insert(task.to_owned(), state);
    }

    pub fn state(&self, task: &str) -> Option<TaskState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).get(task).cloned()
    }

    /// The tasks failing now, by name.
    pub fn failing(&self) -> Vec<String> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states
            .iter()
            .filter(|(_, s)| matches!(s, TaskState::Failing(_)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether any task is running (not failing, not stopped).
    pub fn any_running(&self) -> bool {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.values().any(|s| *s == TaskState::Running)
    }

    /// A handle for `task` to report its own failures and recoveries.
    pub fn health(self: &Arc<Self>, task: &str) -> TaskHealth {
        TaskHealth { board: self.clone(), task: task.to_owned() }
    }
}

/// What a task that retries on its own uses to say it is failing, or
/// running again.
#[derive(Debug, Clone)]
pub struct TaskHealth {
    board: Arc<TaskBoard>,
    task: String,
}

impl TaskHealth {
    pub fn failing(&self, error: impl Into<String>) {
        self.board.report(&self.task, TaskState::Failing(error.into()));
    }

    pub fn running(&self) {
        self.board.report(&self.task, TaskState::Running);
    }
}

/// Runs tasks under supervision, reporting them on one board.
#[derive(Debug, Clone)]
pub struct Supervisor {
    board: Arc<TaskBoard>,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
}

impl Supervisor {
    /// Supervises tasks that stop when `shutdown` turns true.
    pub fn new(board: Arc<TaskBoard>, shutdown: watch::Receiver<bool>) -> Self {
        Supervisor { board, shutdown, backoff: Backoff::default() }
    }

    /// Supervises tasks that end on their own (their input closes): no
    /// shutdown signal ever comes.
    pub fn without_shutdown(board: Arc<TaskBoard>) -> Self {
        Supervisor::new(board, watch::channel(false).1)
    }

    pub fn with_backoff(self, backoff: Backoff) -> Self {
        Supervisor { backoff, ..self }
    }

    /// Runs the task `start` makes, on a tokio task of its own, and makes a
    /// new one after each failure, until one returns `Ok` or shutdown is
    /// asked. Returns `Ok` for a task that finished or was stopped, and the
    /// error of a task that failed while stopping.
    pub async fn run<F, Fut>(self, name: impl Into<String>, mut start: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        let mut shutdown = self.shutdown.clone();
        let mut failures = 0;
        loop {
            self.board.report(&name, TaskState::Running);
            let started = Instant::now();
            let error = match Attempt(tokio::spawn(start())).await {
                Ok(Ok(())) => {
                    self.board.report(&name, TaskState::Stopped);
                    return Ok(());
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => failure_of(e),
            };
            if *shutdown.borrow() {
                self.board.report(&name, TaskState::Stopped);
                return Err(anyhow::anyhow!("failed while stopping: {error}"));
            }
            if started.elapsed() >= self.backoff.max {
                failures = 0;
            }
            failures += 1;
            let pause = self.backoff.delay(failures);
            tracing::error!(task = %name, error = %error, restart_in = ?pause, "task failed; restarting");
            self.board.report(&name, TaskState::Failing(error));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop_asked(&mut shutdown) => {
                    self.board.report(&name, TaskState::Stopped);
                    return Ok(());
                }
            }
        }
    }
}

/// Resolves when shutdown is asked; never, when nobody can ask any more.
async fn stop_asked(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a task that did not return tells: its panic message, or that it
/// was cancelled.
fn failure_of(err: JoinError) -> String {
    if !err.is_panic() {
        return "cancelled".into();
    }
    let panic = err.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".into());
    format!("panicked: {message}")
}

/// One run of a task, aborted if its supervisor goes away first.
struct Attempt(JoinHandle<anyhow::Result<()>>);

impl Future for Attempt {
    type Output = Result<anyhow::Result<()>, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> Backoff {
        Backoff { first: Duration::from_millis(1), max: Duration::from_millis(20) }
    }

    #[test]
    fn the_pause_doubles_up_to_its_cap() {
        let backoff = Backoff { first: Duration::from_millis(100), max: Duration::from_secs(1) };
        let pauses: Vec<_> = (1..=6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }

    /// Supervised as the event writer's tasks are: no shutdown signal,
    /// they end when their queue closes.
    #[tokio::test]
    async fn a_task_that_panics_is_restarted_until_it_finishes() {
        let board = Arc::new(TaskBoard::default());
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let supervisor = Supervisor::without_shutdown(board.clone()).with_backoff(quick());
        let supervised = supervisor.run("event writer 1", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if run < 3 {
                    panic!("run {run} breaks");
                }
                Ok(())
            }
        });
        let ended = tokio::time::timeout(Duration::from_secs(5), supervised).await;
        assert!(ended.expect("restarted within 5 s").is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(board.state("event writer 1"), Some(TaskState::Stopped));
    }

    #[tokio::test]
    async fn a_failing_task_shows_on_the_board_and_shutdown_stops_it_cleanly() {
        let board = Arc::new(TaskBoard::default());
        let (stop, shutdown) = watch::channel(false);
        let backoff = Backoff { first: Duration::from_secs(60), max: Duration::from_secs(60) };
        let supervised = tokio::spawn(
            Supervisor::new(board.clone(), shutdown)
                .with_backoff(backoff)
                .run("relay", || async { anyhow::bail!("redis unreachable") }),
        );
        let failing = async {
            while board.failing() != ["relay"] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), failing).await.expect("reported failing");
        assert_eq!(board.state("relay"), Some(TaskState::Failing("redis unreachable".into())));
        assert!(!board.any_running());
        stop.send(true).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), supervised).await;
        assert!(ended.expect("stops at once, mid-pause").unwrap().is_ok());
        assert_eq!(board.state("relay"), Some(TaskState::Stopped));
    }

    #[tokio::test]
    async fn a_task_that_stops_on_shutdown_is_not_restarted() {
        let board = Arc::new(TaskBoard::default());
        let (stop, shutdown) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let task_shutdown = shutdown.clone();
        let supervised =
            tokio::spawn(Supervisor::new(board.clone(), shutdown).with_backoff(quick()).run(
                "projector",
                move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut shutdown = task_shutdown.clone();
                    async move {
                        let _ = shutdown.wait_for(|s| *s).await;
                        Ok(())
                    }
                },
            ));
        let started = async {
            while board.state("projector").is_none() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), started).await.expect("started");
        assert!(board.any_running());
        stop.send(true).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), supervised).await;
        assert!(ended.expect("stops").unwrap().is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
