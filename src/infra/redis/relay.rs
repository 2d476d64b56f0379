//! The relay: the events table is the outbox, and this task moves it to
//! Redis Streams.
//!
//! It reads in commit order through [`EventStore::read_committed`] (on
//! PostgreSQL events commit in `(tx_id, position)` order, so it reads every
//! committed event at once and never waits for unrelated transactions),
//! appends each event to its partition stream in one pipeline, advances its
//! checkpoint (committing while it reads the next batch; one save at a
//! time, in order; a save does not wait for the disk flush, so a crash of
//! PostgreSQL may move it back and the relay then publishes those events
//! again), and then appends a watermark to every partition the
//! batch left idle (a watermark is never ahead of the committed checkpoint for
//! longer than it takes to commit it, so consumers can refuse one that
//! stays ahead). A partition that got events learns the same watermark from
//! its last event's entry, so a busy partition costs no extra entry and no
//! extra wake-up of its consumer. While it has nothing to publish, it
//! saves its checkpoint and sends every partition a watermark again every
//! few seconds. A crash in between re-publishes a batch; consumers
//! skip what their checkpoints already cover. One relay holds a lease at a time. It wakes on
//! PostgreSQL `NOTIFY` (sent by a trigger on insert) and on local commits,
//! with polling as a fallback, and periodically trims the streams below what
//! every consumer group has acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use super::lease::Lease;
use super::{LocalRelay, RELAY_CHECKPOINT, RedisSettings, entry_id_key};
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::partition::{partition_key, partition_of};
use crate::es::store::EventStore;
use crate::infra::projection_runtime::checkpoint::{
    Claim, load_checkpoint, save_checkpoint_unflushed,
};
use crate::infra::supervisor::TaskHealth;
use crate::infra::trace_context::{self, of_metadata};

/// Pause after a wake-up so one batch carries the commits of a burst.
const LINGER: Duration = Duration::from_millis(1);

/// The relay's lag in events is counted up to this many.
const RELAY_LAG_CAP: u64 = 100_000;

/// How often a relay that is behind counts how far.
const LAG_COUNT_EVERY: Duration = Duration::from_secs(1);

/// How long a relay with nothing to publish waits before it says again,
/// to its checkpoint and to every partition, how far it has published.
const IDLE_REPEAT: Duration = Duration::from_secs(5);

/// The PostgreSQL channel the events trigger notifies.
pub const NOTIFY_CHANNEL: &str = "eventfold_events";

#[derive(Clone)]
pub struct Relay {
    pub store: Arc<dyn EventStore>,
    pub write_db: DatabaseConnection,
    /// Set on PostgreSQL, to LISTEN for new events.
    pub postgres_url: Option<String>,
    pub client: redis::Client,
    pub settings: RedisSettings,
    pub owner: String,
    /// How long the relay lease lives without renewal (`LEASE_TTL_MS`).
    pub lease_ttl: Duration,
    pub batch_size: u64,
    /// Entries kept in a stream no consumer group reads.
    pub max_unread: u64,
    /// Where the relay says it is failing (a step failed; it retries) or
    /// running again, for readiness.
    pub health: TaskHealth,
    /// Where consumers in this process learn the checkpoint it commits.
    pub local: LocalRelay,
}

