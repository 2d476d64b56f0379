//! The event store port. Implementations append atomically with optimistic
//! concurrency and read streams and the whole log back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::envelope::{NewEvent, Position, RecordedEvent, StreamKey};

/// Events for one stream within an append, with the version the writer
/// believes the stream is at (0 for a new stream).
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: StreamKey,
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
}

/// A command that carried a client `commandId`. The store records its
/// [`Outcome`] in the same transaction as its events so a retry finds it.
#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub command_id: Uuid,
    pub stream: StreamKey,
}

/// One of several commands whose events go, one after another, into a
/// single append of one stream (see [`EventStore::append_commands`]).
#[derive(Debug, Clone)]
pub struct BatchedCommand {
    /// How many of the append's events are this command's (at least one);
    /// the commands' events follow each other in the order given.
    pub events: usize,
    pub record: Option<CommandRecord>,
}

/// What a successful command returns (and what the command log keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: Uuid,
    /// The stream's version after the command.
    pub version: i64,
    /// The position of the command's last event (or of the stream's last
    /// event when the command changed nothing).
    pub position: Position,
}

/// The latest serialized state of one aggregate.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: i64,
    pub state_version: i32,
    pub state: serde_json::Value,
    pub taken_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `CONCURRENCY_CONFLICT`: the stream moved past the expected version.
    #[error("stream {stream_type}/{stream_id} is at version {actual}, expected {expected}")]
    Conflict { stream_type: String, stream_id: Uuid, expected: i64, actual: i64 },
    /// The command id was already used; its first result is stored.
    #[error("command {0} was already processed")]
    DuplicateCommand(Uuid),
    /// `INTERNAL`: the database failed. The text is for logs only.
    #[error("event store failure: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn backend(err: impl std::fmt::Display) -> Self {
        StoreError::Backend(err.to_string())
    }
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends to one or more streams in one transaction: all or nothing.
    /// Returns the outcome for the first stream (the command's own), which
    /// must carry events; a later stream with no events only asserts that
    /// it is still at its expected version, and no concurrent append may
    /// move it until this one has committed (it is locked, not just
    /// re-read: two appends that each read the other's stream never both
    /// succeed).
    async fn append(
        &self,
        streams: Vec<StreamAppend>,
        command: Option<CommandRecord>,
    ) -> Result<Outcome, StoreError>;

    /// Appends the events of several commands on one stream in one
    /// transaction (all or nothing), each command with its own outcome
    /// (version and position after its own last event) and its own command
    /// record. A store that cannot batch answers `Backend`, and the caller
    /// appends each command alone.
    async fn append_commands(
        &self,
        append: StreamAppend,
        commands: Vec<BatchedCommand>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let _ = (append, commands);
        Err(StoreError::Backend("batched appends are not supported".into()))
    }

    /// The events of one stream with a version above `after_version`, in
    /// version order.
    async fn load_stream(
        &self,
        stream: &StreamKey,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Position of the newest event of a stream, if it has any.
    async fn stream_head(&self, stream: &StreamKey) -> Result<Option<Position>, StoreError>;

    /// The stored result of a command id, with the stream it acted on.
    async fn command_result(
        &self,
        command_id: Uuid,
    ) -> Result<Option<(StreamKey, Outcome)>, StoreError>;

    async fn load_snapshot(&self, stream: &StreamKey) -> Result<Option<Snapshot>, StoreError>;

    async fn save_snapshot(&self, stream: &StreamKey, snapshot: Snapshot)
    -> Result<(), StoreError>;

    /// Up to `limit` committed events after `after` in commit order. The
    /// store guarantees that no event can still commit before one it
    /// returned (appends commit in position order), so a reader that
    /// advances through these never skips an event.
    async fn read_committed(
        &self,
        after: Position,
        limit: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// One event by its id.
    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError>;

    /// How many committed events lie after `after` (capped at `cap`).
    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError>;
}
