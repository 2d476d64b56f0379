//! `product_stock_view`: one row per product with its available and
//! reserved stock.

use std::sync::Arc;

use async_trait::async_trait;
use entity::product_stock_view as view;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
};

use crate::domain::product::{Product, ProductEvent};
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError, follows};
use crate::es::upcast::Upcasters;
use crate::read_models::{ReadModel, add_cents, to_cents};

pub const NAME: &str = "product_stock";

pub struct ProductStockProjection {
    pub upcasters: Arc<Upcasters>,
}

#[async_trait]
impl Projection for ProductStockProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Product"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["product_stock_view"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        if event.stream.stream_type != Product::STREAM_TYPE {
            return Ok(vec![]);
        }
        let id = event.stream.stream_id;
        let decoded: ProductEvent = self.upcasters.decode(event)?;
        let row = view::Entity::find_by_id(id).one(txn).await?;
        if let Some(row) = &row
            && !follows(row.version, event)?
        {
            return Ok(vec![]);
        }
        match (decoded, row) {
            (ProductEvent::ProductRegistered { name, price }, None) => {
                view::ActiveModel {
                    product_id: Set(id),
                    name: Set(name),
                    price_cents: Set(to_cents(price.amount())?),
                    stock: Set(0),
                    reserved: Set(0),
                    last_updated: Set(event.recorded_at),
                    version: Set(event.version),
                }
                .insert(txn)
                .await?;
            }
            (decoded, Some(row)) => {
                // (change of available stock, change of reserved stock)
                let (stock, reserved) = match decoded {
                    ProductEvent::ProductRegistered { .. } => (0, 0),
                    ProductEvent::StockIncreased { amount, .. } => (i64::from(amount), 0),
                    ProductEvent::StockDecreased { amount, .. } => (-i64::from(amount), 0),
                    ProductEvent::StockReserved { quantity, .. } => {
                        (-i64::from(quantity), i64::from(quantity))
                    }
                    ProductEvent::StockReleased { quantity, .. } => {
                        (i64::from(quantity), -i64::from(quantity))
                    }
                };
                let mut active = row.clone().into_active_model();
                active.stock = Set(add_cents(row.stock, stock)?);
                active.reserved = Set(add_cents(row.reserved, reserved)?);
                active.last_updated = Set(event.recorded_at);
                active.version = Set(event.version);
                active.update(txn).await?;
            }
            (_, None) => {
                return Err(ProjectionError::new(format!(
                    "{} for product {id} arrived before ProductRegistered",
                    event.event_type
                )));
            }
        }
        Ok(vec![ReadModel::Product.changed(id)])
    }
}
