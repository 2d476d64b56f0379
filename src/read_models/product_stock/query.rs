//! Reading `product_stock_view`.

use chrono::{DateTime, Utc};
use entity::product_stock_view as view;
use rust_decimal::Decimal;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use uuid::Uuid;

use crate::read_models::{Page, from_cents, page_by_key};

/// A product with its stock.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductStock {
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

impl From<view::Model> for ProductStock {
    fn from(m: view::Model) -> Self {
        ProductStock {
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

/// One product, if it exists.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<ProductStock>, DbErr> {
    Ok(view::Entity::find_by_id(id).one(db).await?.map(ProductStock::from))
}

/// Products in id order (ids are time-ordered UUIDs), after `after`.
pub async fn page(
    db: &DatabaseConnection,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Page<ProductStock>, DbErr> {
    let page =
        page_by_key::<view::Entity>(db, view::Column::ProductId, after, limit, |q| q).await?;
    page.try_map(|m| Ok(ProductStock::from(m)))
}
