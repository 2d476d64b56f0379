//! `customers_view`: one row per customer with the current email.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use entity::customers_view as view;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
};

use crate::domain::customer::{Customer, CustomerEvent};
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError, follows};
use crate::es::upcast::Upcasters;
use crate::read_models::ReadModel;

pub const NAME: &str = "customers";

pub struct CustomersProjection {
    pub upcasters: Arc<Upcasters>,
}

#[async_trait]
impl Projection for CustomersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Customer"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["customers_view"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        if event.stream.stream_type != Customer::STREAM_TYPE {
            return Ok(vec![]);
        }
        let id = event.stream.stream_id;
        let decoded: CustomerEvent = self.upcasters.decode(event)?;
        let row = view::Entity::find_by_id(id).one(txn).await?;
        if let Some(row) = &row
            && !follows(row.version, event)?
        {
            return Ok(vec![]);
        }
        match (decoded, row) {
            (CustomerEvent::CustomerRegistered { name, email }, None) => {
                view::ActiveModel {
                    customer_id: Set(id),
                    name: Set(name),
                    email: Set(email),
                    registered_at: Set(event.recorded_at),
                    version: Set(event.version),
                    updated_at: Set(Utc::now()),
                }
                .insert(txn)
                .await?;
            }
            (decoded, Some(row)) => {
                let mut active = row.into_active_model();
                match decoded {
                    CustomerEvent::CustomerRegistered { name, email } => {
                        active.name = Set(name);
                        active.email = Set(email);
                    }
                    CustomerEvent::CustomerEmailChanged { email } => {
                        active.email = Set(Some(email))
                    }
                }
                active.version = Set(event.version);
                active.updated_at = Set(Utc::now());
                active.update(txn).await?;
            }
            (_, None) => {
                return Err(ProjectionError::new(format!(
                    "{} for customer {id} arrived before CustomerRegistered",
                    event.event_type
                )));
            }
        }
        Ok(vec![ReadModel::Customer.changed(id)])
    }
}
