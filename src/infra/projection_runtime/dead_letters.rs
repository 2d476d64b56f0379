//! Parked events: listing them a page at a time, and applying them again
//! once their cause is fixed, each stream's in order.

use chrono::{DateTime, Utc};
use entity::dead_letters;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, ModelTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::applier::Applier;
use super::checkpoint::lock_all;
use super::errors::is_transient;
use super::failure::{Failure, FailureKind};
use crate::es::changes::Change;
use crate::es::envelope::StreamKey;
use crate::es::store::EventStore;

/// An event a projection gave up on, with what it kept failing with (as it
/// may be shown: the error's text stays in the table and the log).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub event_type: String,
    pub failure: Failure,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
}

impl From<dead_letters::Model> for DeadLetter {
    fn from(d: dead_letters::Model) -> Self {
        DeadLetter {
            position: d.position,
            event_id: d.event_id,
            stream_type: d.stream_type,
            stream_id: d.stream_id,
            event_type: d.event_type,
            failure: Failure::stored(
                FailureKind::parse(&d.error_kind),
                d.error_reference,
                &d.error,
            ),
            attempts: d.attempts,
            parked_at: d.parked_at,
        }
    }
}

async fn parked(
    db: &DatabaseConnection,
    projection: &str,
) -> Result<Vec<dead_letters::Model>, sea_orm::DbErr> {
    dead_letters::Entity::find()
        .filter(dead_letters::Column::Projection.eq(projection))
        .order_by_asc(dead_letters::Column::Position)
        .all(db)
        .await
}

/// Up to `limit` parked events of `projection` after position `after`,
/// oldest first, and whether more follow.
pub async fn page(
    db: &DatabaseConnection,
    projection: &str,
    after: Option<i64>,
    limit: u64,
) -> Result<(Vec<DeadLetter>, bool), sea_orm::DbErr> {
    let mut query = dead_letters::Entity::find()
        .filter(dead_letters::Column::Projection.eq(projection))
        .order_by_asc(dead_letters::Column::Position)
        .limit(limit + 1);
    if let Some(after) = after {
        query = query.filter(dead_letters::Column::Position.gt(after));
    }
    let mut rows = query.all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok((rows.into_iter().map(DeadLetter::from).collect(), more))
}

/// How many events of `projection` are parked.
pub async fn count(db: &DatabaseConnection, projection: &str) -> Result<u64, sea_orm::DbErr> {
    dead_letters::Entity::find()
        .filter(dead_letters::Column::Projection.eq(projection))
        .count(db)
        .await
}

/// What a retry of parked events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retried {
    /// Parked events applied (and no longer parked).
    pub applied: usize,
    /// Parked events that failed again; they stay parked with the new error.
    pub failed: usize,
    /// Parked events not tried because an earlier event of their stream
    /// failed again; they stay parked, in order.
    pub waiting: usize,
}

impl Applier {
    /// Applies this projection's parked events again (after their cause was
    /// fixed), stream by stream and in each stream's order, in one
    /// transaction per stream that holds every checkpoint of the projection
    /// (`keys`), so live appliers wait and no event of the stream passes
    /// another. A parked event is removed only in the transaction that
    /// applied it; the first that fails again stops its stream.
    pub async fn retry_parked(
        &self,
        store: &dyn EventStore,
        keys: &[String],
    ) -> anyhow::Result<Retried> {
        let mut streams: Vec<StreamKey> = Vec::new();
        for letter in parked(&self.read_db, self.name()).await? {
            let stream = StreamKey::new(&letter.stream_type, letter.stream_id);
            if !streams.contains(&stream) {
                streams.push(stream);
            }
        }
        let mut total = Retried::default();
        for stream in streams {
            let (retried, changes) = self.retry_stream(store, keys, &stream).await?;
            total.applied += retried.applied;
            total.failed += retried.failed;
            total.waiting += retried.waiting;
            self.committed(changes);
        }
        Ok(total)
    }

    async fn retry_stream(
        &self,
        store: &dyn EventStore,
        keys: &[String],
        stream: &StreamKey,
    ) -> anyhow::Result<(Retried, Vec<Change>)> {
        let txn = self.read_db.begin().await?;
        lock_all(&txn, self.name(), keys).await?;
        let letters = dead_letters::Entity::find()
            .filter(dead_letters::Column::Projection.eq(self.name()))
            .filter(dead_letters::Column::StreamType.eq(stream.stream_type.as_str()))
            .filter(dead_letters::Column::StreamId.eq(stream.stream_id))
            .order_by_asc(dead_letters::Column::Position)
            .all(&txn)
            .await?;
        let (mut retried, mut changes) = (Retried::default(), Vec::new());
        for letter in letters {
            if retried.failed > 0 {
                retried.waiting += 1;
                continue;
            }
            let Some(event) = store.event_by_id(letter.event_id).await? else {
                anyhow::bail!("parked event {} is not in the event store", letter.event_id);
            };
            let attempt = txn.begin().await?;
            match self.projection.apply(&attempt, &event).await {
                Ok(applied) => {
                    attempt.commit().await?;
                    letter.delete(&txn).await?;
                    changes.extend(applied);
                    retried.applied += 1;
                }
                Err(e) if is_transient(&e) => {
                    anyhow::bail!("retry of {} interrupted: {e}", self.name());
                }
                Err(e) => {
                    attempt.rollback().await?;
                    let failure = Failure::new(FailureKind::of(&e), &e);
                    tracing::error!(projection = self.name(), reference = ?failure.reference, event = %letter.event_id, error = %e, "parked event failed again");
                    let attempts = letter.attempts + 1;
                    let mut active: dead_letters::ActiveModel = letter.into();
                    active.error = Set(e.to_string());
                    active.error_kind = Set(failure.kind.as_str().to_owned());
                    active.error_reference = Set(failure.reference);
                    active.attempts = Set(attempts);
                    active.update(&txn).await?;
                    retried.failed += 1;
                }
            }
        }
        txn.commit().await?;
        Ok((retried, changes))
    }
}
