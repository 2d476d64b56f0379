//! Projection workers on Redis consumer groups.
//!
//! Each [`ProjectionGroup`] (the projections sharing one read database, or
//! a projection alone) is one consumer group per partition stream: a batch
//! is read and acknowledged once for all members and applied to all of
//! them in one read transaction. A worker holds a lease per partition it
//! owns and takes a fair share of the partitions (live workers announce
//! themselves in a sorted set), so one stream's events are applied by one
//! worker, in order.
//!
//! On taking a partition a worker first fences its members' checkpoints of
//! that partition: it writes a new lease epoch into each, and from that
//! commit on the previous owner (frozen, slow, partitioned away) can no
//! longer commit under that partition. Then it claims what the previous
//! owner left pending (XAUTOCLAIM), catches up from the event store up to
//! the relay's committed checkpoint (entries may have been trimmed, or lost
//! with a Redis restart), and reads its pending entries and new ones,
//! applying each batch with the checkpoints in one read transaction and
//! acknowledging only after commit. A member found behind what the group
//! has delivered (its checkpoint moved back: by an operator, or by a crash
//! of PostgreSQL that lost read transactions committed without waiting for
//! their flush) is caught up the same way, from the store, each member
//! from its own checkpoint.
//!
//! Redis is transport, not authority: an entry that cannot be read, or that
//! the event store contradicts (a position past the relay's committed
//! checkpoint, a stream of another partition), is ignored, counted and
//! reported, and the worker re-reads the store instead; a watermark past
//! the relay's committed checkpoint is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::applier::ApplyError;
use super::checkpoint::{Claim, fence, load_checkpoint};
use super::group::{GroupError, ProjectionGroup};
use super::monitor::ProjectionStatus;
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::partition::{partition_key, partition_of};
use crate::es::store::EventStore;
use crate::infra::redis::lease::Lease;
use crate::infra::redis::progress::record_all;
use crate::infra::redis::{LocalRelay, RELAY_CHECKPOINT, RedisSettings, connection};

/// How long an entry may be ahead of the relay's committed checkpoint before
/// it is taken for a forgery.
const RELAY_GRACE: Duration = Duration::from_secs(2);

/// How often a watermark also moves the partition's database checkpoint
/// (which bounds how far back a restarted consumer catches up from).
const PERSIST_WATERMARK_EVERY: Duration = Duration::from_secs(5);

pub struct PartitionedRunner {
    pub group: ProjectionGroup,
    pub store: Arc<dyn EventStore>,
    pub write_db: DatabaseConnection,
    pub client: redis::Client,
    pub settings: RedisSettings,
    pub worker_id: String,
    pub lease_ttl: Duration,
    pub batch_size: usize,
    /// The relay of this process, if it runs one.
    pub local_relay: LocalRelay,
}

struct Owned {
    lease: Lease,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Owned {
    /// Asks the task to stop, waits up to `grace`, then aborts it, and
    /// returns once it has ended either way.
    async fn stopped(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
            let _ = self.task.await;
        }
    }
}

