//! Multi-stream commands: load several aggregates, let them decide, and
//! append to all their streams in one store append — all or nothing, each
//! stream with the version it was loaded at as its expectation.
//!
//! The semantics are those of [`CommandExecutor::execute`]: in-process
//! locking per stream (here of every declared stream, in sorted order so two
//! commands over the same streams cannot deadlock), retry from a fresh load
//! after a lost race, `commandId` idempotency recorded against the command's
//! own stream, and snapshots when a stream crosses a multiple of
//! `snapshot_every`.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;

use async_trait::async_trait;
use uuid::Uuid;

use super::aggregate::Aggregate;
use super::command::{CommandContext, CommandError, CommandExecutor, Outcome, to_new_event};
use super::envelope::{EventMetadata, NewEvent, Position, StreamKey};
use super::store::{CommandRecord, Snapshot, StoreError, StreamAppend};

/// A command over several aggregates.
///
/// `decide` runs once per attempt against freshly loaded states: it may
/// read any stream ([`UnitOfWork::state`]) but append only to the streams
/// that `streams` declared ([`UnitOfWork::handle`]).
#[async_trait]
pub trait MultiStreamCommand: Send + Sync {
    /// The rejection this command reports; every aggregate it drives must
    /// convert its own error into it.
    type Rejection: super::aggregate::Rejection + Send + Sync + 'static;

    /// The streams the command may append to. The first is the command's
    /// own stream: it must receive events whenever any stream does, its
    /// outcome is returned, `expectedVersion` applies to it and a
    /// `commandId` is recorded against it.
    fn streams(&self) -> Vec<StreamKey>;

    async fn decide(
        &self,
        work: &mut UnitOfWork<'_, Self::Rejection>,
    ) -> Result<(), CommandError<Self::Rejection>>;
}

/// The streams one attempt of a multi-stream command has loaded, with the
/// events decided so far, not yet appended.
pub struct UnitOfWork<'a, E> {
    executor: &'a CommandExecutor,
    writable: Vec<StreamKey>,
    expected_version: Option<i64>,
    metadata: EventMetadata,
    entries: HashMap<StreamKey, Entry>,
    _rejection: PhantomData<fn() -> E>,
}

struct Entry {
    state: Box<dyn Any + Send + Sync>,
    /// The version the stream was loaded at: the append's expectation.
    version: i64,
    last_position: Option<Position>,
    pending: Vec<NewEvent>,
    /// Due when the pending events cross a snapshot boundary.
    snapshot: Option<Snapshot>,
}

impl<'a, E> UnitOfWork<'a, E> {
    fn new(executor: &'a CommandExecutor, writable: Vec<StreamKey>, ctx: &CommandContext) -> Self {
        UnitOfWork {
            executor,
            writable,
            expected_version: ctx.expected_version,
            metadata: ctx.event_metadata(),
            entries: HashMap::new(),
            _rejection: PhantomData,
        }
    }

    /// The aggregate's state, loaded once per attempt and including the
    /// events already decided in this unit of work.
    pub async fn state<A: Aggregate>(&mut self, id: Uuid) -> Result<&A, CommandError<E>> {
        let stream = StreamKey::new(A::STREAM_TYPE, id);
        self.ensure_loaded::<A>(&stream).await?;
        Ok(self.entry_state::<A>(&stream)?)
    }

    /// Lets the aggregate decide `command`, applies the events to its state
    /// in this unit of work and queues them for the append.
    pub async fn handle<A: Aggregate>(
        &mut self,
        id: Uuid,
        command: &A::Command,
    ) -> Result<Vec<A::Event>, CommandError<E>>
    where
        E: From<A::Error>,
    {
        let stream = StreamKey::new(A::STREAM_TYPE, id);
        if !self.writable.contains(&stream) {
            return Err(StoreError::Backend(format!(
                "{}/{id} was not declared by the command",
                A::STREAM_TYPE
            ))
            .into());
        }
        self.ensure_loaded::<A>(&stream).await?;
        let policy = self.executor.snapshot_policy();
        let entry = self.entries.get_mut(&stream).ok_or_else(|| mismatch(&stream))?;
        let Entry { state, version, pending, snapshot, .. } = entry;
        let state = state.downcast_mut::<A>().ok_or_else(|| mismatch(&stream))?;
        let events = state.handle(command).map_err(|e| CommandError::Rejected(E::from(e)))?;
        for event in &events {
            state.apply(event);
        }
        let metadata = self.metadata.for_partition(id, state.partition_key(id));
        for event in &events {
            pending.push(to_new_event(event, &metadata)?);
        }
        if !events.is_empty() {
            *snapshot = policy.due(&*state, *version, *version + pending.len() as i64);
        }
        Ok(events)
    }

