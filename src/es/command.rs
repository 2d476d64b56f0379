//! Command execution: load the aggregate (snapshot + tail), let it decide,
//! append with the loaded version as expectation, and on a lost race retry
//! from a fresh load — unless the client pinned `expectedVersion`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::Instrument as _;
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent, Rejection, RejectionKind};
use super::batch::Queues;
use super::cache::AggregateCache;
use super::envelope::{Actor, CorrelationId, EventMetadata, NewEvent, Position, StreamKey};
use super::locks::StreamLocks;

pub use super::store::Outcome;
use super::store::{CommandRecord, EventStore, Snapshot, StoreError, StreamAppend};
use super::upcast::{Upcasters, encode};

/// What the caller knows about a command beyond its content.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    /// Client-chosen id: the same id again returns the first result.
    pub command_id: Option<Uuid>,
    /// Client-pinned version: a mismatch is a conflict, never retried.
    pub expected_version: Option<i64>,
    /// The business transaction the command belongs to; a new one when
    /// `None`.
    pub correlation_id: Option<CorrelationId>,
    /// What caused the command (see [`EventMetadata::causation_id`]).
    pub causation_id: Option<Uuid>,
    pub actor: Option<Actor>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The aggregate refused the command; nothing was appended.
    #[error(transparent)]
    Rejected(E),
    /// `CONCURRENCY_CONFLICT`: a pinned `expectedVersion` did not match, or
    /// retries ran out.
    #[error("concurrency conflict: stream is at version {actual}, expected {expected}")]
    Conflict { expected: i64, actual: i64 },
    /// `VALIDATION_ERROR`: a command id was reused for a different stream.
    #[error("commandId {0} was already used for another command")]
    CommandIdReused(Uuid),
    /// `INTERNAL`.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> CommandError<E> {
    /// Converts the rejection into a wider one (e.g. of a use case that
    /// drives several aggregates), leaving the other variants as they are.
    pub fn map_rejected<F>(self, f: impl FnOnce(E) -> F) -> CommandError<F> {
        match self {
            CommandError::Rejected(e) => CommandError::Rejected(f(e)),
            CommandError::Conflict { expected, actual } => {
                CommandError::Conflict { expected, actual }
            }
            CommandError::CommandIdReused(id) => CommandError::CommandIdReused(id),
            CommandError::Store(e) => CommandError::Store(e),
        }
    }
}

impl CommandContext {
    /// The metadata stamped on every event the command appends.
    pub(crate) fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            command_id: self.command_id,
            correlation_id: self.correlation_id.clone().unwrap_or_default(),
            causation_id: self.causation_id,
            actor: self.actor.clone(),
            partition_key: None,
            traceparent: None,
        }
    }
}

/// Settings of the command executor.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// Take a snapshot each time a stream's version crosses a multiple of this.
    pub snapshot_every: i64,
    /// Retries after a lost optimistic-concurrency race.
    pub max_retries: u32,
    /// Aggregates kept in memory between commands (0 disables the cache).
    pub cache_capacity: usize,
}

/// How many events a stream gets between snapshots unless told otherwise.
pub const DEFAULT_SNAPSHOT_EVERY: i64 = 50;

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            max_retries: 30,
            cache_capacity: 10_000,
        }
    }
}

/// When a stream gets a new snapshot: each time its version crosses a
/// multiple of `every` (never when `every` is 0).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    pub every: i64,
}

impl SnapshotPolicy {
    /// The snapshot due after a command moved a stream from version
    /// `before` to `after`, leaving it in `state`, if any.
    pub fn due<A: Aggregate>(&self, state: &A, before: i64, after: i64) -> Option<Snapshot> {
        if self.every <= 0 || before / self.every == after / self.every {
            return None;
        }
        match serde_json::to_value(state) {
            Ok(state) => Some(Snapshot {
                version: after,
                state_version: A::STATE_VERSION,
                state,
                taken_at: Utc::now(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "snapshot not serializable");
                None
            }
        }
    }
}

/// An aggregate loaded from the store.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    pub version: i64,
    /// Position of the last event folded in, if it was read.
    pub last_position: Option<Position>,
}