impl PartitionedRunner {
    fn name(&self) -> &'static str {
        self.group.name
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut owned: HashMap<u32, Owned> = HashMap::new();
        let mut conn: Option<MultiplexedConnection> = None;
        self.group.set(ProjectionStatus::Running, None);
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
        // Each partition's task commits its batch and stops, then its lease
        // goes at once, and this worker leaves the live set: another worker
        // takes over without waiting for expiry.
        for (_, o) in owned.drain() {
            let lease = o.lease.clone();
            o.stopped(Duration::from_secs(5)).await;
            if let Some(c) = conn.as_mut() {
                let _ = lease.release(c).await;
            }
        }
        if let Some(c) = conn.as_mut() {
            let workers = self.settings.workers_key(self.name());
            let _: redis::RedisResult<i64> =
                redis::cmd("ZREM").arg(&workers).arg(&self.worker_id).query_async(c).await;
        }
        self.group.set(ProjectionStatus::Stopped, None);
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
                o.stopped(Duration::ZERO).await;
            }
        }
        while owned.len() > fair {
            let p = *owned.keys().max().expect("not empty");
            let o = owned.remove(&p).expect("present");
            // The lease goes only once the task has stopped: never two
            // consumers of one partition in this process.
            let lease = o.lease.clone();
            o.stopped(Duration::from_secs(10)).await;
            lease.release(c).await?;
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
                Err(e) if is_fenced(&e) => {
                    // Another worker took the partition over; the
                    // coordinator notices the task ended.
                    tracing::warn!(projection = self.name(), partition, error = %e, "partition taken over; stopping");
                    return;
                }
                Err(e) => {
                    let error = format!("partition {partition}: {e:#}");
                    for name in self.group.names() {
                        self.group.monitor().runner_failed(name, &error);
                    }
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
        let mut claims = Vec::with_capacity(self.group.members.len());
        for member in &self.group.members {
            let key = RedisSettings::checkpoint_key(member.name(), partition);
            claims.push(fence(&member.read_db, member.name(), &key).await?);
        }
        let mut part = Partition {
            number: partition,
            stream: self.settings.stream_key(partition),
            claims,
            progress_keys: self
                .group
                .names()
                .map(|name| self.settings.progress_key(name, partition))
                .collect(),
            conn: connection(&self.client).await?,
            published: Position::START,
            seen: Position::START,
            floor: Position::START,
        };
        self.join_group(&mut part).await?;
        self.claim_pending(&mut part).await?;
        // Entries may be missing from Redis (trimmed, or lost in a restart);
        // the store has everything the relay has published.
        self.catch_up_from_store(&mut part).await?;
        self.group.set(ProjectionStatus::Running, None);
        record_all(&mut part.conn, &part.progress_keys, part.published).await?;

        let mut persisted = Instant::now();
        // First re-read what this consumer already holds, then new entries.
        let mut backlog = true;
        // Entries whose effects are committed, acknowledged with the next read.
        let mut done: Vec<StreamId> = Vec::new();
        while !*stop.borrow() {
            let entries = tokio::select! {
                read = self.read_batch(&mut part, backlog, &done) => read?,
                _ = stop.changed() => break,
            };
            done.clear();
            if entries.is_empty() {
                backlog = false;
                // An idle partition gets no batch, so no watermark finds a
                // member moved back behind the group (an operator's reset):
                // now and then it passes itself what it has seen, as the
                // relay's watermarks do.
                if persisted.elapsed() > PERSIST_WATERMARK_EVERY {
                    let seen = Batch::up_to(part.seen);
                    if self.apply_or_behind(&mut part, seen, &mut persisted).await? {
                        self.catch_up_from_store(&mut part).await?;
                    }
                }
                continue;
            }
            let batch = decode(&entries);
            self.record_receive_age(&batch.events);
            let batch = self.check(&mut part, batch).await?;
            let carried = batch.events.len();
            let doubt = match batch.doubt {
                true => true,
                false => self.apply_or_behind(&mut part, batch, &mut persisted).await?,
            };
            if doubt {
                // Something in Redis was not what the relay wrote, or entries
                // went to another consumer: whatever this partition should
                // have carried, the store has. Entries others hold are taken
                // over, to be read (and skipped) as backlog.
                self.catch_up_from_store(&mut part).await?;
                self.claim_pending(&mut part).await?;
                backlog = true;
            }
            done = entries;
            // Linger only under load (several events per read): an idle
            // partition answers at once, a busy one gathers bigger batches.
            if !backlog && carried > 1 && done.len() < self.batch_size {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(self.group.members[0].settings.linger) => {}
                }
            }
        }
        if !done.is_empty() {
            self.acknowledge(&mut part, &done).await?;
        }
        Ok(())
    }

    /// Creates the group's consumer group on the partition stream (and the
    /// stream), unless it exists. Consumer groups of its members' own
    /// names (left by an earlier version, where each projection consumed
    /// alone) are dropped: nothing reads them, and their unacknowledged
    /// entries would hold back the relay's trimming for ever.
    async fn join_group(&self, part: &mut Partition) -> anyhow::Result<()> {
        for name in self.group.names().filter(|n| *n != self.name()) {
            let _: i64 = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&part.stream)
                .arg(name)
                .query_async(&mut part.conn)
                .await
                .unwrap_or(0);
        }
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

    /// Acknowledges `done` (entries whose effects are committed) and reads
    /// up to `batch_size` entries, in one round trip: this consumer's
    /// pending ones while `backlog`, else new ones (blocking up to a second).
    async fn read_batch(
        &self,
        part: &mut Partition,
        backlog: bool,
        done: &[StreamId],
    ) -> anyhow::Result<Vec<StreamId>> {
        let mut pipe = redis::pipe();
        if !done.is_empty() {
            pipe.add_command(self.ack_command(part, done)).ignore();
        }
        let read = pipe.cmd("XREADGROUP");
        read.arg("GROUP").arg(self.name()).arg(&self.worker_id).arg("COUNT").arg(self.batch_size);
        if !backlog {
            read.arg("BLOCK").arg(1000);
        }
        read.arg("STREAMS").arg(&part.stream).arg(if backlog { "0" } else { ">" });
        let (reply,): (Option<StreamReadReply>,) = pipe.query_async(&mut part.conn).await?;
        Ok(reply.and_then(|r| r.keys.into_iter().next()).map(|k| k.ids).unwrap_or_default())
    }

    /// Records how long each event took from its append to this worker
    /// (relay and Redis included), for each member that reads it.
    fn record_receive_age(&self, events: &[RecordedEvent]) {
        let now = chrono::Utc::now();
        for member in &self.group.members {
            let received = metrics::histogram!(
                "eventfold_projection_receive_age_seconds",
                "projection" => member.name()
            );
            for event in events.iter().filter(|e| super::group::reads(member, e)) {
                let age = (now - event.recorded_at).num_microseconds().unwrap_or(0).max(0);
                received.record(age as f64 / 1e6);
            }
        }
    }

    /// Applies the batch's events to every member, with their checkpoints,
    /// in one transaction (which moves the checkpoints to the watermark
    /// too). A batch of only a watermark, or of events no member reads,
    /// needs no transaction: that it passed is recorded in Redis each
    /// time, and in the database now and then.
    async fn apply_batch(
        &self,
        part: &mut Partition,
        batch: Batch,
        persisted: &mut Instant,
    ) -> Result<(), GroupError> {
        if self.group.reads_any(&batch.events) {
            let reached =
                self.group.apply(&part.claims, &batch.events, batch.watermark, part.floor).await?;
            part.floor = reached.into_iter().min().unwrap_or(part.floor);
            *persisted = Instant::now();
            return Ok(());
        }
        let passed = batch.events.iter().map(|e| e.position).max().max(batch.watermark);
        if let Some(w) = passed {
            // Everything up to `w` in this partition is applied now.
            record_all(&mut part.conn, &part.progress_keys, w).await?;
            for claim in &part.claims {
                self.group.monitor().progress.committed(&claim.key, w);
            }
            if persisted.elapsed() > PERSIST_WATERMARK_EVERY {
                let reached = self.group.apply(&part.claims, &[], Some(w), part.floor).await?;
                part.floor = reached.into_iter().min().unwrap_or(part.floor);
                *persisted = Instant::now();
            }
        }
        Ok(())
    }

    /// [`Self::apply_batch`]; `true` when a member was found behind what
    /// the group has delivered (nothing written: the caller catches up
    /// from the event store).
    async fn apply_or_behind(
        &self,
        part: &mut Partition,
        batch: Batch,
        persisted: &mut Instant,
    ) -> Result<bool, GroupError> {
        match self.apply_batch(part, batch, persisted).await {
            Ok(()) => Ok(false),
            Err(e @ GroupError::Behind { .. }) => {
                tracing::warn!(group = self.name(), error = %e, "catching up from the event store");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Acknowledges entries whose effects are committed.
    async fn acknowledge(&self, part: &mut Partition, entries: &[StreamId]) -> anyhow::Result<()> {
        let _: i64 = self.ack_command(part, entries).query_async(&mut part.conn).await?;
        Ok(())
    }

    /// The XACK of `entries` by this group.
    fn ack_command(&self, part: &Partition, entries: &[StreamId]) -> redis::Cmd {
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let mut ack = redis::cmd("XACK");
        ack.arg(&part.stream).arg(self.name()).arg(&ids);
        ack
    }

    /// The relay's committed checkpoint, read again.
    async fn published(&self, part: &mut Partition) -> anyhow::Result<Position> {
        part.published =
            part.published.max(load_checkpoint(&self.write_db, RELAY_CHECKPOINT).await?);
        Ok(part.published)
    }

    /// Drops what the event store contradicts: events past the relay's
    /// committed checkpoint or of another partition, and a watermark past
    /// that checkpoint. Each is reported; any of them, or an unreadable
    /// entry, puts the batch in doubt.
    async fn check(&self, part: &mut Partition, mut batch: Batch) -> anyhow::Result<Batch> {
        // The relay commits its checkpoint right after publishing a batch:
        // an event a little ahead of it is in flight, one that stays ahead
        // was never published by the relay.
        let newest = batch.events.iter().map(|e| e.position).max().max(batch.watermark);
        let deadline = tokio::time::Instant::now() + RELAY_GRACE;
        if let Some(n) = newest.filter(|n| *n > part.published) {
            // A relay in this process that holds the lease says how far it
            // has published: no query, no polling, no wait for its commit.
            let local = self.local_relay.reached(n, deadline).await;
            part.published = part.published.max(local.unwrap_or_default());
        }
        while newest.is_some_and(|n| n > part.published) {
            if self.published(part).await? >= newest.unwrap_or_default()
                || tokio::time::Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (published, partitions, number) =
            (part.published, self.settings.partitions, part.number);
        let mut rejected = std::mem::take(&mut batch.rejected);
        batch.events.retain(|e| {
            let why = if e.position > published {
                "an event past the relay's checkpoint"
            } else if partition_of(partition_key(e), partitions) != number {
                "an event of another partition"
            } else {
                return true;
            };
            rejected.push(format!("{why} ({} at {})", e.event_id, e.position));
            false
        });
        if let Some(w) = batch.watermark.filter(|w| *w > published) {
            rejected.push(format!("a watermark past the relay's checkpoint ({w} > {published})"));
            batch.watermark = None;
        }
        for reason in rejected {
            let reason = format!("ignored {reason} in {}; re-reading the event store", part.stream);
            for name in self.group.names() {
                self.group.monitor().rejected_entry(name, reason.clone());
            }
            batch.doubt = true;
        }
        // Each entry names the partition's previous event: one this consumer
        // has not seen went elsewhere (to a worker that lost the partition
        // meanwhile) or is gone.
        let mut seen = part.seen;
        for link in &batch.links {
            if link.previous.is_none_or(|p| p > seen) {
                tracing::warn!(projection = self.name(), stream = %part.stream, at = %link.position, "entries of this partition are missing; re-reading the event store");
                batch.doubt = true;
                break;
            }
            seen = seen.max(link.position);
        }
        if !batch.doubt {
            part.seen = seen;
        }
        Ok(batch)
    }

    /// Applies this partition's events up to the relay's committed checkpoint
    /// straight from the store, from the checkpoint of the member furthest
    /// behind (each member skips what it already has).
    async fn catch_up_from_store(&self, part: &mut Partition) -> anyhow::Result<()> {
        let until = self.published(part).await?;
        let mut cursor = until;
        for (member, claim) in self.group.members.iter().zip(&part.claims) {
            cursor = cursor.min(load_checkpoint(&member.read_db, &claim.key).await?);
        }
        while cursor < until {
            let batch = self.store.read_committed(cursor, 1000).await?;
            let Some(last) = batch.last().map(|e| e.position) else { break };
            let mine: Vec<RecordedEvent> = batch
                .into_iter()
                .filter(|e| {
                    e.position <= until
                        && partition_of(partition_key(e), self.settings.partitions) == part.number
                })
                .collect();
            self.group.apply(&part.claims, &mine, None, Position::START).await?;
            cursor = last;
        }
        let reached = self.group.apply(&part.claims, &[], Some(until), Position::START).await?;
        part.floor = reached.into_iter().min().unwrap_or(until);
        part.seen = part.seen.max(until);
        Ok(())
    }
}

/// Whether the consumer was fenced off its partition.
fn is_fenced(err: &anyhow::Error) -> bool {
    matches!(err.downcast_ref(), Some(GroupError::Apply(ApplyError::Fenced(_))))
}

/// One partition as its consumer sees it.
struct Partition {
    number: u32,
    stream: String,
    /// Each member's checkpoint key of this partition and the lease epoch
    /// this worker fenced it with, in member order.
    claims: Vec<Claim>,
    /// Each member's delivered-position key in Redis, in member order.
    progress_keys: Vec<String>,
    conn: MultiplexedConnection,
    /// The relay's committed checkpoint, as last read.
    published: Position,
    /// Every event of this partition up to here has been processed.
    seen: Position,
    /// Every member's checkpoint was at least here at its last commit.
    floor: Position,
}

/// What a read carried: events, the latest watermark among them, the
/// chain of entries, and the entries that could not be trusted.
struct Batch {
    events: Vec<RecordedEvent>,
    watermark: Option<Position>,
    /// Each event or watermark with the partition's event before it.
    links: Vec<Link>,
    rejected: Vec<String>,
    /// Whether anything was rejected or missing, so the store must be read.
    doubt: bool,
}

impl Batch {
    /// A batch of only a watermark at `position`.
    fn up_to(position: Position) -> Batch {
        Batch {
            events: Vec::new(),
            watermark: Some(position),
            links: Vec::new(),
            rejected: Vec::new(),
            doubt: false,
        }
    }
}

/// An entry at `position` (an event's, or a watermark's) and the position
/// of the partition's event published before it (`None`: not known, as
/// after a relay restart).
struct Link {
    previous: Option<Position>,
    position: Position,
}

/// Decodes entries: `e` carries an event, `w` a watermark, and an entry
/// may carry both (the partition's last event of a relay batch, and the
/// batch's watermark). Anything else is noted as rejected.
fn decode(entries: &[StreamId]) -> Batch {
    let mut batch = Batch {
        events: Vec::with_capacity(entries.len()),
        watermark: None,
        links: Vec::with_capacity(entries.len()),
        rejected: Vec::new(),
        doubt: false,
    };
    for entry in entries {
        let event = entry.get::<String>("e").map(|raw| serde_json::from_str::<RecordedEvent>(&raw));
        let watermark = entry.get::<String>("w").map(|w| w.parse::<Position>());
        let previous = entry.get::<String>("p").and_then(|p| p.parse::<Position>().ok());
        match (event, watermark) {
            (Some(Ok(event)), None) => {
                batch.links.push(Link { previous, position: event.position });
                batch.events.push(event);
            }
            (Some(Ok(event)), Some(Ok(w))) => {
                batch.links.push(Link { previous, position: event.position });
                batch.events.push(event);
                batch.watermark = batch.watermark.max(Some(w));
            }
            (None, Some(Ok(w))) => {
                batch.links.push(Link { previous, position: w });
                batch.watermark = batch.watermark.max(Some(w));
            }
            _ => batch.rejected.push(format!("an unreadable entry {}", entry.id)),
        }
    }
    batch
}