    async fn ensure_loaded<A: Aggregate>(
        &mut self,
        stream: &StreamKey,
    ) -> Result<(), CommandError<E>> {
        if self.entries.contains_key(stream) {
            return Ok(());
        }
        let loaded = self.executor.load::<A>(stream.stream_id).await?;
        if self.writable.first() == Some(stream)
            && let Some(expected) = self.expected_version
            && expected != loaded.version
        {
            return Err(CommandError::Conflict { expected, actual: loaded.version });
        }
        self.entries.insert(
            stream.clone(),
            Entry {
                state: Box::new(loaded.state),
                version: loaded.version,
                last_position: loaded.last_position,
                pending: Vec::new(),
                snapshot: None,
            },
        );
        Ok(())
    }

    fn entry_state<A: Aggregate>(&self, stream: &StreamKey) -> Result<&A, StoreError> {
        let entry = self.entries.get(stream).ok_or_else(|| mismatch(stream))?;
        entry.state.downcast_ref::<A>().ok_or_else(|| mismatch(stream))
    }

    /// The appends, own stream first, and the snapshots due after them.
    /// Every stream that was read but not written follows as an append of
    /// no events: the store then checks it is still at the version the
    /// decision saw and holds it until the append commits, so a decision
    /// never rests on a state that moved.
    fn into_appends(mut self) -> (Vec<StreamAppend>, Vec<(StreamKey, Snapshot)>) {
        let mut appends = Vec::new();
        let mut snapshots = Vec::new();
        for stream in &self.writable {
            let Some(entry) = self.entries.get_mut(stream) else { continue };
            if entry.pending.is_empty() {
                continue;
            }
            appends.push(StreamAppend {
                stream: stream.clone(),
                expected_version: entry.version,
                events: std::mem::take(&mut entry.pending),
            });
            if let Some(snapshot) = entry.snapshot.take() {
                snapshots.push((stream.clone(), snapshot));
            }
        }
        if !appends.is_empty() {
            let mut read_only: Vec<_> = self
                .entries
                .iter()
                .filter(|(stream, entry)| {
                    entry.pending.is_empty() && !appends.iter().any(|a| &a.stream == *stream)
                })
                .map(|(stream, entry)| StreamAppend {
                    stream: stream.clone(),
                    expected_version: entry.version,
                    events: Vec::new(),
                })
                .collect();
            read_only.sort_by(|a, b| a.stream.cmp(&b.stream));
            appends.extend(read_only);
        }
        (appends, snapshots)
    }
}

impl CommandExecutor {
    /// Executes a command over several aggregates with one atomic append.
    pub async fn execute_many<C: MultiStreamCommand>(
        &self,
        command: &C,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError<C::Rejection>> {
        let mut streams = Vec::new();
        for stream in command.streams() {
            if !streams.contains(&stream) {
                streams.push(stream);
            }
        }
        let Some(own) = streams.first().cloned() else {
            return Err(StoreError::Backend("a command must declare its own stream".into()).into());
        };
        // Sorted order: two commands sharing streams always lock them in the
        // same order, so neither can hold one the other waits for.
        let mut sorted = streams.clone();
        sorted.sort();
        let mut guards = Vec::with_capacity(sorted.len());
        for stream in &sorted {
            guards.push(self.lock_stream(stream).await);
        }
        let result =
            self.with_retries(&own, ctx, || self.attempt_many(command, &streams, ctx)).await;
        super::command::count_command("multi_stream", short_type_name::<C>(), &result);
        result
    }

    async fn attempt_many<C: MultiStreamCommand>(
        &self,
        command: &C,
        streams: &[StreamKey],
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError<C::Rejection>> {
        let own = &streams[0];
        let mut work = UnitOfWork::new(self, streams.to_vec(), ctx);
        command.decide(&mut work).await?;
        let Some(entry) = work.entries.get(own) else {
            return Err(StoreError::Backend("a command must load its own stream".into()).into());
        };
        let (version, last_position) = (entry.version, entry.last_position);
        let (appends, snapshots) = work.into_appends();
        let Some(first) = appends.first() else {
            let position = match last_position {
                Some(p) => p,
                None => self.store().stream_head(own).await?.unwrap_or_default(),
            };
            return Ok(Outcome { id: own.stream_id, version, position });
        };
        if &first.stream != own {
            return Err(
                StoreError::Backend("a command must append to its own stream".into()).into()
            );
        }
        let record =
            ctx.command_id.map(|command_id| CommandRecord { command_id, stream: own.clone() });
        // Single-stream commands cache states; these streams move here.
        let written: Vec<StreamKey> = appends.iter().map(|a| a.stream.clone()).collect();
        let appended = self.store().append(appends, record).await;
        for stream in &written {
            self.evict_cached(stream);
        }
        let outcome = appended?;
        self.save_snapshots(snapshots).await;
        Ok(outcome)
    }
}

fn mismatch(stream: &StreamKey) -> StoreError {
    StoreError::Backend(format!(
        "{}/{} is loaded as another aggregate type",
        stream.stream_type, stream.stream_id
    ))
}

/// The last segment of a type's path (`CreateOrder`), a static string.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
