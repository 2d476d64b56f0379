//! `account_balance_history`: the balance after every event of an account,
//! so "balance at time T" is one indexed lookup.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use entity::account_balance_history as history;
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, Select,
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

    /// Reads each account's latest row once (one query per batch), folds
    /// the batch in memory and inserts the new rows together.
    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        let (events, ids) = crate::read_models::bank_events(events);
        if events.is_empty() {
            return Ok(vec![]);
        }
        let mut last: HashMap<Uuid, (i64, i64)> = latest_rows(&ids)
            .all(txn)
            .await?
            .into_iter()
            .map(|row| (row.account_id, (row.version, row.balance_cents)))
            .collect();
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

/// The row of each account's highest version among `ids`, one condition
/// per account: `version = (SELECT MAX(version) … WHERE account_id = id)`
/// is one step down the primary key's index, however long the account's
/// history (a grouped MAX reads every version of the account).
pub fn latest_rows(ids: &[Uuid]) -> Select<history::Entity> {
    let mut newest = Condition::any();
    for id in ids {
        let max = Query::select()
            .expr(history::Column::Version.max())
            .from(history::Entity)
            .and_where(history::Column::AccountId.eq(*id))
            .to_owned();
        newest = newest.add(Condition::all().add(history::Column::AccountId.eq(*id)).add(
            Expr::col(history::Column::Version).eq(Expr::SubQuery(None, Box::new(max.into()))),
        ));
    }
    history::Entity::find().filter(newest)
}
