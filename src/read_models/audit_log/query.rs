//! Reading `audit_log`.

use chrono::{DateTime, Utc};
use entity::audit_log as log;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use crate::es::envelope::{Position, RecordedEvent};
use crate::read_models::Page;

/// One stored event, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: Position,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl LoggedEvent {
    /// The business transaction the event belongs to (events recorded
    /// before correlation ids were kept have none).
    pub fn correlation_id(&self) -> Option<&str> {
        self.metadata.get("correlation_id")?.as_str()
    }

    /// The id of what caused the event's command: the event a process
    /// manager reacted to, or the client's `commandId`.
    pub fn causation_id(&self) -> Option<&str> {
        self.metadata.get("causation_id")?.as_str()
    }
}

impl From<log::Model> for LoggedEvent {
    fn from(m: log::Model) -> Self {
        LoggedEvent {
            position: Position { tx: m.tx_id, pos: m.position },
            event_id: m.event_id,
            stream_type: m.stream_type,
            stream_id: m.stream_id,
            version: m.version,
            event_type: m.event_type,
            schema_version: m.schema_version,
            payload: m.payload,
            metadata: m.metadata,
            recorded_at: m.recorded_at,
        }
    }
}

impl From<RecordedEvent> for LoggedEvent {
    fn from(e: RecordedEvent) -> Self {
        LoggedEvent {
            position: e.position,
            event_id: e.event_id,
            stream_type: e.stream.stream_type,
            stream_id: e.stream.stream_id,
            version: e.version,
            event_type: e.event_type,
            schema_version: e.schema_version,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}

/// Up to `limit` events of one stream after version `after_version`,
/// oldest first.
pub async fn stream_page(
    db: &DatabaseConnection,
    stream_type: &str,
    stream_id: Uuid,
    after_version: i64,
    limit: u64,
) -> Result<Page<LoggedEvent>, DbErr> {
    let items = log::Entity::find()
        .filter(log::Column::StreamType.eq(stream_type))
        .filter(log::Column::StreamId.eq(stream_id))
        .filter(log::Column::Version.gt(after_version))
        .order_by_asc(log::Column::Version)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(Page::of(items, limit).map(LoggedEvent::from))
}

/// Up to `limit` events of the business transaction `correlation_id`,
/// across streams, in commit order after `after`.
pub async fn correlation_page(
    db: &DatabaseConnection,
    correlation_id: &str,
    after: Option<Position>,
    limit: u64,
) -> Result<Page<LoggedEvent>, DbErr> {
    let mut query = log::Entity::find().filter(log::Column::CorrelationId.eq(correlation_id));
    if let Some(after) = after {
        query = query.filter(
            Condition::any().add(log::Column::TxId.gt(after.tx)).add(
                Condition::all()
                    .add(log::Column::TxId.eq(after.tx))
                    .add(log::Column::Position.gt(after.pos)),
            ),
        );
    }
    let items = query
        .order_by_asc(log::Column::TxId)
        .order_by_asc(log::Column::Position)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(Page::of(items, limit).map(LoggedEvent::from))
}

/// How many streams and events one stream type holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTypeCount {
    pub stream_type: String,
    pub streams: i64,
    pub events: i64,
}

/// Every stream type in the log with its counts, by name.
pub async fn stream_type_counts(db: &DatabaseConnection) -> Result<Vec<StreamTypeCount>, DbErr> {
    let sql = "SELECT stream_type, COUNT(DISTINCT stream_id) AS streams, COUNT(*) AS events \
               FROM audit_log GROUP BY stream_type ORDER BY stream_type";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    rows.into_iter()
        .map(|row| {
            Ok(StreamTypeCount {
                stream_type: row.try_get("", "stream_type")?,
                streams: row.try_get("", "streams")?,
                events: row.try_get("", "events")?,
            })
        })
        .collect()
}

/// One stream: its type, id and version (its number of events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i64,
}

/// Which streams [`streams_page`] lists.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    pub stream_type: Option<String>,
    pub stream_id: Option<Uuid>,
    /// Only streams with an id above this one.
    pub after: Option<Uuid>,
}

/// Up to `limit` streams matching `filter`, by id.
pub async fn streams_page(
    db: &DatabaseConnection,
    filter: &StreamFilter,
    limit: u64,
) -> Result<Page<StreamSummary>, DbErr> {
    let mut query = log::Entity::find()
        .select_only()
        .column(log::Column::StreamType)
        .column(log::Column::StreamId)
        .column_as(log::Column::Version.max(), "version");
    if let Some(t) = &filter.stream_type {
        query = query.filter(log::Column::StreamType.eq(t.as_str()));
    }
    if let Some(id) = filter.stream_id {
        query = query.filter(log::Column::StreamId.eq(id));
    }
    if let Some(after) = filter.after {
        query = query.filter(log::Column::StreamId.gt(after));
    }
    let rows: Vec<(String, Uuid, i64)> = query
        .group_by(log::Column::StreamType)
        .group_by(log::Column::StreamId)
        .order_by_asc(log::Column::StreamId)
        .order_by_asc(log::Column::StreamType)
        .limit(limit + 1)
        .into_tuple()
        .all(db)
        .await?;
    Ok(Page::of(rows, limit).map(|(stream_type, stream_id, version)| StreamSummary {
        stream_type,
        stream_id,
        version,
    }))
}