/// Loads, decides, appends.
pub struct CommandExecutor {
    store: Arc<dyn EventStore>,
    upcasters: Arc<Upcasters>,
    settings: CommandSettings,
    locks: StreamLocks,
    /// Commands waiting on a stream, run in batches by the lock's holder.
    queues: Queues,
    cache: AggregateCache,
}

impl CommandExecutor {
    pub fn new(
        store: Arc<dyn EventStore>,
        upcasters: Arc<Upcasters>,
        settings: CommandSettings,
    ) -> Self {
        let cache = AggregateCache::new(settings.cache_capacity);
        CommandExecutor {
            store,
            upcasters,
            settings,
            locks: StreamLocks::default(),
            queues: Queues::default(),
            cache,
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Drops a cached state (after another path wrote the stream).
    pub(crate) fn evict_cached(&self, stream: &StreamKey) {
        self.cache.evict(stream);
    }

    /// Queues behind other commands of this process on `stream`.
    pub(crate) async fn lock_stream(&self, stream: &StreamKey) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.lock(stream).await
    }

    /// Rebuilds an aggregate from its latest valid snapshot and the events after it.
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<Loaded<A>, StoreError> {
        let stream = StreamKey::new(A::STREAM_TYPE, id);
        let (mut state, mut version) = match self.store.load_snapshot(&stream).await? {
            Some(s) if s.state_version == A::STATE_VERSION => {
                match serde_json::from_value::<A>(s.state) {
                    Ok(state) => (state, s.version),
                    Err(e) => {
                        tracing::warn!(%id, error = %e, "unreadable snapshot ignored");
                        (A::default(), 0)
                    }
                }
            }
            _ => (A::default(), 0),
        };
        let mut last_position = None;
        for recorded in self.store.load_stream(&stream, version).await? {
            let event: A::Event = self.upcasters.decode(&recorded).map_err(StoreError::backend)?;
            state.apply(&event);
            version = recorded.version;
            last_position = Some(recorded.position);
        }
        Ok(Loaded { state, version, last_position })
    }

    /// The state of stream `id` after its events up to `version` (all of
    /// them when `None`), folded from the default state through the
    /// domain's own `apply`, every event upcast on the way; no snapshot or
    /// cache is used, so the answer is the log's. `None` when the stream
    /// has no events up to there.
    pub async fn fold_at<A: Aggregate>(
        &self,
        id: Uuid,
        version: Option<i64>,
    ) -> Result<Option<(A, i64)>, StoreError> {
        let stream = StreamKey::new(A::STREAM_TYPE, id);
        let mut state = A::default();
        let mut reached = 0;
        for recorded in self.store.load_stream(&stream, 0).await? {
            if version.is_some_and(|v| recorded.version > v) {
                break;
            }
            let event: A::Event = self.upcasters.decode(&recorded).map_err(StoreError::backend)?;
            state.apply(&event);
            reached = recorded.version;
        }
        Ok((reached > 0).then_some((state, reached)))
    }

    /// Executes one command against one aggregate.
    ///
    /// Commands on one stream in this process queue up instead of racing
    /// (races with other processes are settled by the store), and whoever
    /// holds the stream's lock runs what is queued as one batch (see
    /// [`super::batch`]).
    pub async fn execute<A: Aggregate>(
        &self,
        id: Uuid,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError<A::Error>> {
        use tokio::sync::oneshot::error::TryRecvError;
        let stream = StreamKey::new(A::STREAM_TYPE, id);
        let (queue, mut answer) = self.queues.enqueue::<A>(&stream, command.clone(), ctx.clone());
        let _guard = self.locks.lock(&stream).await;
        let result = loop {
            match answer.try_recv() {
                Ok(answered) => break answered,
                Err(TryRecvError::Empty) => {
                    let jobs = queue.take();
                    self.run_jobs::<A>(id, &stream, jobs).await;
                }
                // The holder that took this command was cancelled before
                // it answered: whether it was appended is unknown here (a
                // retry with the same commandId tells).
                Err(TryRecvError::Closed) => {
                    break Err(
                        StoreError::Backend("the command's batch was interrupted".into()).into()
                    );
                }
            }
        };
        count_command(A::STREAM_TYPE, A::command_name(command), &result);
        result
    }

    /// Runs `attempt` until it succeeds or fails for good. A lost
    /// optimistic-concurrency race is retried from a fresh load, with
    /// backoff, unless the client pinned `expectedVersion` or the retries
    /// ran out. A command whose `commandId` already has a result (stored by
    /// an earlier request, or by another process that won the race with the
    /// same id) returns that result and appends nothing.
    ///
    /// The whole runs in a `command` span (stream type and id, outcome,
    /// retries), the parent of the append's span.
    pub(crate) async fn with_retries<E, F, Fut>(
        &self,
        own: &StreamKey,
        ctx: &CommandContext,
        attempt: F,
    ) -> Result<Outcome, CommandError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Outcome, CommandError<E>>>,
    {
        let span = tracing::debug_span!(
            "command",
            otel.name = %format_args!("command {}", own.stream_type),
            stream_type = %own.stream_type,
            stream_id = %own.stream_id,
            outcome = tracing::field::Empty,
            retries = 0u32,
        );
        let result = self.retrying(own, ctx, attempt).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::CommandIdReused(_)) => "command_id_reused",
            Err(CommandError::Store(_)) => "error",
        };
        span.record("outcome", outcome);
        span.in_scope(|| tracing::debug!(outcome, "command handled"));
        result
    }