impl Relay {
    pub async fn run(
        self,
        mut commits: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let (_wake, mut wake_rx) = spawn_listener(self.postgres_url.clone(), shutdown.clone());
        let lease = Lease {
            key: self.settings.lease_key("relay"),
            owner: self.owner.clone(),
            ttl: self.lease_ttl,
        };
        let mut conn: Option<MultiplexedConnection> = None;
        let mut holding = false;
        let mut renewed = Instant::now();
        let mut trimmed = Instant::now();
        // When the relay last published, or repeated how far it has.
        let mut said = Instant::now();
        // When the lag in events was last counted (a bounded index scan).
        let mut counted: Option<Instant> = None;
        let mut checkpoint = Position::START;
        // Per partition, the position of the last event published (or a
        // bound above it): every entry carries it, so a consumer can tell
        // when it missed one.
        let mut last: Vec<Position> = Vec::new();
        let mut failing = false;
        // The checkpoint save of the last batch, committing while the relay
        // reads on (one at a time, so they commit in order).
        let mut saving: Option<Saving> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let step = async {
                if conn.is_none() {
                    conn = Some(super::connection(&self.client).await?);
                }
                let c = conn.as_mut().expect("connected above");
                if !holding {
                    settle(&mut saving).await;
                    holding = lease.acquire(c).await?;
                    if holding {
                        checkpoint = load_checkpoint(&self.write_db, RELAY_CHECKPOINT).await?;
                        // Everything up to the checkpoint was published.
                        last = vec![checkpoint; self.settings.partitions as usize];
                        self.local.set(Some(checkpoint));
                        renewed = Instant::now();
                        tracing::info!(owner = %self.owner, %checkpoint, "relay lease acquired");
                    }
                    return Ok::<u64, anyhow::Error>(0);
                }
                if renewed.elapsed() > lease.ttl / 4 {
                    if !lease.renew(c).await? {
                        tracing::warn!("relay lease lost");
                        holding = false;
                        self.local.set(None);
                        return Ok(0);
                    }
                    renewed = Instant::now();
                }
                if trimmed.elapsed() > Duration::from_secs(5) {
                    trimmed = Instant::now();
                    self.trim(c).await?;
                }
                let count_lag = counted.is_none_or(|c| c.elapsed() >= LAG_COUNT_EVERY);
                let result =
                    self.publish_batch(c, &mut checkpoint, &mut last, &mut saving, count_lag).await;
                if count_lag && matches!(result, Ok(n) if n == self.batch_size) {
                    counted = Some(Instant::now());
                }
                match result {
                    Ok(0) if said.elapsed() > IDLE_REPEAT => {
                        self.repeat(c, checkpoint, &last, &mut saving).await?;
                        said = Instant::now();
                    }
                    Ok(0) => {}
                    _ => said = Instant::now(),
                }
                result
            };
            let published = step.await;
            match (&published, failing) {
                (Err(e), _) => {
                    // The lease may lapse while it fails.
                    self.local.set(None);
                    let error = format!("{e:#}");
                    tracing::warn!(error = %error, "relay step failed; retrying");
                    self.health.failing(error);
                    failing = true;
                }
                (Ok(_), true) => {
                    self.health.running();
                    failing = false;
                }
                (Ok(_), false) => {}
            }
            // Linger after a wake-up only under load (the last batch carried
            // several events), so an idle system publishes at once.
            let linger = if matches!(published, Ok(n) if n > 1) { LINGER } else { Duration::ZERO };
            let wait = match published {
                Ok(n) if n == self.batch_size => continue,
                Ok(_) if holding => Duration::from_millis(100),
                Ok(_) => Duration::from_secs(1),
                Err(_) => {
                    conn = None;
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = commits.changed() => tokio::time::sleep(linger).await,
                _ = wake_rx.changed() => tokio::time::sleep(linger).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.local.set(None);
        settle(&mut saving).await;
        if holding && let Some(c) = conn.as_mut() {
            let _ = lease.release(c).await;
        }
        Ok(())
    }

    /// Publishes the next batch; returns how many events it carried.
    async fn publish_batch(
        &self,
        conn: &mut MultiplexedConnection,
        checkpoint: &mut Position,
        last: &mut [Position],
        saving: &mut Option<Saving>,
        count_lag: bool,
    ) -> anyhow::Result<u64> {
        let events = self.store.read_committed(*checkpoint, self.batch_size).await?;
        // How long each event took from its append to this read: the wait
        // for a wake-up (and for anything else the read must wait for).
        let read_at = chrono::Utc::now();
        let read_age = metrics::histogram!("eventfold_relay_read_age_seconds");
        for event in &events {
            let age = (read_at - event.recorded_at).num_microseconds().unwrap_or(0).max(0);
            read_age.record(age as f64 / 1e6);
        }
        let Some(newest) = events.last().map(|e| e.position) else {
            metrics::gauge!("eventfold_relay_lag_events").set(0.0);
            metrics::gauge!("eventfold_relay_lag_seconds").set(0.0);
            return Ok(0);
        };
        // Open (not entered) until the batch is out: its duration is the publish.
        let _span = tracing::debug_span!("relay publish", events = events.len());
        trace_context::link_batch(&_span, events.iter().filter_map(|e| of_metadata(&e.metadata)));
        let partitions: Vec<usize> = events
            .iter()
            .map(|e| partition_of(partition_key(e), self.settings.partitions) as usize)
            .collect();
        // The last event of each partition in this batch carries the
        // watermark: every event up to `newest` of its partition is in this
        // batch, before it.
        let mut last_of = vec![None; last.len()];
        for (i, partition) in partitions.iter().enumerate() {
            last_of[*partition] = Some(i);
        }
        let watermark = newest.to_string();
        let mut after = last.to_vec();
        let mut pipe = redis::pipe();
        for (i, (event, partition)) in events.iter().zip(&partitions).enumerate() {
            let partition = *partition;
            let xadd = pipe
                .cmd("XADD")
                .arg(self.settings.stream_key(partition as u32))
                .arg("*")
                .arg("e")
                .arg(serde_json::to_string(event)?)
                .arg("p")
                .arg(after[partition].to_string());
            if last_of[partition] == Some(i) {
                xadd.arg("w").arg(&watermark);
            }
            xadd.ignore();
            after[partition] = event.position;
        }
        pipe.query_async::<()>(conn).await?;
        // Consumers in this process may apply the batch now: it was read
        // from the store, so it is as real as the committed checkpoint says.
        self.local.set(Some(newest));
        // The checkpoint commits while the relay reads the next batch; the
        // previous save must have committed first (or its error is this
        // step's).
        committed(saving).await?;
        let db = self.write_db.clone();
        *saving = Some(tokio::spawn(async move {
            save_checkpoint_unflushed(&db, &Claim::unleased(RELAY_CHECKPOINT), newest).await
        }));
        *checkpoint = newest;
        last.copy_from_slice(&after);
        // Then every partition the batch left idle learns that everything up
        // to `newest` has been sent. Only after the checkpoint: a consumer
        // refuses a watermark past the relay's committed checkpoint, as forged.
        let mut pipe = redis::pipe();
        let mut any_idle = false;
        for (partition, previous) in last.iter().enumerate() {
            if last_of[partition].is_some() {
                continue;
            }
            any_idle = true;
            self.watermark(&mut pipe, partition, newest, *previous);
        }
        if any_idle {
            committed(saving).await?;
            pipe.query_async::<()>(conn).await?;
        }
        self.published(&events, newest, count_lag).await?;
        Ok(events.len() as u64)
    }

    /// Says again how far the relay has published, while it has nothing
    /// new: its checkpoint is saved again (a crash of PostgreSQL may have
    /// lost the last save, which does not wait for the flush) and every
    /// partition gets a watermark. A consumer whose read transactions the
    /// same crash lost finds, with it, its checkpoint behind what it had
    /// applied, or an entry it has not seen, and catches up from the store:
    /// on an idle system nothing else would tell it.
    async fn repeat(
        &self,
        conn: &mut MultiplexedConnection,
        checkpoint: Position,
        last: &[Position],
        saving: &mut Option<Saving>,
    ) -> anyhow::Result<()> {
        if checkpoint == Position::START {
            return Ok(());
        }
        committed(saving).await?;
        save_checkpoint_unflushed(&self.write_db, &Claim::unleased(RELAY_CHECKPOINT), checkpoint)
            .await?;
        let mut pipe = redis::pipe();
        for (partition, previous) in last.iter().enumerate() {
            self.watermark(&mut pipe, partition, checkpoint, *previous);
        }
        pipe.query_async::<()>(conn).await?;
        Ok(())
    }

    /// Adds to `pipe` a watermark entry for `partition`: everything up to
    /// `at` is published, its last event being at `previous`.
    fn watermark(
        &self,
        pipe: &mut redis::Pipeline,
        partition: usize,
        at: Position,
        previous: Position,
    ) {
        pipe.cmd("XADD")
            .arg(self.settings.stream_key(partition as u32))
            .arg("*")
            .arg("w")
            .arg(at.to_string())
            .arg("p")
            .arg(previous.to_string())
            .ignore();
    }

    /// Records a published batch: how many, up to where, and what was left
    /// behind. After a partial batch nothing is (the relay has read
    /// everything committed); after a full one the rest is counted when
    /// `count_lag` (at most once per [`LAG_COUNT_EVERY`]: a catching-up
    /// relay publishes batch after batch, and each count scans the index).
    async fn published(
        &self,
        events: &[RecordedEvent],
        newest: Position,
        count_lag: bool,
    ) -> anyhow::Result<()> {
        metrics::counter!("eventfold_relay_published_events_total").increment(events.len() as u64);
        metrics::gauge!("eventfold_relay_position").set(newest.pos as f64);
        let behind = match (events.len() as u64 == self.batch_size, count_lag) {
            (false, _) => Some(0),
            (true, true) => Some(self.store.count_after(newest, RELAY_LAG_CAP).await?),
            (true, false) => None,
        };
        if let Some(behind) = behind {
            metrics::gauge!("eventfold_relay_lag_events").set(behind as f64);
        }
        let oldest = events.first().map_or(chrono::Utc::now(), |e| e.recorded_at);
        let waited = (chrono::Utc::now() - oldest).num_microseconds().unwrap_or(0).max(0);
        metrics::gauge!("eventfold_relay_lag_seconds").set(waited as f64 / 1e6);
        Ok(())
    }

    /// Drops entries every consumer group is done with.
    async fn trim(&self, conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
        for partition in 0..self.settings.partitions {
            let key = self.settings.stream_key(partition);
            let groups: redis::RedisResult<StreamInfoGroupsReply> =
                redis::cmd("XINFO").arg("GROUPS").arg(&key).query_async(conn).await;
            let Ok(groups) = groups else { continue };
            if groups.groups.is_empty() {
                let _: i64 = redis::cmd("XTRIM")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.max_unread)
                    .query_async(conn)
                    .await?;
                continue;
            }
            let mut floor: Option<String> = None;
            for group in &groups.groups {
                let pending: StreamPendingReply =
                    redis::cmd("XPENDING").arg(&key).arg(&group.name).query_async(conn).await?;
                let done = match pending {
                    StreamPendingReply::Data(d) if d.count > 0 => d.start_id,
                    _ => group.last_delivered_id.clone(),
                };
                if floor.as_ref().is_none_or(|f| entry_id_key(&done) < entry_id_key(f)) {
                    floor = Some(done);
                }
            }
            if let Some(floor) = floor {
                let _: i64 =
                    redis::cmd("XTRIM").arg(&key).arg("MINID").arg(floor).query_async(conn).await?;
            }
        }
        Ok(())
    }
}

/// A relay checkpoint save under way.
type Saving = tokio::task::JoinHandle<Result<(), sea_orm::DbErr>>;

/// Waits for a save under way, if any; its failure is the caller's.
async fn committed(saving: &mut Option<Saving>) -> anyhow::Result<()> {
    if let Some(save) = saving.take() {
        save.await??;
    }
    Ok(())
}

/// Waits for a save under way, if any, whatever its outcome (a failed save
/// leaves the committed checkpoint behind until a later one commits; a relay
/// starting from it publishes those events again, which consumers skip).
async fn settle(saving: &mut Option<Saving>) {
    let _ = committed(saving).await;
}

/// LISTENs on PostgreSQL for the insert trigger's notifications, until
/// shutdown or until the relay run that asked drops the returned receiver
/// (a restarted relay starts a listener of its own). The caller keeps the
/// returned sender too, so that without a listener the signal stays quiet
/// instead of closing.
fn spawn_listener(
    url: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Sender<u64>, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let Some(url) = url else { return (tx, rx) };
    let sender = tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = listen_for_commits(&url, &sender, "relay") => {}
            _ = shutdown.changed() => {}
        }
    });
    (tx, rx)
}

/// LISTENs for the events trigger's notifications ([`NOTIFY_CHANNEL`]) and
/// bumps `signal` at each, reconnecting a second after a failure (the
/// caller polls meanwhile), until every receiver of `signal` is gone.
pub(crate) async fn listen_for_commits(url: &str, signal: &watch::Sender<u64>, who: &str) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        let listening = async {
            let mut listener = PgListener::connect(url).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            loop {
                listener.recv().await?;
                signal.send_modify(|n| *n = n.wrapping_add(1));
            }
            #[allow(unreachable_code)]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            r = listening => if let Err(e) = r {
                tracing::warn!(error = %e, "{who}: LISTEN failed; polling until it is back");
            },
            () = signal.closed() => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
