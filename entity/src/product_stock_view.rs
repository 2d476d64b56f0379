use sea_orm::entity::prelude::*;

/// One row per product: `stock` is available to order, `reserved` is held
/// for orders; the price is in integer cents.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "product_stock_view")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    pub reserved: i64,
    pub last_updated: DateTimeUtc,
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
