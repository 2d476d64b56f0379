//! Parked events: applying them again once their cause is fixed.

use entity::dead_letters;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};

use super::projector_runtime::Applier;
use crate::es::store::EventStore;

impl Applier {
    /// Applies this projection's parked events again, oldest first (after
    /// the cause was fixed). Returns how many were applied and how many
    /// failed again (those stay parked with the new error).
    pub async fn retry_parked(&self, store: &dyn EventStore) -> anyhow::Result<(usize, usize)> {
        use sea_orm::{ColumnTrait, ModelTrait, QueryFilter, QueryOrder};
        let letters = dead_letters::Entity::find()
            .filter(dead_letters::Column::Projection.eq(self.name()))
            .order_by_asc(dead_letters::Column::Position)
            .all(&self.read_db)
            .await?;
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
