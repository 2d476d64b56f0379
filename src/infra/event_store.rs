//! The event store on SeaORM, for PostgreSQL and SQLite.
//!
//! Appends (see [`super::event_writer`]) check each stream's current version
//! inside the transaction before the first insert, then rely on the unique
//! (stream type, stream id, version) key to settle races. On PostgreSQL every row carries the id of
//! its writing transaction, and transactions that insert events commit one
//! after another in the order of their transaction ids and positions (a
//! lock taken by a trigger before the INSERT; see the migration
//! `serialize_event_commits`): `read_committed` returns committed rows in
//! `(tx_id, position)` order and a reader never passes an event that could
//! still commit before it, without waiting for other transactions.

use std::sync::Arc;

use async_trait::async_trait;
use entity::{command_log, events, snapshots};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, SelectStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::event_writer::Writer;
use crate::es::envelope::{Position, RecordedEvent, StreamKey};
use crate::es::store::{
    BatchedCommand, CommandRecord, EventStore, Outcome, Snapshot, StoreError, StreamAppend,
};

pub struct SeaEventStore {
    db: DatabaseConnection,
    /// Bumped after every commit so in-process readers wake at once.
    committed: Arc<watch::Sender<u64>>,
    writer: Arc<Writer>,
}

/// Group-commit writer tasks on PostgreSQL (SQLite has one).
pub const POSTGRES_WRITERS: usize = 2;

impl SeaEventStore {
    pub fn new(db: DatabaseConnection) -> Self {
        let postgres = super::db::is_postgres(&db);
        let committed = Arc::new(watch::channel(0).0);
        // SQLite has one connection: a second writer would only queue.
        let writers = if postgres { POSTGRES_WRITERS } else { 1 };
        let writer = Writer::start(db.clone(), committed.clone(), writers);
        SeaEventStore { db, committed, writer }
    }

    /// A receiver that changes after each commit made through this store.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// The store's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Whether the store's database answers.
    pub async fn ping(&self) -> Result<(), sea_orm::DbErr> {
        self.db.ping().await
    }

    /// Whether appends can complete: at least one group-commit writer task
    /// is alive (a failed one is restarted after a pause).
    pub fn writer_running(&self) -> bool {
        self.writer.running()
    }
}

pub(crate) fn to_recorded(m: events::Model) -> RecordedEvent {
    RecordedEvent {
        position: Position { tx: m.tx_id, pos: m.position },
        event_id: m.event_id,
        stream: StreamKey { stream_type: m.stream_type, stream_id: m.stream_id },
        version: m.version,
        event_type: m.event_type,
        schema_version: m.schema_version,
        payload: m.payload,
        metadata: m.metadata,
        recorded_at: m.recorded_at,
    }
}

/// Rows after `after` in commit order, as one row comparison
/// `(tx_id, position) > ($1, $2)`: PostgreSQL matches it against the
/// commit-order index (tx_id, position) as an index condition, in custom and
/// in generic plans alike. The equivalent `tx_id > $1 OR (tx_id = $1 AND
/// position > $2)` only bounds `tx_id`, and a cached generic plan then walks
/// the index and filters every row.
fn after_condition(after: Position) -> Condition {
    Condition::all().add(
        Expr::tuple([Expr::col(events::Column::TxId), Expr::col(events::Column::Position)])
            .gt(Expr::tuple([Expr::val(after.tx), Expr::val(after.pos)])),
    )
}

/// The relay's (and every commit-order reader's) query: up to `limit`
/// committed rows after `after` in commit order. No horizon: events commit
/// in `(tx_id, position)` order (see the module doc), so whatever this
/// statement's snapshot sees after `after` is a gap-free run. Public so a
/// test can `EXPLAIN` exactly this statement.
pub fn read_committed_query(after: Position, limit: u64) -> Select<events::Entity> {
    events::Entity::find()
        .filter(after_condition(after))
        .order_by_asc(events::Column::TxId)
        .order_by_asc(events::Column::Position)
        .limit(limit)
}

#[async_trait]
impl EventStore for SeaEventStore {
    async fn append(
        &self,
        streams: Vec<StreamAppend>,
        command: Option<CommandRecord>,
    ) -> Result<Outcome, StoreError> {
        if streams.first().is_none_or(|s| s.events.is_empty()) {
            return Err(StoreError::Backend("append without events".into()));
        }
        self.writer.append(streams, command).await
    }

