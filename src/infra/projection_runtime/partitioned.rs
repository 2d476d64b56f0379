//! Projection workers on Redis consumer groups.
//!
//! Each projection is one consumer group per partition stream. A worker
//! holds a lease per partition it owns and takes a fair share of the
//! partitions (live workers announce themselves in a sorted set), so one
//! stream's events are applied by one worker, in order. On taking a
//! partition a worker claims what the previous owner left pending
//! (XAUTOCLAIM), catches up from the event store up to the relay's
//! checkpoint (entries may have been trimmed, or lost with a Redis restart),
//! then reads its pending entries and new ones, applies each batch with its
//! checkpoint in one read transaction and acknowledges only after commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::applier::Applier;
use super::checkpoint::load_checkpoint;
use super::monitor::ProjectionStatus;
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::partition::{partition_key, partition_of};
use crate::es::store::EventStore;
use crate::infra::redis::lease::Lease;
use crate::infra::redis::progress::record;
use crate::infra::redis::{RELAY_CHECKPOINT, RedisSettings, connection};

/// How often a watermark also moves the partition's database checkpoint
/// (which bounds how far back a restarted consumer catches up from).
const PERSIST_WATERMARK_EVERY: Duration = Duration::from_secs(5);

pub struct PartitionedRunner {
    pub applier: Applier,
    pub store: Arc<dyn EventStore>,
    pub write_db: DatabaseConnection,
    pub client: redis::Client,
    pub settings: RedisSettings,
    pub worker_id: String,
    pub lease_ttl: Duration,
    pub batch_size: usize,
}

