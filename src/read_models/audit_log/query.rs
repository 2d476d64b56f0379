//! Reading `audit_log`.

use chrono::{DateTime, Utc};
use entity::audit_log as log;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::es::envelope::Position;
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
