//! Reading `audit_log`.

use chrono::{DateTime, Utc};
use entity::audit_log as log;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
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
    let mut items = log::Entity::find()
        .filter(log::Column::StreamType.eq(stream_type))
        .filter(log::Column::StreamId.eq(stream_id))
        .filter(log::Column::Version.gt(after_version))
        .order_by_asc(log::Column::Version)
        .limit(limit + 1)
        .all(db)
        .await?;
    let has_next = items.len() as u64 > limit;
    items.truncate(limit as usize);
    Ok(Page { items: items.into_iter().map(LoggedEvent::from).collect(), has_next })
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
    let mut items = query
        .order_by_asc(log::Column::TxId)
        .order_by_asc(log::Column::Position)
        .limit(limit + 1)
        .all(db)
        .await?;
    let has_next = items.len() as u64 > limit;
    items.truncate(limit as usize);
    Ok(Page { items: items.into_iter().map(LoggedEvent::from).collect(), has_next })
}
