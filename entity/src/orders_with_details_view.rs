use sea_orm::entity::prelude::*;

/// One row per order with everything an order page shows: customer, items,
/// invoice and shipping. Each source stream's last applied version is kept
/// (`version` for the order, `customer_version`, `shipping_version`) so
/// every update is idempotent.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "orders_with_details_view")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    pub status: String,
    pub total_cents: i64,
    pub created_at: DateTimeUtc,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub customer_version: i64,
    /// `[{productId, productName, quantity, unitPrice}]`, unit price as a
    /// decimal string.
    pub items: Json,
    pub invoice_id: Option<Uuid>,
    pub invoice_url: Option<String>,
    pub invoice_issued_at: Option<DateTimeUtc>,
    pub shipping_id: Option<Uuid>,
    pub shipping_carrier: Option<String>,
    pub shipping_tracking_code: Option<String>,
    pub shipping_status: Option<String>,
    pub shipping_version: Option<i64>,
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
