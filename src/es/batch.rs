//! Hot streams: commands queued for one stream in this process are decided
//! one after another on the (cached) aggregate and appended together in
//! one transaction.
//!
//! Every command first puts itself in its stream's queue, then waits for the
//! stream's lock. Whoever gets the lock takes everything queued so far (its
//! own command included, unless an earlier holder already answered it) and
//! runs it as one batch: each command is decided on the state the ones
//! before it left, keeps its own result (version and position after its own
//! events), its own idempotency record and its own rejection; the accepted
//! ones are appended in one transaction. If that append fails (another
//! process moved the stream, a command id was used meanwhile, the database
//! failed), every command of the batch runs again alone, through the normal
//! path with its retries, so a batch never answers differently from the
//! same commands run one by one.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::aggregate::Aggregate;
use super::command::{CommandContext, CommandError, CommandExecutor, Loaded, to_new_event};
use super::envelope::{Position, StreamKey};
use super::store::{BatchedCommand, CommandRecord, Outcome, StoreError, StreamAppend};

/// Most commands decided and appended together.
const MAX_BATCH: usize = 64;

type Reply<A> = Result<Outcome, CommandError<<A as Aggregate>::Error>>;

/// One queued command and where its answer goes.
pub(crate) struct Job<A: Aggregate> {
    command: A::Command,
    ctx: CommandContext,
    reply: oneshot::Sender<Reply<A>>,
}

/// The commands waiting on one stream.
pub(crate) struct Queue<A: Aggregate> {
    jobs: Mutex<Vec<Job<A>>>,
}

impl<A: Aggregate> Queue<A> {
    pub(crate) fn take(&self) -> Vec<Job<A>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let n = jobs.len().min(MAX_BATCH);
        jobs.drain(..n).collect()
    }
}

/// The queues of the streams commands are waiting on, created on demand and
/// dropped once nobody holds them.
#[derive(Default)]
pub(crate) struct Queues {
    map: Mutex<HashMap<StreamKey, std::sync::Weak<dyn Any + Send + Sync>>>,
}

