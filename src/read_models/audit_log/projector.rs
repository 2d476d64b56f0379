//! `audit_log`: a copy of every event of every stream, for stream history.

use std::collections::HashMap;
use std::ops::Range;

use async_trait::async_trait;
use entity::audit_log as log;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait as _, DatabaseTransaction, DbBackend, EntityTrait, Statement,
    Value,
};
use uuid::Uuid;

use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Cover, OneStatement, Projection, ProjectionError, round_trips};
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

    /// A position already logged is skipped. On PostgreSQL the rows go as
    /// column arrays ([`INSERT_ROWS_PG`], one shape), in statements of at
    /// most [`ROUND_TRIP_BYTES`](crate::es::projector::ROUND_TRIP_BYTES); elsewhere as multi-row inserts.
    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        if txn.get_database_backend() == DbBackend::Postgres {
            let rows = Rows::of(events);
            for range in round_trips(rows.bytes.iter().copied()) {
                let values = rows.values(range);
                let insert =
                    Statement::from_sql_and_values(DbBackend::Postgres, INSERT_ROWS_PG, values);
                txn.execute_raw(insert).await?;
            }
            return Ok(vec![]);
        }
        // 1000 rows of 12 parameters stay well under SQLite's 32,766.
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

    /// A live batch (up to [`ONE_STATEMENT_FOLD_MAX`] events) as one
    /// [`INSERT_ROWS_PG`].
    fn one_statement(
        &self,
        events: &[&RecordedEvent],
    ) -> Result<Option<OneStatement>, ProjectionError> {
        if events.is_empty() || events.len() > ONE_STATEMENT_FOLD_MAX {
            return Ok(None);
        }
        let mut per_stream: HashMap<Uuid, usize> = HashMap::new();
        for event in events {
            *per_stream.entry(event.stream.stream_id).or_default() += 1;
        }
        let covers = per_stream
            .into_iter()
            .map(|(stream_id, rows)| Cover { stream_id, rows, change: None })
            .collect();
        let rows = Rows::of(events);
        let bytes = rows.bytes.iter().sum();
        Ok(Some(OneStatement {
            sql: INSERT_ROWS_PG,
            values: rows.values(0..events.len()),
            bytes,
            covers,
        }))
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

/// Events as [`INSERT_ROWS_PG`] takes them: each payload and metadata
/// serialized once, and about how many bytes each row's parameters take.
struct Rows<'a> {
    events: &'a [&'a RecordedEvent],
    payloads: Vec<String>,
    metadata: Vec<String>,
    bytes: Vec<usize>,
}

impl<'a> Rows<'a> {
    fn of(events: &'a [&'a RecordedEvent]) -> Self {
        let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
        let metadata: Vec<String> = events.iter().map(|e| e.metadata.to_string()).collect();
        let bytes = events
            .iter()
            .zip(payloads.iter().zip(&metadata))
            // Ten fixed-size columns, the two names and the JSON, with their lengths.
            .map(|(e, (p, m))| {
                120 + e.stream.stream_type.len() + e.event_type.len() + p.len() + m.len()
            })
            .collect();
        Rows { events, payloads, metadata, bytes }
    }

    /// The parameters of [`INSERT_ROWS_PG`] for the rows of `range`.
    fn values(&self, range: Range<usize>) -> Vec<Value> {
        let events = &self.events[range.clone()];
        fn column<T>(events: &[&RecordedEvent], f: impl Fn(&RecordedEvent) -> T) -> Vec<T> {
            events.iter().map(|e| f(e)).collect()
        }
        vec![
            column(events, |e| e.position.pos).into(),
            column(events, |e| e.position.tx).into(),
            column(events, |e| e.event_id).into(),
            column(events, |e| e.stream.stream_type.clone()).into(),
            column(events, |e| e.stream.stream_id).into(),
            column(events, |e| e.version).into(),
            column(events, |e| e.event_type.clone()).into(),
            column(events, |e| i64::from(e.schema_version)).into(),
            self.payloads[range.clone()].to_vec().into(),
            self.metadata[range].to_vec().into(),
            column(events, |e| e.recorded_at).into(),
            column(events, |e| correlation_of(e).unwrap_or_default()).into(),
        ]
    }
}

/// The event's correlation id as the indexed column keeps it (at most 128
/// characters; events recorded without one have none).
fn correlation_of(event: &RecordedEvent) -> Option<String> {
    let id = event.metadata.get("correlation_id")?.as_str()?;
    Some(id.chars().take(128).collect())
}
