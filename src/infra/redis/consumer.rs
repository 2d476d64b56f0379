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
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lease::Lease;
use super::progress::record;
use super::{RELAY_CHECKPOINT, RedisSettings};
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::partition::{partition_key, partition_of};
use crate::es::store::EventStore;
use crate::infra::projector_runtime::{Applier, load_checkpoint};

/// How often a watermark also moves the partition's database checkpoint
/// (which bounds how far back a restarted consumer catches up from).
const PERSIST_WATERMARK_EVERY: Duration = Duration::from_secs(5);

pub struct PartitionedProjector {
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

impl PartitionedProjector {
    fn name(&self) -> &'static str {
        self.applier.name()
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut owned: HashMap<u32, Owned> = HashMap::new();
        let mut conn: Option<MultiplexedConnection> = None;
        self.applier.monitor.set(self.name(), "RUNNING", None);
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
        self.applier.monitor.set(self.name(), "STOPPED", None);
        Ok(())
    }

    /// One round: heartbeat, renew, shed beyond the fair share, acquire up to it.
    async fn coordinate(
        self: &Arc<Self>,
        conn: &mut Option<MultiplexedConnection>,
        owned: &mut HashMap<u32, Owned>,
    ) -> anyhow::Result<()> {
        if conn.is_none() {
            *conn = Some(super::connection(&self.client).await?);
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
                    self.applier.monitor.set(self.name(), "FAILING", Some(e.to_string()));
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }

    async fn consume(
        &self,
        partition: u32,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let stream = self.settings.stream_key(partition);
        let group = self.name();
        let key = RedisSettings::checkpoint_key(group, partition);
        let mut conn = super::connection(&self.client).await?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e.into());
        }
        // Whatever the previous owner left unacknowledged is ours now.
        let mut start = "0-0".to_owned();
        loop {
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(group)
                .arg(&self.worker_id)
                .arg(0)
                .arg(&start)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID")
                .query_async(&mut conn)
                .await?;
            if claimed.next_stream_id == "0-0" {
                break;
            }
            start = claimed.next_stream_id;
        }
        // Entries may be missing from Redis (trimmed, or lost in a restart);
        // the store has everything the relay has published.
        let published = load_checkpoint(&self.write_db, RELAY_CHECKPOINT).await?;
        self.catch_up_from_store(partition, &key, published).await?;
        self.applier.monitor.set(self.name(), "RUNNING", None);

        let progress = self.settings.progress_key(group, partition);
        record(&mut conn, &progress, published).await?;
        let mut persisted = std::time::Instant::now();
        let mut backlog = true;
        while !*stop.borrow() {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP").arg(group).arg(&self.worker_id).arg("COUNT").arg(self.batch_size);
            if !backlog {
                read.arg("BLOCK").arg(1000);
            }
            read.arg("STREAMS").arg(&stream).arg(if backlog { "0" } else { ">" });
            let reply: Option<StreamReadReply> = tokio::select! {
                r = read.query_async(&mut conn) => r?,
                _ = stop.changed() => return Ok(()),
            };
            let entries =
                reply.and_then(|r| r.keys.into_iter().next()).map(|k| k.ids).unwrap_or_default();
            if entries.is_empty() {
                backlog = false;
                continue;
            }
            let mut events = Vec::with_capacity(entries.len());
            let mut watermark: Option<Position> = None;
            for entry in &entries {
                if let Some(raw) = entry.get::<String>("e") {
                    match serde_json::from_str::<RecordedEvent>(&raw) {
                        Ok(event) => events.push(event),
                        Err(e) => {
                            tracing::error!(entry = %entry.id, error = %e, "unreadable stream entry skipped")
                        }
                    }
                } else if let Some(w) = entry.get::<String>("w").and_then(|w| w.parse().ok()) {
                    watermark = watermark.max(Some(w));
                }
            }
            let carried = events.len();
            // Events of streams this projection does not read need no
            // transaction: the watermark below records that they passed.
            if let Some(types) = self.applier.projection.stream_types() {
                events.retain(|e| types.contains(&e.stream.stream_type.as_str()));
            }
            if !events.is_empty() {
                self.applier.apply(&key, &events, None).await?;
            }
            if let Some(w) = watermark {
                // Everything up to `w` in this partition is applied now.
                record(&mut conn, &progress, w).await?;
                if persisted.elapsed() > PERSIST_WATERMARK_EVERY {
                    self.applier.apply(&key, &[], Some(w)).await?;
                    persisted = std::time::Instant::now();
                }
            }
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            let _: i64 =
                redis::cmd("XACK").arg(&stream).arg(group).arg(&ids).query_async(&mut conn).await?;
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
