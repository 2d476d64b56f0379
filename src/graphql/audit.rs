//! Stream history from the audit log read table.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::audit_log as log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::ApiError;
use super::pagination::{connection, page_size};
use crate::app::Services;
use crate::es::envelope::Position;
use crate::projections::audit_log;

/// One stored event, as recorded.
#[derive(SimpleObject)]
pub struct AuditEvent {
    pub position: String,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Json<serde_json::Value>,
    pub metadata: Json<serde_json::Value>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The history of one stream, oldest first; cursors are stream versions.
    async fn stream_events(
        &self,
        ctx: &Context<'_>,
        stream_type: String,
        stream_id: Uuid,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, AuditEvent>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[audit_log::NAME], min_position.as_deref()).await?;
        let limit = page_size(first)?;
        let after_version = match &after {
            Some(c) => c
                .parse::<i64>()
                .map_err(|_| ApiError::validation("after is not a cursor from this list"))?,
            None => 0,
        };
        let rows = log::Entity::find()
            .filter(log::Column::StreamType.eq(stream_type))
            .filter(log::Column::StreamId.eq(stream_id))
            .filter(log::Column::Version.gt(after_version))
            .order_by_asc(log::Column::Version)
            .limit(limit + 1)
            .all(&services.read_db)
            .await
            .map_err(ApiError::from)?;
        let rows = rows
            .into_iter()
            .map(|m| {
                let node = AuditEvent {
                    position: Position { tx: m.tx_id, pos: m.position }.to_string(),
                    event_id: m.event_id,
                    stream_type: m.stream_type,
                    stream_id: m.stream_id,
                    version: m.version,
                    event_type: m.event_type,
                    schema_version: m.schema_version,
                    payload: Json(m.payload),
                    metadata: Json(m.metadata),
                    recorded_at: m.recorded_at,
                };
                (m.version.to_string(), node)
            })
            .collect();
        Ok(connection(rows, limit, after.is_some()))
    }
}
