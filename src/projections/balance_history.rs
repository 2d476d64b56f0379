//! `account_balance_history`: the balance after every event of an account,
//! so "balance at time T" is one indexed lookup.

use std::sync::Arc;

use async_trait::async_trait;
use entity::account_balance_history as history;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
};

use super::{add_cents, to_cents};
use crate::domain::bank::{BankAccount, BankEvent};
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError};
use crate::es::upcast::Upcasters;

pub const NAME: &str = "account_balance_history";

pub struct BalanceHistoryProjection {
    pub upcasters: Arc<Upcasters>,
}

#[async_trait]
impl Projection for BalanceHistoryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["account_balance_history"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        if event.stream.stream_type != BankAccount::STREAM_TYPE {
            return Ok(vec![]);
        }
        let id = event.stream.stream_id;
        let previous = history::Entity::find()
            .filter(history::Column::AccountId.eq(id))
            .order_by_desc(history::Column::Version)
            .one(txn)
            .await?;
        if previous.as_ref().is_some_and(|p| p.version >= event.version) {
            return Ok(vec![]);
        }
        let before = previous.map_or(0, |p| p.balance_cents);
        let balance = match self.upcasters.decode::<BankEvent>(event)? {
            BankEvent::AccountOpened { initial_deposit, .. } => to_cents(initial_deposit.amount())?,
            BankEvent::MoneyDeposited { amount } => add_cents(before, to_cents(amount.amount())?)?,
            BankEvent::MoneyWithdrawn { amount } | BankEvent::CheckWritten { amount, .. } => {
                add_cents(before, -to_cents(amount.amount())?)?
            }
        };
        history::Entity::insert(history::ActiveModel {
            account_id: Set(id),
            version: Set(event.version),
            balance_cents: Set(balance),
            recorded_at: Set(event.recorded_at),
        })
        .on_conflict(
            OnConflict::columns([history::Column::AccountId, history::Column::Version])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        Ok(vec![])
    }
}
