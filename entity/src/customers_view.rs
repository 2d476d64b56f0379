use sea_orm::entity::prelude::*;

/// One row per customer. `email` is null for customers registered before
/// emails were collected (v1 events).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "customers_view")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub registered_at: DateTimeUtc,
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