impl Queues {
    /// Queues a command on `stream`; returns the queue (to take from once
    /// the stream's lock is held) and the command's answer.
    pub(crate) fn enqueue<A: Aggregate>(
        &self,
        stream: &StreamKey,
        command: A::Command,
        ctx: CommandContext,
    ) -> (Arc<Queue<A>>, oneshot::Receiver<Reply<A>>) {
        let queue = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1024 {
                map.retain(|_, weak| weak.strong_count() > 0);
            }
            match map.get(stream).and_then(|w| w.upgrade()).map(|q| q.downcast::<Queue<A>>()) {
                Some(Ok(queue)) => queue,
                _ => {
                    let queue = Arc::new(Queue::<A> { jobs: Mutex::new(Vec::new()) });
                    let erased: Arc<dyn Any + Send + Sync> = queue.clone();
                    map.insert(stream.clone(), Arc::downgrade(&erased));
                    queue
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        queue.jobs.lock().unwrap_or_else(|p| p.into_inner()).push(Job { command, ctx, reply });
        (queue, answer)
    }
}

/// What deciding one command of a batch gave.
enum Decided<A: Aggregate> {
    /// Events to append; the stream's version after them and the
    /// partition key of the state they leave.
    Append(Vec<A::Event>, i64, Uuid),
    /// Nothing to append: the answer, once the batch's positions are known
    /// (the version it left the stream at, the events before it).
    Unchanged(i64),
    Failed(CommandError<A::Error>),
}

impl CommandExecutor {
    /// Runs `jobs`, all for `stream`, while holding the stream's lock.
    pub(crate) async fn run_jobs<A: Aggregate>(
        &self,
        id: Uuid,
        stream: &StreamKey,
        jobs: Vec<Job<A>>,
    ) {
        let mut batch = Vec::new();
        let mut later = Vec::new();
        let mut ids = HashSet::new();
        for job in jobs {
            // A command id seen twice: the second waits for the first's
            // stored result. Pinned versions and command ids with a stored
            // result take the normal path.
            let fresh = job.ctx.command_id.is_none_or(|c| ids.insert(c));
            if fresh && job.ctx.expected_version.is_none() {
                batch.push(job);
            } else {
                later.push(job);
            }
        }
        if batch.len() > 1 {
            match self.try_batch::<A>(id, stream, &batch).await {
                Ok(answers) => {
                    for (job, answer) in batch.drain(..).zip(answers) {
                        let _ = job.reply.send(answer);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "batched append failed; running each command alone");
                    self.evict_cached(stream);
                }
            }
        }
        for job in batch.into_iter().chain(later) {
            let answer = self
                .with_retries(stream, &job.ctx, || {
                    self.attempt::<A>(id, stream, &job.command, &job.ctx)
                })
                .await;
            let _ = job.reply.send(answer);
        }
    }

    /// Decides every job on the state the previous ones left, appends the
    /// accepted ones' events in one transaction and returns each job's
    /// answer. An error means nothing was answered nor appended.
    async fn try_batch<A: Aggregate>(
        &self,
        id: Uuid,
        stream: &StreamKey,
        jobs: &[Job<A>],
    ) -> Result<Vec<Reply<A>>, StoreError> {
        // A command id with a stored result is answered by the normal path.
        for job in jobs {
            if let Some(command_id) = job.ctx.command_id
                && self.store().command_result(command_id).await?.is_some()
            {
                return Err(StoreError::Backend("a command id already has a result".into()));
            }
        }
        let (mut loaded, cached) = self.load_cached::<A>(id, stream).await?;
        let (mut decided, mut final_state) = decide_all(id, &loaded, jobs);
        // As for one command: an answer no append verifies (a rejection, a
        // no-op) must not rest on a possibly stale cached state.
        if cached && decided.iter().any(|d| !matches!(d, Decided::Append(..))) {
            self.evict_cached(stream);
            loaded = self.load::<A>(id).await?;
            (decided, final_state) = decide_all(id, &loaded, jobs);
        }
        let mut events = Vec::new();
        let mut commands = Vec::new();
        for (decision, job) in decided.iter().zip(jobs) {
            if let Decided::Append(new, _, key) = decision {
                let metadata = job.ctx.event_metadata().for_partition(id, *key);
                for event in new {
                    events.push(to_new_event::<_, A::Error>(event, &metadata).map_err(
                        |e| match e {
                            CommandError::Store(e) => e,
                            other => StoreError::backend(other),
                        },
                    )?);
                }
                let record = job
                    .ctx
                    .command_id
                    .map(|command_id| CommandRecord { command_id, stream: stream.clone() });
                commands.push(BatchedCommand { events: new.len(), record });
            }
        }
        // Positions of the appended versions, to answer every job.
        let mut positions: Vec<(i64, Position)> = Vec::new();
        let final_version = loaded.version + events.len() as i64;
        if !events.is_empty() {
            let append =
                StreamAppend { stream: stream.clone(), expected_version: loaded.version, events };
            let outcomes = self.store().append_commands(append, commands).await?;
            positions = outcomes.iter().map(|o| (o.version, o.position)).collect();
            let snapshot = self.snapshot_policy().due(&final_state, loaded.version, final_version);
            self.save_snapshots(snapshot.map(|s| (stream.clone(), s))).await;
            let last = positions.last().map(|(_, p)| *p);
            self.cache_put(stream, final_state, final_version, last);
        }
        let before = match loaded.last_position {
            Some(p) => Some(p),
            None if decided
                .iter()
                .any(|d| matches!(d, Decided::Unchanged(v) if *v == loaded.version)) =>
            {
                self.store().stream_head(stream).await?
            }
            None => None,
        };
        // The position a version was reached at: that of its last event.
        let at = |version: i64| {
            positions
                .iter()
                .rev()
                .find(|(v, _)| *v <= version)
                .map(|(_, p)| *p)
                .or(before)
                .unwrap_or_default()
        };
        Ok(decided
            .into_iter()
            .map(|d| match d {
                Decided::Append(_, version, _) | Decided::Unchanged(version) => {
                    Ok(Outcome { id, version, position: at(version) })
                }
                Decided::Failed(e) => Err(e),
            })
            .collect())
    }
}

/// Decides each job in turn, each on the state the accepted ones before it
/// left; returns the decisions and the state after all of them.
fn decide_all<A: Aggregate>(id: Uuid, loaded: &Loaded<A>, jobs: &[Job<A>]) -> (Vec<Decided<A>>, A) {
    let mut state = loaded.state.clone();
    let mut version = loaded.version;
    let decided = jobs
        .iter()
        .map(|job| match state.handle(&job.command) {
            Ok(events) if events.is_empty() => Decided::Unchanged(version),
            Ok(events) => {
                for event in &events {
                    state.apply(event);
                }
                version += events.len() as i64;
                Decided::Append(events, version, state.partition_key(id))
            }
            Err(e) => Decided::Failed(CommandError::Rejected(e)),
        })
        .collect();
    (decided, state)
}
