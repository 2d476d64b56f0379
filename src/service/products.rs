//! Products and stock: registration, stock changes and `product_stock_view`.

use std::sync::Arc;

use futures::Stream;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    Caller, CommandOptions, MinPosition, Outcome, ServiceError, Services, new_stream_id, quantity,
};
use crate::domain::money::Money;
use crate::domain::product::{Product, ProductCommand};
use crate::read_models::product_stock::{self, query::ProductStock};
use crate::read_models::{Page, ReadModel};

impl Services {
    /// Runs a product command; only staff change the catalogue.
    async fn product_command(
        &self,
        caller: &Caller,
        id: Uuid,
        command: ProductCommand,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_staff()?;
        let ctx = options.context(caller)?;
        Ok(self.commands.execute::<Product>(id, &command, &ctx).await?)
    }

    /// Registers a product with no stock. With a `commandId`, the product id
    /// is derived from it, so a retried request registers it once.
    pub async fn register_product(
        &self,
        caller: &Caller,
        name: String,
        price: Decimal,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command =
            ProductCommand::RegisterProduct { name, price: Money::positive(price, "price")? };
        self.product_command(caller, new_stream_id(options.command_id), command, options).await
    }

    pub async fn increase_stock(
        &self,
        caller: &Caller,
        product_id: Uuid,
        amount: i32,
        reason: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = ProductCommand::IncreaseStock { amount: quantity(amount, "amount")?, reason };
        self.product_command(caller, product_id, command, options).await
    }

    /// Removes available stock; never more than is available.
    pub async fn decrease_stock(
        &self,
        caller: &Caller,
        product_id: Uuid,
        amount: i32,
        reason: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = ProductCommand::DecreaseStock { amount: quantity(amount, "amount")?, reason };
        self.product_command(caller, product_id, command, options).await
    }

    /// One product, or `None` if no such product exists.
    pub async fn product(
        &self,
        id: Uuid,
        min_position: MinPosition<'_>,
    ) -> Result<Option<ProductStock>, ServiceError> {
        self.wait_for(&[product_stock::NAME], min_position).await?;
        Ok(product_stock::query::find(&self.read_db, id).await?)
    }

    /// Products in id order (ids are time-ordered UUIDs).
    pub async fn products(
        &self,
        after: Option<Uuid>,
        limit: u64,
        min_position: MinPosition<'_>,
    ) -> Result<Page<ProductStock>, ServiceError> {
        self.wait_for(&[product_stock::NAME], min_position).await?;
        Ok(product_stock::query::page(&self.read_db, after, limit).await?)
    }

    /// The product's stock row each time a projector changes it.
    pub fn product_updates(self: Arc<Self>, id: Uuid) -> impl Stream<Item = ProductStock> {
        self.changed_rows(ReadModel::Product, Some(id), |services, id| async move {
            product_stock::query::find(&services.read_db, id).await.ok().flatten()
        })
    }
}