    async fn append_commands(
        &self,
        append: StreamAppend,
        commands: Vec<BatchedCommand>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let total: usize = commands.iter().map(|c| c.events).sum();
        if total != append.events.len() || commands.iter().any(|c| c.events == 0) {
            return Err(StoreError::Backend("batched commands do not cover the events".into()));
        }
        self.writer.append_commands(vec![append], commands).await
    }

    async fn load_stream(
        &self,
        stream: &StreamKey,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = events::Entity::find()
            .filter(events::Column::StreamType.eq(stream.stream_type.as_str()))
            .filter(events::Column::StreamId.eq(stream.stream_id))
            .filter(events::Column::Version.gt(after_version))
            .order_by_asc(events::Column::Version)
            .all(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(rows.into_iter().map(to_recorded).collect())
    }

    async fn stream_head(&self, stream: &StreamKey) -> Result<Option<Position>, StoreError> {
        let row = events::Entity::find()
            .filter(events::Column::StreamType.eq(stream.stream_type.as_str()))
            .filter(events::Column::StreamId.eq(stream.stream_id))
            .order_by_desc(events::Column::Version)
            .one(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(row.map(|m| Position { tx: m.tx_id, pos: m.position }))
    }

    async fn command_result(
        &self,
        command_id: Uuid,
    ) -> Result<Option<(StreamKey, Outcome)>, StoreError> {
        let Some(row) = command_log::Entity::find_by_id(command_id)
            .one(&self.db)
            .await
            .map_err(StoreError::backend)?
        else {
            return Ok(None);
        };
        let outcome = serde_json::from_value(row.result).map_err(StoreError::backend)?;
        Ok(Some((StreamKey { stream_type: row.stream_type, stream_id: row.stream_id }, outcome)))
    }

    async fn load_snapshot(&self, stream: &StreamKey) -> Result<Option<Snapshot>, StoreError> {
        let row = snapshots::Entity::find_by_id((stream.stream_type.clone(), stream.stream_id))
            .one(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(row.map(|m| Snapshot {
            version: m.version,
            state_version: m.state_version,
            state: m.state,
            taken_at: m.taken_at,
        }))
    }

    async fn save_snapshot(
        &self,
        stream: &StreamKey,
        snapshot: Snapshot,
    ) -> Result<(), StoreError> {
        let row = snapshots::ActiveModel {
            stream_type: Set(stream.stream_type.clone()),
            stream_id: Set(stream.stream_id),
            version: Set(snapshot.version),
            state_version: Set(snapshot.state_version),
            state: Set(snapshot.state),
            taken_at: Set(snapshot.taken_at),
        };
        // Never move a snapshot backwards if a slower writer arrives late.
        snapshots::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([snapshots::Column::StreamType, snapshots::Column::StreamId])
                    .update_columns([
                        snapshots::Column::Version,
                        snapshots::Column::StateVersion,
                        snapshots::Column::State,
                        snapshots::Column::TakenAt,
                    ])
                    .action_and_where(
                        Expr::col((snapshots::Entity, snapshots::Column::Version))
                            .lt(Expr::cust("excluded.version")),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn read_committed(
        &self,
        after: Position,
        limit: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows =
            read_committed_query(after, limit).all(&self.db).await.map_err(StoreError::backend)?;
        Ok(rows.into_iter().map(to_recorded).collect())
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = events::Entity::find()
            .filter(events::Column::EventId.eq(event_id))
            .one(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(row.map(to_recorded))
    }

    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError> {
        // Counted in the database over at most `cap` index entries: the
        // cost is bounded however far behind `after` is.
        let capped = events::Entity::find()
            .select_only()
            .column(events::Column::Position)
            .filter(after_condition(after))
            .limit(cap)
            .into_query();
        let count = SelectStatement::new()
            .expr(Expr::cust("COUNT(*) AS pending"))
            .from_subquery(capped, "capped")
            .to_owned();
        let row = self.db.query_one(&count).await.map_err(StoreError::backend)?;
        let pending = match row {
            Some(row) => row.try_get::<i64>("", "pending").map_err(StoreError::backend)?,
            None => 0,
        };
        Ok(pending as u64)
    }
}
