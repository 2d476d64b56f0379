//! Products and stock: registration, stock changes, the `product_stock_view`
//! queries and the `productStockChanged` subscription.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::decimal::Decimal;
use super::pagination::{connection, id_cursor, page_size};
use super::payload::{MutationPayload, options, payload};
use super::{ApiError, caller, read_after, services};
use crate::service::ProductStock;

/// A product as `product_stock_view` shows it.
#[derive(SimpleObject, Clone)]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    pub price: Decimal,
    /// Units available to order.
    pub stock: i64,
    /// Units held for orders that are not cancelled.
    pub reserved: i64,
    pub last_updated: DateTime<Utc>,
    /// The product stream's version this row reflects.
    pub version: i64,
}

impl From<ProductStock> for Product {
    fn from(p: ProductStock) -> Self {
        Product {
            id: p.id,
            name: p.name,
            price: p.price.into(),
            stock: p.stock,
            reserved: p.reserved,
            last_updated: p.last_updated,
            version: p.version,
        }
    }
}

#[derive(InputObject)]
pub struct RegisterProductInput {
    pub name: String,
    pub price: Decimal,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

/// Input of `increaseStock` and `decreaseStock`.
#[derive(InputObject)]
pub struct ChangeStockInput {
    pub product_id: Uuid,
    /// Units, between 1 and 1,000,000.
    pub amount: i32,
    pub reason: String,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(Default)]
pub struct ProductMutation;

#[Object]
impl ProductMutation {
    /// Registers a product with no stock. With a `commandId`, the product id
    /// is derived from it, so a retried request registers it once.
    async fn register_product(
        &self,
        ctx: &Context<'_>,
        input: RegisterProductInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        payload(
            services(ctx)?
                .register_product(caller(ctx)?, input.name, input.price.into(), options)
                .await,
        )
    }

    async fn increase_stock(
        &self,
        ctx: &Context<'_>,
        input: ChangeStockInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        let services = services(ctx)?;
        payload(
            services
                .increase_stock(caller(ctx)?, input.product_id, input.amount, input.reason, options)
                .await,
        )
    }

    /// Removes available stock; never more than is available.
    async fn decrease_stock(
        &self,
        ctx: &Context<'_>,
        input: ChangeStockInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        let services = services(ctx)?;
        payload(
            services
                .decrease_stock(caller(ctx)?, input.product_id, input.amount, input.reason, options)
                .await,
        )
    }
}

#[derive(Default)]
pub struct ProductQuery;

#[Object]
impl ProductQuery {
    /// One product, or null if no such product exists.
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        min_position: Option<String>,
    ) -> Result<Option<Product>> {
        let product = services(ctx)?.product(id, read_after(ctx, &min_position)).await;
        Ok(product.map_err(ApiError::from)?.map(Product::from))
    }

    /// Products in id order (ids are time-ordered UUIDs).
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Product>> {
        let (limit, cursor) = (page_size(first)?, id_cursor(after.as_deref())?);
        let page = services(ctx)?.products(cursor, limit, read_after(ctx, &min_position)).await;
        let page = page.map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |p| (p.id.to_string(), Product::from(p))))
    }
}

#[derive(Default)]
pub struct ProductSubscription;

#[Subscription]
impl ProductSubscription {
    /// The product's stock row each time a projector changes it.
    async fn product_stock_changed(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> Result<impl Stream<Item = Product>> {
        Ok(services(ctx)?.clone().product_updates(id).map(Product::from))
    }
}