struct Owned {
    lease: Lease,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PartitionedRunner {
    fn name(&self) -> &'static str {
        self.applier.name()
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut owned: HashMap<u32, Owned> = HashMap::new();
        let mut conn: Option<MultiplexedConnection> = None;
        self.applier.monitor.set(self.name(), ProjectionStatus::Running, None);
        while !*shutdown.borrow() {
            if let Err(e) = self.coordinate(&mut conn, &mut owned).await {
                tracing::warn!(projection = self.name(), error = %e, "lease coordination failed");
                conn = None;
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(self.lease_ttl / 5) => {}
            }
        }
        for (_, o) in owned.drain() {
            let _ = o.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), o.task).await;
            if let Some(c) = conn.as_mut() {
                let _ = o.lease.release(c).await;
            }
        }
        self.applier.monitor.set(self.name(), ProjectionStatus::Stopped, None);
        Ok(())
    }

    /// One round: heartbeat, renew, shed beyond the fair share, acquire up to it.
    async fn coordinate(
        self: &Arc<Self>,
        conn: &mut Option<MultiplexedConnection>,
        owned: &mut HashMap<u32, Owned>,
    ) -> anyhow::Result<()> {
        if conn.is_none() {
            *conn = Some(connection(&self.client).await?);
        }
        let c = conn.as_mut().expect("connected above");
        let workers = self.settings.workers_key(self.name());
        let now = chrono::Utc::now().timestamp_millis();
        let stale = now - 2 * self.lease_ttl.as_millis() as i64;
        let (_, _, live): (i64, i64, i64) = redis::pipe()
            .cmd("ZADD")
            .arg(&workers)
            .arg(now)
            .arg(&self.worker_id)
            .cmd("ZREMRANGEBYSCORE")
            .arg(&workers)
            .arg("-inf")
            .arg(stale)
            .cmd("ZCARD")
            .arg(&workers)
            .query_async(c)
            .await?;
        let partitions = self.settings.partitions;
        let fair = partitions.div_ceil(live.max(1) as u32) as usize;

        let mut lost = Vec::new();
        for (p, o) in owned.iter() {
            if o.task.is_finished() || !o.lease.renew(c).await? {
                lost.push(*p);
            }
        }
        for p in lost {
            if let Some(o) = owned.remove(&p) {
                tracing::warn!(projection = self.name(), partition = p, "partition lost");
                let _ = o.stop.send(true);
                o.task.abort();
            }
        }
        while owned.len() > fair {
            let p = *owned.keys().max().expect("not empty");
            let o = owned.remove(&p).expect("present");
            let _ = o.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), o.task).await;
            o.lease.release(c).await?;
            tracing::info!(projection = self.name(), partition = p, "partition handed over");
        }
        for p in 0..partitions {
            if owned.len() >= fair {
                break;
            }
            if owned.contains_key(&p) {
                continue;
            }
            let lease = Lease {
                key: self.settings.lease_key(&format!("{}:{p}", self.name())),
                owner: self.worker_id.clone(),
                ttl: self.lease_ttl,
            };
            if lease.acquire(c).await? {
                tracing::info!(projection = self.name(), partition = p, worker = %self.worker_id, "partition acquired");
                let (stop, stop_rx) = watch::channel(false);
                let task = tokio::spawn(self.clone().run_partition(p, stop_rx));
                owned.insert(p, Owned { lease, stop, task });
            }
        }
        Ok(())
    }

    async fn run_partition(self: Arc<Self>, partition: u32, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.consume(partition, &mut stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(projection = self.name(), partition, error = %format!("{e:#}"), "partition consumer failed; restarting");
                    self.applier.monitor.set(
                        self.name(),
                        ProjectionStatus::Failing,
                        Some(e.to_string()),
                    );
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }

    /// Consumes one partition until `stop`: join the group, claim what the
    /// previous owner left pending, catch up from the store, then read,
    /// apply and acknowledge batch after batch.
    async fn consume(
        &self,
        partition: u32,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut part = Partition {
            stream: self.settings.stream_key(partition),
            checkpoint_key: RedisSettings::checkpoint_key(self.name(), partition),
            progress_key: self.settings.progress_key(self.name(), partition),
            conn: connection(&self.client).await?,
        };
        self.join_group(&mut part).await?;
        self.claim_pending(&mut part).await?;
        // Entries may be missing from Redis (trimmed, or lost in a restart);
        // the store has everything the relay has published.
        let published = load_checkpoint(&self.write_db, RELAY_CHECKPOINT).await?;
        self.catch_up_from_store(partition, &part.checkpoint_key, published).await?;
        self.applier.monitor.set(self.name(), ProjectionStatus::Running, None);
        record(&mut part.conn, &part.progress_key, published).await?;

        let mut persisted = Instant::now();
        // First re-read what this consumer already holds, then new entries.
        let mut backlog = true;
        while !*stop.borrow() {
            let entries = tokio::select! {
                read = self.read_batch(&mut part, backlog) => read?,
                _ = stop.changed() => return Ok(()),
            };
            if entries.is_empty() {
                backlog = false;
                continue;
            }
            let batch = decode(&entries);
            let carried = batch.events.len();
            self.apply_batch(&mut part, batch, &mut persisted).await?;
            self.acknowledge(&mut part, &entries).await?;
            // Linger only under load (several events per read): an idle
            // partition answers at once, a busy one gathers bigger batches.
            if !backlog && carried > 1 && entries.len() < self.batch_size {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(self.applier.settings.linger) => {}
                }
            }
        }
        Ok(())
    }

    /// Creates the projection's consumer group on the partition stream
    /// (and the stream), unless it exists.
    async fn join_group(&self, part: &mut Partition) -> anyhow::Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&part.stream)
            .arg(self.name())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut part.conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Takes over whatever the previous owner left unacknowledged.
    async fn claim_pending(&self, part: &mut Partition) -> anyhow::Result<()> {
        let mut start = "0-0".to_owned();
        loop {
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&part.stream)
                .arg(self.name())
                .arg(&self.worker_id)
                .arg(0)
                .arg(&start)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID")
                .query_async(&mut part.conn)
                .await?;
            if claimed.next_stream_id == "0-0" {
                return Ok(());
            }
            start = claimed.next_stream_id;
        }
    }

    /// Reads up to `batch_size` entries: this consumer's pending ones while
    /// `backlog`, else new ones (blocking up to a second).
    async fn read_batch(
        &self,
        part: &mut Partition,
        backlog: bool,
    ) -> anyhow::Result<Vec<StreamId>> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP").arg(self.name()).arg(&self.worker_id).arg("COUNT").arg(self.batch_size);
        if !backlog {
            read.arg("BLOCK").arg(1000);
        }
        read.arg("STREAMS").arg(&part.stream).arg(if backlog { "0" } else { ">" });
        let reply: Option<StreamReadReply> = read.query_async(&mut part.conn).await?;
        Ok(reply.and_then(|r| r.keys.into_iter().next()).map(|k| k.ids).unwrap_or_default())
    }

    /// Applies the batch's events with the checkpoint, then records the
    /// batch's watermark (in Redis each time, in the database now and then).
    async fn apply_batch(
        &self,
        part: &mut Partition,
        mut batch: Batch,
        persisted: &mut Instant,
    ) -> anyhow::Result<()> {
        // Events of streams this projection does not read need no
        // transaction: the watermark below records that they passed.
        if let Some(types) = self.applier.projection.stream_types() {
            batch.events.retain(|e| types.contains(&e.stream.stream_type.as_str()));
        }
        if !batch.events.is_empty() {
            self.applier.apply(&part.checkpoint_key, &batch.events, None).await?;
        }
        if let Some(w) = batch.watermark {
            // Everything up to `w` in this partition is applied now.
            record(&mut part.conn, &part.progress_key, w).await?;
            if persisted.elapsed() > PERSIST_WATERMARK_EVERY {
                self.applier.apply(&part.checkpoint_key, &[], Some(w)).await?;
                *persisted = Instant::now();
            }
        }
        Ok(())
    }

    /// Acknowledges entries whose effects are committed.
    async fn acknowledge(&self, part: &mut Partition, entries: &[StreamId]) -> anyhow::Result<()> {
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let _: i64 = redis::cmd("XACK")
            .arg(&part.stream)
            .arg(self.name())
            .arg(&ids)
            .query_async(&mut part.conn)
            .await?;
        Ok(())
    }

    /// Applies this partition's events up to `until` straight from the store.
    async fn catch_up_from_store(
        &self,
        partition: u32,
        key: &str,
        until: Position,
    ) -> anyhow::Result<()> {
        let mut cursor = load_checkpoint(&self.applier.read_db, key).await?;
        while cursor < until {
            let batch = self.store.read_committed(cursor, 1000).await?;
            let Some(last) = batch.last().map(|e| e.position) else { break };
            let mine: Vec<RecordedEvent> = batch
                .into_iter()
                .filter(|e| {
                    e.position <= until
                        && partition_of(partition_key(e), self.settings.partitions) == partition
                })
                .collect();
            self.applier.apply(key, &mine, None).await?;
            cursor = last;
        }
        self.applier.apply(key, &[], Some(until)).await?;
        Ok(())
    }
}

/// One partition as its consumer sees it.
struct Partition {
    stream: String,
    checkpoint_key: String,
    progress_key: String,
    conn: MultiplexedConnection,
}

/// What a read carried: events, and the latest watermark among them.
struct Batch {
    events: Vec<RecordedEvent>,
    watermark: Option<Position>,
}

/// Decodes entries: `e` carries an event, `w` a watermark. An entry that
/// cannot be read is logged and skipped.
fn decode(entries: &[StreamId]) -> Batch {
    let mut batch = Batch { events: Vec::with_capacity(entries.len()), watermark: None };
    for entry in entries {
        if let Some(raw) = entry.get::<String>("e") {
            match serde_json::from_str::<RecordedEvent>(&raw) {
                Ok(event) => batch.events.push(event),
                Err(e) => {
                    tracing::error!(entry = %entry.id, error = %e, "unreadable stream entry skipped")
                }
            }
        } else if let Some(w) = entry.get::<String>("w").and_then(|w| w.parse().ok()) {
            batch.watermark = batch.watermark.max(Some(w));
        }
    }
    batch
}
