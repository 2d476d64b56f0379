//! The event store on SeaORM, for PostgreSQL and SQLite.
//!
//! Appends check each stream's current version inside the transaction before
//! the first insert, then rely on the unique (stream type, stream id,
//! version) key to settle races. On PostgreSQL every row carries the id of
//! its writing transaction; `read_committed` only returns rows of
//! transactions older than the oldest one still running, so a reader never
//! passes an event that is about to commit with a smaller position.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use entity::{command_log, events, snapshots};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::es::envelope::{Position, RecordedEvent, StreamKey};
use crate::es::store::{CommandRecord, EventStore, Outcome, Snapshot, StoreError, StreamAppend};

/// Id of the oldest transaction still running, as a bigint.
const PG_XMIN: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

pub struct SeaEventStore {
    db: DatabaseConnection,
    postgres: bool,
    /// Bumped after every commit so in-process readers wake at once.
    committed: Arc<watch::Sender<u64>>,
}

impl SeaEventStore {
    pub fn new(db: DatabaseConnection) -> Self {
        let postgres = super::db::is_postgres(&db);
        SeaEventStore { db, postgres, committed: Arc::new(watch::channel(0).0) }
    }

    /// A receiver that changes after each commit made through this store.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    async fn current_version<C: sea_orm::ConnectionTrait>(
        db: &C,
        stream: &StreamKey,
    ) -> Result<i64, DbErr> {
        let version: Option<Option<i64>> = events::Entity::find()
            .select_only()
            .column_as(events::Column::Version.max(), "v")
            .filter(events::Column::StreamType.eq(stream.stream_type.as_str()))
            .filter(events::Column::StreamId.eq(stream.stream_id))
            .into_tuple()
            .one(db)
            .await?;
        Ok(version.flatten().unwrap_or(0))
    }

    async fn try_append(
        &self,
        streams: &[StreamAppend],
        command: Option<&CommandRecord>,
    ) -> Result<Result<Outcome, StoreError>, DbErr> {
        let txn = self.db.begin().await?;
        // Check every expectation before the first write: on PostgreSQL the
        // transaction id is assigned at the first write, so every event this
        // transaction depends on was committed by an older transaction.
        for append in streams {
            let actual = Self::current_version(&txn, &append.stream).await?;
            if actual != append.expected_version {
                return Ok(Err(conflict(append, actual)));
            }
        }
        let now = Utc::now();
        let mut rows = Vec::new();
        for append in streams {
            for (i, event) in append.events.iter().enumerate() {
                rows.push(events::ActiveModel {
                    position: NotSet,
                    tx_id: NotSet,
                    event_id: Set(event.event_id),
                    stream_type: Set(append.stream.stream_type.clone()),
                    stream_id: Set(append.stream.stream_id),
                    version: Set(append.expected_version + i as i64 + 1),
                    event_type: Set(event.event_type.clone()),
                    schema_version: Set(event.schema_version),
                    payload: Set(event.payload.clone()),
                    metadata: Set(serde_json::to_value(&event.metadata).unwrap_or_default()),
                    recorded_at: Set(now),
                });
            }
        }
        let inserted = events::Entity::insert_many(rows).exec_with_returning(&txn).await?;
        let last = inserted
            .iter()
            .max_by_key(|m| m.position)
            .map(|m| Position { tx: m.tx_id, pos: m.position });
        let first = &streams[0];
        let outcome = Outcome {
            id: first.stream.stream_id,
            version: first.expected_version + first.events.len() as i64,
            position: last.unwrap_or_default(),
        };
        if let Some(command) = command {
            command_log::Entity::insert(command_log::ActiveModel {
                command_id: Set(command.command_id),
                stream_type: Set(command.stream.stream_type.clone()),
                stream_id: Set(command.stream.stream_id),
                result: Set(serde_json::to_value(outcome).unwrap_or_default()),
                recorded_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        self.committed.send_modify(|n| *n += 1);
        Ok(Ok(outcome))
    }
}

fn conflict(append: &StreamAppend, actual: i64) -> StoreError {
    StoreError::Conflict {
        stream_type: append.stream.stream_type.clone(),
        stream_id: append.stream.stream_id,
        expected: append.expected_version,
        actual,
    }
}

fn to_recorded(m: events::Model) -> RecordedEvent {
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

/// Rows after `after` in commit order.
fn after_condition(after: Position) -> Condition {
    Condition::any().add(events::Column::TxId.gt(after.tx)).add(
        Condition::all()
            .add(events::Column::TxId.eq(after.tx))
            .add(events::Column::Position.gt(after.pos)),
    )
}

#[async_trait]
impl EventStore for SeaEventStore {
    async fn append(
        &self,
        streams: Vec<StreamAppend>,
        command: Option<CommandRecord>,
    ) -> Result<Outcome, StoreError> {
        if streams.is_empty() || streams.iter().any(|s| s.events.is_empty()) {
            return Err(StoreError::Backend("append without events".into()));
        }
        match self.try_append(&streams, command.as_ref()).await {
            Ok(result) => result,
            Err(err) => match err.sql_err() {
                // The unique key settled a race: someone else got there first.
                Some(SqlErr::UniqueConstraintViolation(msg)) if msg.contains("command_log") => Err(
                    StoreError::DuplicateCommand(command.map(|c| c.command_id).unwrap_or_default()),
                ),
                Some(SqlErr::UniqueConstraintViolation(_)) => {
                    let mut first_moved = None;
                    for append in &streams {
                        let actual = Self::current_version(&self.db, &append.stream)
                            .await
                            .map_err(StoreError::backend)?;
                        if actual != append.expected_version {
                            first_moved = Some(conflict(append, actual));
                            break;
                        }
                    }
                    Err(first_moved
                        .unwrap_or_else(|| conflict(&streams[0], streams[0].expected_version + 1)))
                }
                _ => Err(StoreError::backend(err)),
            },
        }
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
        let mut query = events::Entity::find().filter(after_condition(after));
        if self.postgres {
            query = query.filter(Expr::col(events::Column::TxId).lt(Expr::cust(PG_XMIN)));
        }
        let rows = query
            .order_by_asc(events::Column::TxId)
            .order_by_asc(events::Column::Position)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(StoreError::backend)?;
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
        let ids: Vec<i64> = events::Entity::find()
            .select_only()
            .column(events::Column::Position)
            .filter(after_condition(after))
            .limit(cap)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(ids.len() as u64)
    }
}
