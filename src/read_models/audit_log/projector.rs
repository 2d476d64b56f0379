//! `audit_log`: a copy of every event of every stream, for stream history.

use async_trait::async_trait;
use entity::audit_log as log;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait};

use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError};

pub const NAME: &str = "audit_log";

pub struct AuditLogProjection;

#[async_trait]
impl Projection for AuditLogProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        self.apply_batch(txn, &[event]).await
    }

    /// One multi-row insert per batch; a position already logged is skipped.
    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        // 1000 rows of 12 parameters stay well under PostgreSQL's 65,535.
        for chunk in events.chunks(1000) {
            let rows = chunk.iter().map(|event| log::ActiveModel {
                position: Set(event.position.pos),
                tx_id: Set(event.position.tx),
                event_id: Set(event.event_id),
                stream_type: Set(event.stream.stream_type.clone()),
                stream_id: Set(event.stream.stream_id),
                version: Set(event.version),
                event_type: Set(event.event_type.clone()),
                schema_version: Set(event.schema_version),
                payload: Set(event.payload.clone()),
                metadata: Set(event.metadata.clone()),
                recorded_at: Set(event.recorded_at),
                correlation_id: Set(correlation_of(event)),
            });
            log::Entity::insert_many(rows)
                .on_conflict(OnConflict::column(log::Column::Position).do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
        }
        Ok(vec![])
    }
}

/// The event's correlation id as the indexed column keeps it (at most 128
/// characters; events recorded without one have none).
fn correlation_of(event: &RecordedEvent) -> Option<String> {
    let id = event.metadata.get("correlation_id")?.as_str()?;
    Some(id.chars().take(128).collect())
}
