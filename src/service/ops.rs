//! Operations: projection progress (for the API, `/metrics` and the CLI),
//! retrying dead letters, rebuilding a projection, stream history from the
//! audit log, and readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::{Caller, MinPosition, ServiceError, Services};
use crate::es::envelope::Position;
use crate::es::projector::Projection;
use crate::infra::db::{self, PoolStats};
use crate::infra::event_store::SeaEventStore;
use crate::infra::projection_runtime::dead_letters::{self, DeadLetter, Retried as RetryReport};
use crate::infra::projection_runtime::{Applier, ProjectionStatus, RunState, RuntimeSettings};
use crate::infra::rebuild::{Rebuild, RebuildError, RebuildReport};
use crate::infra::redis::RedisPing;
use crate::infra::supervisor::TaskBoard;
use crate::read_models::Page;
use crate::read_models::audit_log::{self, query::LoggedEvent};

/// Lag is counted up to this many events: enough to tell "catching up"
/// from "far behind", and counting it stays a bounded index scan however
/// far behind a projector is.
pub const LAG_CAP: u64 = 10_000;

/// How far one projection is.
pub struct ProjectionReport {
    pub name: &'static str,
    pub checkpoint: Position,
    /// The checkpoint of each partition, in partition order (one entry
    /// without Redis); `checkpoint` is the lowest.
    pub partitions: Vec<Position>,
    /// Committed events not yet applied, up to [`LAG_CAP`].
    pub lag: u64,
    /// How long the oldest of those has waited, in seconds (0 without lag).
    pub lag_seconds: f64,
    /// Its runner's state when it runs in this process; `None` when it runs
    /// elsewhere.
    pub state: Option<RunState>,
    /// Events parked (or waiting behind one); see [`Services::dead_letters`].
    pub dead_letters: u64,
}

/// Read-your-writes in this process, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct WaitStats {
    /// Requests waiting for `minPosition` now.
    pub waiting: usize,
    /// Reads of the stored checkpoints made on behalf of all waiters.
    pub refreshes: u64,
}

/// The databases a rebuild works on.
#[derive(Debug, Clone)]
pub struct RebuildSource {
    /// The event store's URL: the replay reads the log on connections of
    /// its own (on SQLite the in-place rebuild holds the application's only
    /// connection meanwhile).
    pub events_url: String,
    /// The read database's URL (a rebuild migrates a shadow schema there).
    pub read_url: String,
}

impl Services {
    /// The projection called `name`.
    pub fn projection(&self, name: &str) -> Result<Arc<dyn Projection>, ServiceError> {
        if let Some(found) = self.projections.iter().find(|p| p.name() == name) {
            return Ok(found.clone());
        }
        let known: Vec<_> = self.projections.iter().map(|p| p.name()).collect();
        Err(ServiceError::NotFound(format!(
            "no projection named {name:?}; known: {}",
            known.join(", ")
        )))
    }

    /// Applies the dead letters of projection `name` again, oldest first
    /// (after their cause was fixed).
    pub async fn retry_dead_letters(&self, name: &str) -> Result<RetryReport, ServiceError> {
        let applier = Applier {
            read_db: self.read_db.clone(),
            projection: self.projection(name)?,
            changes: self.changes.clone(),
            monitor: self.monitor.clone(),
            settings: RuntimeSettings::default(),
        };
        let keys = self.read_your_writes.keys(name);
        applier.retry_parked(self.store.as_ref(), &keys).await.map_err(ServiceError::internal)
    }

    /// Replays the event store into fresh tables of projection `name` and
    /// swaps them in; `progress(applied, total)` follows the replay. A
    /// second rebuild of a projection while one runs is refused with
    /// [`ServiceError::AlreadyRunning`].
    pub async fn rebuild_projection(
        &self,
        name: &str,
        progress: impl FnMut(u64, u64),
    ) -> Result<RebuildReport, ServiceError> {
        let projection = self.projection(name)?;
        let log_db = crate::infra::db::connect(&self.rebuild_source.events_url, 2)
            .await
            .map_err(ServiceError::internal)?;
        let rebuild = Rebuild {
            store: Arc::new(SeaEventStore::new(log_db)),
            read_url: self.rebuild_source.read_url.clone(),
            read_db: self.read_db.clone(),
            checkpoint_keys: self.read_your_writes.keys(name),
            projection,
            batch_size: 1000,
        };
        rebuild.run(progress).await.map_err(|e| match e {
            RebuildError::AlreadyRunning(_) => ServiceError::AlreadyRunning(e.to_string()),
            RebuildError::Failed(e) => ServiceError::internal(e),
        })
    }

    /// Progress of every projection: checkpoint, lag and the number of
    /// parked events. A few bounded queries per projection, however far
    /// behind it is and however many events it parked.
    pub async fn projection_reports(&self) -> Result<Vec<ProjectionReport>, ServiceError> {
        let mut reports = Vec::with_capacity(self.projections.len());
        for name in self.projections.iter().map(|p| p.name()) {
            let partitions = self.read_your_writes.checkpoints(name).await?;
            let checkpoint = partitions.iter().copied().min().unwrap_or_default();
            let lag = self.store.count_after(checkpoint, LAG_CAP).await?;
            let lag_seconds = match lag {
                0 => 0.0,
                _ => self.store.read_committed(checkpoint, 1).await?.first().map_or(0.0, |e| {
                    let waited = chrono::Utc::now() - e.recorded_at;
                    waited.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6
                }),
            };
            let dead_letters = dead_letters::count(&self.read_db, name).await?;
            let state = self.monitor.state(name);
            reports.push(ProjectionReport {
                name,
                checkpoint,
                partitions,
                lag,
                lag_seconds,
                state,
                dead_letters,
            });
        }
        Ok(reports)
    }

