//! Stream history from the audit log read table.

use async_graphql::connection::Connection;
use async_graphql::{Context, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pagination::{bad_cursor, connection, page_size};
use super::{ApiError, caller, read_after, services};
use crate::service::LoggedEvent;

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
    /// The business transaction the event belongs to: every event a
    /// request caused, across streams and process managers, shares it.
    /// Null for events recorded without one.
    pub correlation_id: Option<String>,
    /// What caused the command that recorded the event: the id of the
    /// event a process manager reacted to, or the client's `commandId`
    /// for a command from the API (null when it gave none).
    pub causation_id: Option<String>,
}

impl From<LoggedEvent> for AuditEvent {
    fn from(e: LoggedEvent) -> Self {
        let correlation_id = e.correlation_id().map(str::to_owned);
        let causation_id = e.causation_id().map(str::to_owned);
        AuditEvent {
            correlation_id,
            causation_id,
            position: e.position.to_string(),
            event_id: e.event_id,
            stream_type: e.stream_type,
            stream_id: e.stream_id,
            version: e.version,
            event_type: e.event_type,
            schema_version: e.schema_version,
            payload: Json(e.payload),
            metadata: Json(e.metadata),
            recorded_at: e.recorded_at,
        }
    }
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
        let limit = page_size(first)?;
        let after_version = match &after {
            Some(c) => c.parse::<i64>().map_err(|_| bad_cursor())?,
            None => 0,
        };
        let page = services(ctx)?
            .stream_events(
                caller(ctx)?,
                &stream_type,
                stream_id,
                after_version,
                limit,
                read_after(ctx, &min_position),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |e| (e.version.to_string(), AuditEvent::from(e))))
    }

    /// Every event of one business transaction (see
    /// `AuditEvent.correlationId`), across streams, in commit order;
    /// cursors are positions. Admins only.
    async fn events_by_correlation(
        &self,
        ctx: &Context<'_>,
        id: String,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, AuditEvent>> {
        let limit = page_size(first)?;
        let after_position = super::feed::position(after.as_deref())?;
        let page = services(ctx)?
            .events_by_correlation(
                caller(ctx)?,
                &id,
                after_position,
                limit,
                read_after(ctx, &min_position),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |e| (e.position.to_string(), AuditEvent::from(e))))
    }
}