    async fn retrying<E, F, Fut>(
        &self,
        own: &StreamKey,
        ctx: &CommandContext,
        mut attempt: F,
    ) -> Result<Outcome, CommandError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Outcome, CommandError<E>>>,
    {
        let mut retries = 0;
        loop {
            if let Some(done) = self.previous_result(own, ctx).await? {
                return Ok(done);
            }
            match attempt().await {
                Err(CommandError::Store(StoreError::Conflict { expected, actual, .. })) => {
                    metrics::counter!("eventfold_command_conflicts_total").increment(1);
                    if ctx.expected_version.is_some() || retries >= self.settings.max_retries {
                        return Err(CommandError::Conflict { expected, actual });
                    }
                    retries += 1;
                    tracing::Span::current().record("retries", retries);
                    metrics::counter!("eventfold_command_retries_total").increment(1);
                    tokio::time::sleep(backoff(retries)).await;
                }
                // Another process won with the same command id: loop round
                // to return its stored result.
                Err(CommandError::Store(StoreError::DuplicateCommand(_))) => {}
                other => return other,
            }
        }
    }

    async fn previous_result<E>(
        &self,
        stream: &StreamKey,
        ctx: &CommandContext,
    ) -> Result<Option<Outcome>, CommandError<E>> {
        let Some(command_id) = ctx.command_id else { return Ok(None) };
        let Some((first_stream, outcome)) = self.store.command_result(command_id).await? else {
            return Ok(None);
        };
        if &first_stream != stream {
            return Err(CommandError::CommandIdReused(command_id));
        }
        Ok(Some(outcome))
    }

    /// The aggregate from the cache when present, else from the store.
    pub(super) async fn load_cached<A: Aggregate>(
        &self,
        id: Uuid,
        stream: &StreamKey,
    ) -> Result<(Loaded<A>, bool), StoreError> {
        if let Some((state, version, last_position)) = self.cache.get::<A>(stream) {
            return Ok((Loaded { state, version, last_position }, true));
        }
        Ok((self.load::<A>(id).await?, false))
    }