    /// [`Services::projection_reports`], for staff (clerks read them too).
    pub async fn projections(
        &self,
        caller: &Caller,
    ) -> Result<Vec<ProjectionReport>, ServiceError> {
        caller.require_staff()?;
        self.projection_reports().await
    }

    /// A page of the events projection `name` parked, oldest first, after
    /// position `after` (staff).
    pub async fn dead_letters(
        &self,
        caller: &Caller,
        name: &str,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Page<DeadLetter>, ServiceError> {
        caller.require_staff()?;
        let (items, has_next) = dead_letters::page(&self.read_db, name, after, limit).await?;
        Ok(Page { items, has_next })
    }

    /// The history of one stream, oldest first, after version `after_version`
    /// (staff).
    pub async fn stream_events(
        &self,
        caller: &Caller,
        stream_type: &str,
        stream_id: Uuid,
        after_version: i64,
        limit: u64,
        min_position: MinPosition<'_>,
    ) -> Result<Page<LoggedEvent>, ServiceError> {
        caller.require_staff()?;
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

    /// Every event of the business transaction `correlation_id`, across
    /// streams, in commit order after `after` (admins).
    pub async fn events_by_correlation(
        &self,
        caller: &Caller,
        correlation_id: &str,
        after: Option<Position>,
        limit: u64,
        min_position: MinPosition<'_>,
    ) -> Result<Page<LoggedEvent>, ServiceError> {
        caller.require_admin()?;
        self.wait_for(&[audit_log::NAME], min_position).await?;
        let page = audit_log::query::correlation_page(&self.read_db, correlation_id, after, limit);
        Ok(page.await?)
    }

    /// The database pools of this process: the event store's, and the
    /// read database's when it is another one.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let mut pools = vec![db::pool_stats("events", self.health.event_store.db())];
        if self.rebuild_source.read_url != self.rebuild_source.events_url {
            pools.push(db::pool_stats("read", &self.read_db));
        }
        pools
    }

    /// Read-your-writes in this process: requests waiting, and the shared
    /// reads of the stored checkpoints made for them.
    pub fn wait_stats(&self) -> WaitStats {
        let rw = &self.read_your_writes;
        WaitStats { waiting: rw.waiting(), refreshes: rw.refreshes.load(Ordering::Relaxed) }
    }

    /// Whether this process can do its work now, and if not, why. Every
    /// check is cheap and they run together, each within [`PROBE_TIMEOUT`]:
    /// the event store's and the read database's pings, Redis's `PING`
    /// (when the transport uses it), a live event writer task, and no
    /// projection or supervised task of this process failing.
    pub async fn ready(&self) -> ReadinessReport {
        let probes = &self.health;
        if *probes.draining.borrow() {
            // Shutting down: whatever else holds, send traffic elsewhere.
            return ReadinessReport { reasons: vec!["draining".into()] };
        }
        let redis = async {
            match &probes.redis {
                Some(redis) => redis.ping(PROBE_TIMEOUT).await,
                None => true,
            }
        };
        let (event_store, read_db, redis) =
            tokio::join!(answers(probes.event_store.ping()), answers(self.read_db.ping()), redis);
        let mut reasons = Vec::new();
        let checks = [
            (event_store, "event store unreachable"),
            (read_db, "read database unreachable"),
            (redis, "redis unreachable"),
            (probes.event_store.writer_running(), "event writer down"),
        ];
        reasons.extend(checks.iter().filter(|(ok, _)| !ok).map(|(_, reason)| reason.to_string()));
        for name in self.projections.iter().map(|p| p.name()) {
            if self.monitor.state(name).is_some_and(|s| s.status == ProjectionStatus::Failing) {
                reasons.push(format!("projection {name} failing"));
            }
        }
        reasons.extend(probes.tasks.failing().into_iter().map(|task| format!("{task} failing")));
        ReadinessReport { reasons }
    }
}

/// The longest a readiness check waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `ping` succeeds within [`PROBE_TIMEOUT`].
async fn answers<E>(ping: impl Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Ok(())))
}

/// What readiness looks at besides the read database and the projection
/// monitor.
pub struct HealthProbes {
    /// The event store: its database must answer and a writer task live.
    pub event_store: Arc<SeaEventStore>,
    /// Redis, when the transport uses it.
    pub redis: Option<RedisPing>,
    /// The supervised tasks of this process (relay, projectors).
    pub tasks: Arc<TaskBoard>,
    /// Turns true when the process starts shutting down: from then on it
    /// is not ready, and long-lived sessions close.
    pub draining: watch::Receiver<bool>,
    /// The long-lived client sessions open now.
    pub sessions: Arc<Sessions>,
}

/// The long-lived client sessions (WebSocket connections) open in this
/// process: shutdown waits, bounded, until they have closed.
#[derive(Debug, Default)]
pub struct Sessions {
    open: AtomicUsize,
    closed: Notify,
}

impl Sessions {
    /// Counts a session as open until the returned guard is dropped.
    pub fn open(self: &Arc<Self>) -> Session {
        self.open.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!("eventfold_websocket_connections").increment(1.0);
        Session(self.clone())
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves once no session is open.
    pub async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            if self.count() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// One open session (see [`Sessions::open`]).
#[derive(Debug)]
pub struct Session(Arc<Sessions>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("eventfold_websocket_connections").decrement(1.0);
        self.0.closed.notify_waiters();
    }
}

/// Whether a process should receive traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadinessReport {
    /// What is wrong, in short words (`redis unreachable`, `projection
    /// bank_account_summary failing`); empty when ready.
    pub reasons: Vec<String>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }
}
