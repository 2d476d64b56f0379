//! `audit_log`: a copy of every event of every stream, for stream history.

use std::collections::HashMap;

use async_trait::async_trait;
use entity::audit_log as log;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait, Value};
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
    /// INSERT of a column array each; larger ones go in the multi-row
    /// inserts.
    fn one_statement(
        &self,
        events: &[&RecordedEvent],
    ) -> Result<Option<OneStatement>, ProjectionError> {
        if events.is_empty() || events.len() > ONE_STATEMENT_FOLD_MAX {
            return Ok(None);
        }
        let column = |f: &dyn Fn(&RecordedEvent) -> i64| -> Vec<i64> {
            events.iter().map(|e| f(e)).collect()
        };
        let text = |f: &dyn Fn(&RecordedEvent) -> String| -> Vec<String> {
            events.iter().map(|e| f(e)).collect()
        };
        let (payloads, metadata) =
            (text(&|e| e.payload.to_string()), text(&|e| e.metadata.to_string()));
        let mut bytes = 0;
        let mut per_stream: HashMap<Uuid, usize> = HashMap::new();
        for (event, (p, m)) in events.iter().zip(payloads.iter().zip(&metadata)) {
            *per_stream.entry(event.stream.stream_id).or_default() += 1;
            // Ten fixed-size columns and two names with their lengths.
            bytes +=
                120 + event.stream.stream_type.len() + event.event_type.len() + p.len() + m.len();
        }
        let uuids = |f: &dyn Fn(&RecordedEvent) -> Uuid| -> Vec<Uuid> {
            events.iter().map(|e| f(e)).collect()
        };
        let values: Vec<Value> = vec![
            column(&|e| e.position.pos).into(),
            column(&|e| e.position.tx).into(),
            uuids(&|e| e.event_id).into(),
            text(&|e| e.stream.stream_type.clone()).into(),
            uuids(&|e| e.stream.stream_id).into(),
            column(&|e| e.version).into(),
            text(&|e| e.event_type.clone()).into(),
            column(&|e| i64::from(e.schema_version)).into(),
            payloads.into(),
            metadata.into(),
            events.iter().map(|e| e.recorded_at).collect::<Vec<_>>().into(),
            text(&|e| correlation_of(e).unwrap_or_default()).into(),
        ];
        let covers = per_stream
            .into_iter()
            .map(|(stream_id, rows)| Cover { stream_id, rows, change: None })
            .collect();
        Ok(Some(OneStatement { sql: INSERT_ROWS_PG, values, bytes, covers }))
    }
}

/// The events as one array per column (`$1`…`$12`; payload and metadata
/// as JSON text, no correlation id as ''); a position already logged is
/// skipped (and its stream left to the fold, which skips it too).
const INSERT_ROWS_PG: &str = "INSERT INTO audit_log (position, tx_id, event_id, stream_type, \
       stream_id, version, event_type, schema_version, payload, metadata, recorded_at, correlation_id) \
     SELECT r.position, r.tx_id, r.event_id, r.stream_type, r.stream_id, r.version, r.event_type, \
       r.schema_version, r.payload::json, r.metadata::json, r.recorded_at, NULLIF(r.correlation_id, '') \
     FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::text[], $5::uuid[], $6::bigint[], \
       $7::text[], $8::bigint[], $9::text[], $10::text[], $11::timestamptz[], $12::text[]) \
       AS r(position, tx_id, event_id, stream_type, stream_id, version, event_type, schema_version, \
       payload, metadata, recorded_at, correlation_id) \
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