    pub(super) async fn attempt<A: Aggregate>(
        &self,
        id: Uuid,
        stream: &StreamKey,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError<A::Error>> {
        let (mut loaded, mut cached) = self.load_cached::<A>(id, stream).await?;
        let mut decision = self.decide::<A>(&loaded, command, ctx);
        // A cached state may be stale (another process wrote): any answer
        // that no append will verify is re-checked against the store.
        if cached && !matches!(decision, Ok(ref events) if !events.is_empty()) {
            self.cache.evict(stream);
            loaded = self.load::<A>(id).await?;
            cached = false;
            decision = self.decide::<A>(&loaded, command, ctx);
        }
        let events = decision?;
        if events.is_empty() {
            let position = match loaded.last_position {
                Some(p) => p,
                None => self.store.stream_head(stream).await?.unwrap_or_default(),
            };
            return Ok(Outcome { id, version: loaded.version, position });
        }
        let metadata = ctx.event_metadata();
        let mut state = loaded.state;
        for event in &events {
            state.apply(event);
        }
        let metadata = metadata.for_partition(id, state.partition_key(id));
        let new_events =
            events.iter().map(|e| to_new_event(e, &metadata)).collect::<Result<Vec<_>, _>>()?;
        let version = loaded.version + events.len() as i64;
        let append = StreamAppend {
            stream: stream.clone(),
            expected_version: loaded.version,
            events: new_events,
        };
        let record =
            ctx.command_id.map(|command_id| CommandRecord { command_id, stream: stream.clone() });
        let outcome = match self.store.append(vec![append], record).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.cache.evict(stream);
                if cached
                    && ctx.expected_version.is_some()
                    && matches!(e, StoreError::Conflict { .. })
                {
                    // The pinned version matched a stale cache: report the
                    // store's actual version instead.
                    let fresh = self.load::<A>(id).await?;
                    let expected = ctx.expected_version.unwrap_or_default();
                    return Err(CommandError::Conflict { expected, actual: fresh.version });
                }
                return Err(e.into());
            }
        };
        debug_assert_eq!(outcome.version, version);
        let snapshot = self.snapshot_policy().due(&state, loaded.version, version);
        self.save_snapshots(snapshot.map(|s| (stream.clone(), s))).await;
        self.cache.put(stream, state, version, Some(outcome.position));
        Ok(outcome)
    }

    /// Caches the state a batch left.
    pub(super) fn cache_put<A: Aggregate>(
        &self,
        stream: &StreamKey,
        state: A,
        version: i64,
        position: Option<Position>,
    ) {
        self.cache.put(stream, state, version, position);
    }

    /// Checks a pinned version, then lets the aggregate decide.
    fn decide<A: Aggregate>(
        &self,
        loaded: &Loaded<A>,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Result<Vec<A::Event>, CommandError<A::Error>> {
        if let Some(expected) = ctx.expected_version
            && expected != loaded.version
        {
            return Err(CommandError::Conflict { expected, actual: loaded.version });
        }
        loaded.state.handle(command).map_err(CommandError::Rejected)
    }

    pub(crate) fn snapshot_policy(&self) -> SnapshotPolicy {
        SnapshotPolicy { every: self.settings.snapshot_every }
    }

    /// Saves snapshots taken after an append. A snapshot that cannot be
    /// saved only costs load time, so failures are logged, not returned.
    pub(crate) async fn save_snapshots(
        &self,
        snapshots: impl IntoIterator<Item = (StreamKey, Snapshot)>,
    ) {
        for (stream, snapshot) in snapshots {
            if let Err(e) = self.store.save_snapshot(&stream, snapshot).await {
                tracing::warn!(error = %e, "snapshot not saved");
            }
        }
    }
}

pub(crate) fn to_new_event<E: DomainEvent, X>(
    event: &E,
    metadata: &EventMetadata,
) -> Result<NewEvent, CommandError<X>> {
    let (event_type, payload) = encode(event).map_err(StoreError::backend)?;
    Ok(NewEvent {
        event_id: Uuid::now_v7(),
        event_type,
        schema_version: event.schema_version(),
        payload,
        metadata: metadata.clone(),
    })
}

/// Counts a command's end by aggregate (`multi_stream` for a command over
/// several), command and outcome: `ok`, the
/// rejection's kind, `conflict`, `invalid` (a reused command id) or `error`.
pub(crate) fn count_command<E: Rejection>(
    aggregate: &'static str,
    command: &'static str,
    result: &Result<Outcome, CommandError<E>>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(CommandError::Rejected(e)) => match e.kind() {
            RejectionKind::Validation => "validation",
            RejectionKind::InvalidState => "invalid_state",
            RejectionKind::NotFound => "not_found",
            RejectionKind::InsufficientFunds => "insufficient_funds",
            RejectionKind::InsufficientStock => "insufficient_stock",
        },
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(CommandError::CommandIdReused(_)) => "invalid",
        Err(CommandError::Store(_)) => "error",
    };
    let labels = [("aggregate", aggregate), ("command", command), ("outcome", outcome)];
    metrics::counter!("eventfold_commands_total", &labels).increment(1);
}

/// Exponential backoff with jitter, capped at ~50 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 1u64 << attempt.min(5);
    let jitter = u64::from(Uuid::new_v4().as_u128() as u8 % 8);
    Duration::from_millis((base + jitter).min(50))
}
