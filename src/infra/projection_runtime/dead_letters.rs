//! Parked events: listing them, and applying them again once their cause
//! is fixed.

use chrono::{DateTime, Utc};
use entity::dead_letters;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, ModelTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use uuid::Uuid;

use super::applier::Applier;
use crate::es::store::EventStore;

/// An event a projection gave up on, with the error it kept failing with.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub event_type: String,
    pub error: String,
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
            error: d.error,
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

/// The parked events of `projection`, oldest first.
pub async fn list(
    db: &DatabaseConnection,
    projection: &str,
) -> Result<Vec<DeadLetter>, sea_orm::DbErr> {
    Ok(parked(db, projection).await?.into_iter().map(DeadLetter::from).collect())
}

impl Applier {
    /// Applies this projection's parked events again, oldest first (after
    /// the cause was fixed). Returns how many were applied and how many
    /// failed again (those stay parked with the new error).
    pub async fn retry_parked(&self, store: &dyn EventStore) -> anyhow::Result<(usize, usize)> {
        let letters = parked(&self.read_db, self.name()).await?;
        let (mut applied, mut failed) = (0, 0);
        for letter in letters {
            let Some(event) = store.event_by_id(letter.event_id).await? else {
                anyhow::bail!("parked event {} is not in the event store", letter.event_id);
            };
            let txn = self.read_db.begin().await?;
            match self.projection.apply(&txn, &event).await {
                Ok(changes) => {
                    letter.delete(&txn).await?;
                    txn.commit().await?;
                    self.committed(changes);
                    applied += 1;
                }
                Err(e) => {
                    txn.rollback().await?;
                    let attempts = letter.attempts + 1;
                    let mut active: dead_letters::ActiveModel = letter.into();
                    active.error = Set(e.to_string());
                    active.attempts = Set(attempts);
                    sea_orm::ActiveModelTrait::update(active, &self.read_db).await?;
                    failed += 1;
                }
            }
        }
        Ok((applied, failed))
    }
}
