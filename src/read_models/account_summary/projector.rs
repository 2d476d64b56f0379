//! `bank_account_summary_view`: one row per account with its balance and
//! totals, as in the seed's BankAccountSummaryProjection. A batch loads the
//! rows it touches in one query, folds its events in memory and writes each
//! changed row once.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use entity::bank_account_summary_view as view;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::domain::bank::BankEvent;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError, follows};
use crate::es::upcast::Upcasters;
use crate::read_models::{ReadModel, add_cents, to_cents};

pub const NAME: &str = "bank_account_summary";

pub struct AccountSummaryProjection {
    pub upcasters: Arc<Upcasters>,
}

/// The row after `event`, or `None` when the row already reflects it.
fn fold(
    row: Option<&view::Model>,
    event: &RecordedEvent,
    decoded: BankEvent,
) -> Result<Option<view::Model>, ProjectionError> {
    let id = event.stream.stream_id;
    let Some(row) = row else {
        let BankEvent::AccountOpened { owner, initial_deposit, overdraft_limit, customer_id } =
            decoded
        else {
            return Err(ProjectionError::new(format!(
                "{} for account {id} arrived before AccountOpened",
                event.event_type
            )));
        };
        let deposit = to_cents(initial_deposit.amount())?;
        return Ok(Some(view::Model {
            account_id: id,
            owner,
            balance_cents: deposit,
            overdraft_limit_cents: to_cents(overdraft_limit.amount())?,
            total_deposits_cents: deposit,
            total_withdrawals_cents: 0,
            opened_at: event.recorded_at,
            last_transaction_at: event.recorded_at,
            version: event.version,
            position: event.position.pos,
            customer_id,
        }));
    };
    if !follows(row.version, event)? {
        return Ok(None);
    }
    let (deposit, withdrawal) = match decoded {
        BankEvent::MoneyDeposited { amount } => (to_cents(amount.amount())?, 0),
        BankEvent::MoneyWithdrawn { amount } | BankEvent::CheckWritten { amount, .. } => {
            (0, to_cents(amount.amount())?)
        }
        BankEvent::AccountOpened { .. } => (0, 0),
    };
    Ok(Some(view::Model {
        balance_cents: add_cents(row.balance_cents, deposit - withdrawal)?,
        total_deposits_cents: add_cents(row.total_deposits_cents, deposit)?,
        total_withdrawals_cents: add_cents(row.total_withdrawals_cents, withdrawal)?,
        last_transaction_at: event.recorded_at,
        version: event.version,
        position: event.position.pos,
        ..row.clone()
    }))
}

fn to_active(m: view::Model) -> view::ActiveModel {
    view::ActiveModel {
        account_id: Set(m.account_id),
        owner: Set(m.owner),
        balance_cents: Set(m.balance_cents),
        overdraft_limit_cents: Set(m.overdraft_limit_cents),
        total_deposits_cents: Set(m.total_deposits_cents),
        total_withdrawals_cents: Set(m.total_withdrawals_cents),
        opened_at: Set(m.opened_at),
        last_transaction_at: Set(m.last_transaction_at),
        version: Set(m.version),
        position: Set(m.position),
        customer_id: Set(m.customer_id),
    }
}

#[async_trait]
impl Projection for AccountSummaryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["BankAccount"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["bank_account_summary_view"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        self.apply_batch(txn, &[event]).await
    }

    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        let (events, ids) = crate::read_models::bank_events(events);
        if events.is_empty() {
            return Ok(vec![]);
        }
        let mut rows: HashMap<Uuid, view::Model> = view::Entity::find()
            .filter(view::Column::AccountId.is_in(ids))
            .all(txn)
            .await?
            .into_iter()
            .map(|m| (m.account_id, m))
            .collect();
        let mut changed = Vec::new();
        for event in events {
            let id = event.stream.stream_id;
            if let Some(next) = fold(rows.get(&id), event, self.upcasters.decode(event)?)? {
                rows.insert(id, next);
                if !changed.contains(&id) {
                    changed.push(id);
                }
            }
        }
        if changed.is_empty() {
            return Ok(vec![]);
        }
        let written = changed.iter().map(|id| to_active(rows[id].clone()));
        view::Entity::insert_many(written)
            .on_conflict(
                OnConflict::column(view::Column::AccountId)
                    .update_columns([
                        view::Column::BalanceCents,
                        view::Column::TotalDepositsCents,
                        view::Column::TotalWithdrawalsCents,
                        view::Column::LastTransactionAt,
                        view::Column::Version,
                        view::Column::Position,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        Ok(changed.into_iter().map(|id| ReadModel::Account.changed(id)).collect())
    }
}
