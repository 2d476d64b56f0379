//! Products and stock: registration, stock changes, the `product_stock_view`
//! queries and the `productStockChanged` subscription.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use entity::product_stock_view as view;
use futures::Stream;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::customers::cursor;
use super::pagination::{connection, page_size};
use super::{ApiError, ops::MutationPayload};
use crate::app::Services;
use crate::domain::money::Money;
use crate::domain::product::{Product as ProductAggregate, ProductCommand};
use crate::projections::{from_cents, product_stock};

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

impl From<view::Model> for Product {
    fn from(m: view::Model) -> Self {
        Product {
            id: m.product_id,
            name: m.name,
            price: from_cents(m.price_cents),
            stock: m.stock,
            reserved: m.reserved,
            last_updated: m.last_updated,
            version: m.version,
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

/// A count from the API as the domain's unsigned quantity; the domain
/// checks the range.
pub(crate) fn quantity(value: i32, field: &str) -> Result<u32, ApiError> {
    u32::try_from(value)
        .map_err(|_| ApiError::validation(format!("{field} must be between 1 and 1000000")))
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
        let services = ctx.data::<Arc<Services>>()?;
        let price = Money::positive(input.price, "price")
            .map_err(|e| ApiError::validation(e.to_string()))?;
        let command = ProductCommand::RegisterProduct { name: input.name, price };
        let id = services.new_stream_id(input.command_id);
        services
            .execute::<ProductAggregate>(id, command, input.command_id, input.expected_version)
            .await
    }

    async fn increase_stock(
        &self,
        ctx: &Context<'_>,
        input: ChangeStockInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let amount = quantity(input.amount, "amount")?;
        let command = ProductCommand::IncreaseStock { amount, reason: input.reason };
        services
            .execute::<ProductAggregate>(
                input.product_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }

    /// Removes available stock; never more than is available.
    async fn decrease_stock(
        &self,
        ctx: &Context<'_>,
        input: ChangeStockInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let amount = quantity(input.amount, "amount")?;
        let command = ProductCommand::DecreaseStock { amount, reason: input.reason };
        services
            .execute::<ProductAggregate>(
                input.product_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }
}

#[derive(Default)]
pub struct ProductQuery;

async fn load_product(services: &Services, id: Uuid) -> Result<Option<Product>, ApiError> {
    Ok(view::Entity::find_by_id(id).one(&services.read_db).await?.map(Product::from))
}

#[Object]
impl ProductQuery {
    /// One product, or null if no such product exists.
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        min_position: Option<String>,
    ) -> Result<Option<Product>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[product_stock::NAME], min_position.as_deref()).await?;
        Ok(load_product(services, id).await?)
    }

    /// Products in id order (ids are time-ordered UUIDs).
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Product>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[product_stock::NAME], min_position.as_deref()).await?;
        let limit = page_size(first)?;
        let mut query = view::Entity::find().order_by_asc(view::Column::ProductId);
        if let Some(after) = &after {
            query = query.filter(view::Column::ProductId.gt(cursor(after)?));
        }
        let rows = query.limit(limit + 1).all(&services.read_db).await.map_err(ApiError::from)?;
        let rows = rows.into_iter().map(|m| (m.product_id.to_string(), Product::from(m))).collect();
        Ok(connection(rows, limit, after.is_some()))
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
        let services = ctx.data::<Arc<Services>>()?.clone();
        Ok(services.changed_rows("product", Some(id), move |services, id| async move {
            load_product(&services, id).await.ok().flatten()
        }))
    }
}
