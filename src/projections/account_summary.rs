//! `bank_account_summary_view`: one row per account with its balance and
//! totals, as in the seed's BankAccountSummaryProjection.

use std::sync::Arc;

use async_trait::async_trait;
use entity::bank_account_summary_view as view;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
};

use super::{add_cents, to_cents};
use crate::domain::bank::{BankAccount, BankEvent};
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError};
use crate::es::upcast::Upcasters;

pub const NAME: &str = "bank_account_summary";

pub struct AccountSummaryProjection {
    pub upcasters: Arc<Upcasters>,
}

#[async_trait]
impl Projection for AccountSummaryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["bank_account_summary_view"]
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
        let decoded: BankEvent = self.upcasters.decode(event)?;
        let row = view::Entity::find_by_id(id).one(txn).await?;
        match (decoded, row) {
            (BankEvent::AccountOpened { owner, initial_deposit, overdraft_limit }, None) => {
                let deposit = to_cents(initial_deposit.amount())?;
                view::ActiveModel {
                    account_id: Set(id),
                    owner: Set(owner),
                    balance_cents: Set(deposit),
                    overdraft_limit_cents: Set(to_cents(overdraft_limit.amount())?),
                    total_deposits_cents: Set(deposit),
                    total_withdrawals_cents: Set(0),
                    opened_at: Set(event.recorded_at),
                    last_transaction_at: Set(event.recorded_at),
                    version: Set(event.version),
                    position: Set(event.position.pos),
                }
                .insert(txn)
                .await?;
            }
            (_, Some(row)) if row.version >= event.version => return Ok(vec![]),
            (decoded, Some(row)) => {
                let (deposit, withdrawal) = match decoded {
                    BankEvent::MoneyDeposited { amount } => (to_cents(amount.amount())?, 0),
                    BankEvent::MoneyWithdrawn { amount }
                    | BankEvent::CheckWritten { amount, .. } => (0, to_cents(amount.amount())?),
                    BankEvent::AccountOpened { .. } => (0, 0),
                };
                let mut active = row.clone().into_active_model();
                active.balance_cents = Set(add_cents(row.balance_cents, deposit - withdrawal)?);
                active.total_deposits_cents = Set(add_cents(row.total_deposits_cents, deposit)?);
                active.total_withdrawals_cents =
                    Set(add_cents(row.total_withdrawals_cents, withdrawal)?);
                active.last_transaction_at = Set(event.recorded_at);
                active.version = Set(event.version);
                active.position = Set(event.position.pos);
                active.update(txn).await?;
            }
            (_, None) => {
                return Err(ProjectionError::new(format!(
                    "{} for account {id} arrived before AccountOpened",
                    event.event_type
                )));
            }
        }
        Ok(vec![Change { model: "account".into(), id }])
    }
}
