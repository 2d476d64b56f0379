//! `audit_log`: a copy of every event of every stream, for stream history.

use std::collections::HashMap;

use async_trait::async_trait;
use entity::audit_log as log;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait};
use uuid::Uuid;

use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Cover, OneStatement, Projection, ProjectionError, ROUND_TRIP_BYTES};
use crate::read_models::ONE_STATEMENT_FOLD_MAX;

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
        for chunk in chunks(events) {
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

    /// A live batch (up to [`ONE_STATEMENT_FOLD_MAX`] events) as one
    /// INSERT of JSON rows; larger ones go in the binary multi-row inserts.
    fn one_statement(
        &self,
        events: &[&RecordedEvent],
    ) -> Result<Option<OneStatement>, ProjectionError> {
        if events.is_empty() || events.len() > ONE_STATEMENT_FOLD_MAX {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(events.len());
        let mut per_stream: HashMap<Uuid, usize> = HashMap::new();
        for event in events {
            *per_stream.entry(event.stream.stream_id).or_default() += 1;
            rows.push(serde_json::json!({
                "position": event.position.pos, "tx_id": event.position.tx,
                "event_id": event.event_id, "stream_type": event.stream.stream_type,
                "stream_id": event.stream.stream_id, "version": event.version,
                "event_type": event.event_type, "schema_version": event.schema_version,
                "payload": event.payload, "metadata": event.metadata,
                "recorded_at": event.recorded_at, "correlation_id": correlation_of(event),
            }));
        }
        let covers = per_stream
            .into_iter()
            .map(|(stream_id, rows)| Cover { stream_id, rows, change: None })
            .collect();
        Ok(Some(OneStatement::of_json_rows(INSERT_ROWS_PG, rows, covers)))
    }
}

/// The events of the JSON array `$1` as rows; a position already logged is
/// skipped (and its stream left to the fold, which skips it too).
const INSERT_ROWS_PG: &str = "INSERT INTO audit_log (position, tx_id, event_id, stream_type, \
       stream_id, version, event_type, schema_version, payload, metadata, recorded_at, correlation_id) \
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(position bigint, tx_id bigint, event_id uuid, \
       stream_type text, stream_id uuid, version bigint, event_type text, schema_version int, \
       payload json, metadata json, recorded_at timestamptz, correlation_id text) \
     ON CONFLICT (position) DO NOTHING \
     RETURNING stream_id AS key";

/// `events` in runs whose rows take at most [`ROUND_TRIP_BYTES`] (and at
/// most 1000 rows: 12 parameters each stay well under PostgreSQL's 65,535).
fn chunks<'a, 'e>(events: &'a [&'e RecordedEvent]) -> Vec<&'a [&'e RecordedEvent]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, event) in events.iter().enumerate() {
        // The fixed columns and the parameters' lengths, and the JSON.
        let row = 200 + event.payload.to_string().len() + event.metadata.to_string().len();
        if i > start && (bytes + row > ROUND_TRIP_BYTES || i - start == 1000) {
            chunks.push(&events[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row;
    }
    if start < events.len() {
        chunks.push(&events[start..]);
    }
    chunks
}

/// The event's correlation id as the indexed column keeps it (at most 128
/// characters; events recorded without one have none).
fn correlation_of(event: &RecordedEvent) -> Option<String> {
    let id = event.metadata.get("correlation_id")?.as_str()?;
    Some(id.chars().take(128).collect())
}
