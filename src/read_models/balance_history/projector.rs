//! `account_balance_history`: the balance after every event of an account,
//! so "balance at time T" is one indexed lookup.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use entity::account_balance_history as history;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect,
};
use uuid::Uuid;

use crate::domain::bank::BankEvent;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError, follows};
use crate::es::upcast::Upcasters;
use crate::read_models::{add_cents, to_cents};

pub const NAME: &str = "account_balance_history";

pub struct BalanceHistoryProjection {
    pub upcasters: Arc<Upcasters>,
}

#[async_trait]
impl Projection for BalanceHistoryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["BankAccount"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["account_balance_history"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        self.apply_batch(txn, &[event]).await
    }

    /// Reads each account's latest balance once (two queries per batch),
    /// folds the batch in memory and inserts the new rows together.
    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        let (events, ids) = crate::read_models::bank_events(events);
        if events.is_empty() {
            return Ok(vec![]);
        }
        let latest: Vec<(Uuid, Option<i64>)> = history::Entity::find()
            .select_only()
            .column(history::Column::AccountId)
            .column_as(history::Column::Version.max(), "v")
            .filter(history::Column::AccountId.is_in(ids))
            .group_by(history::Column::AccountId)
            .into_tuple()
            .all(txn)
            .await?;
        let mut last: HashMap<Uuid, (i64, i64)> = HashMap::new();
        if !latest.is_empty() {
            let mut any = Condition::any();
            for (id, version) in &latest {
                any = any.add(
                    Condition::all()
                        .add(history::Column::AccountId.eq(*id))
                        .add(history::Column::Version.eq(version.unwrap_or(0))),
                );
            }
            for row in history::Entity::find().filter(any).all(txn).await? {
                last.insert(row.account_id, (row.version, row.balance_cents));
            }
        }
        let mut rows = Vec::new();
        for event in events {
            let id = event.stream.stream_id;
            let (version, before) = last.get(&id).copied().unwrap_or((0, 0));
            if !follows(version, event)? {
                continue;
            }
            let balance = match self.upcasters.decode::<BankEvent>(event)? {
                BankEvent::AccountOpened { initial_deposit, .. } => {
                    to_cents(initial_deposit.amount())?
                }
                BankEvent::MoneyDeposited { amount } => {
                    add_cents(before, to_cents(amount.amount())?)?
                }
                BankEvent::MoneyWithdrawn { amount } | BankEvent::CheckWritten { amount, .. } => {
                    add_cents(before, -to_cents(amount.amount())?)?
                }
            };
            last.insert(id, (event.version, balance));
            rows.push(history::ActiveModel {
                account_id: Set(id),
                version: Set(event.version),
                balance_cents: Set(balance),
                recorded_at: Set(event.recorded_at),
            });
        }
        for chunk in rows.chunks(1000) {
            history::Entity::insert_many(chunk.iter().cloned())
                .on_conflict(
                    OnConflict::columns([history::Column::AccountId, history::Column::Version])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        Ok(vec![])
    }
}
