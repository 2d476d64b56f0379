//! Reading `orders_with_details_view`: each row decoded into one plain
//! [`OrderDetails`], items from their JSON column, statuses from their
//! stored names.

use chrono::{DateTime, Utc};
use entity::orders_with_details_view as view;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::projector::ItemRow;
use crate::domain::order::OrderStatus;
use crate::domain::shipment::ShipmentStatus;
use crate::read_models::{Page, ReadError, from_cents, page_by_key};

#[derive(Debug, Clone, PartialEq)]
pub struct OrderDetails {
    pub id: Uuid,
    pub status: OrderStatus,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub customer: OrderCustomer,
    pub items: Vec<OrderItem>,
    /// `None` until the order is invoiced.
    pub invoice: Option<OrderInvoice>,
    /// `None` until a shipment is created.
    pub shipping: Option<OrderShipping>,
    /// The order stream's version this row reflects.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// The customer as the order row replicates it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCustomer {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
}

/// One line, with the name and price of when the order was placed.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub product_id: Uuid,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderInvoice {
    pub id: Uuid,
    pub url: String,
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderShipping {
    pub id: Uuid,
    pub carrier: String,
    pub tracking_code: String,
    pub status: ShipmentStatus,
}

/// Which orders a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderFilter {
    pub customer_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
}

const ORDER_STATUSES: [OrderStatus; 5] = [
    OrderStatus::Pending,
    OrderStatus::Confirmed,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::Cancelled,
];

const SHIPMENT_STATUSES: [ShipmentStatus; 6] = [
    ShipmentStatus::Created,
    ShipmentStatus::InTransit,
    ShipmentStatus::OutForDelivery,
    ShipmentStatus::Delivered,
    ShipmentStatus::Returned,
    ShipmentStatus::Lost,
];

fn corrupt(id: Uuid, what: &'static str) -> ReadError {
    ReadError::Corrupt { table: "orders_with_details_view", id, what }
}

impl TryFrom<view::Model> for OrderDetails {
    type Error = ReadError;

    fn try_from(m: view::Model) -> Result<Self, ReadError> {
        let id = m.order_id;
        let items: Vec<ItemRow> =
            serde_json::from_value(m.items).map_err(|_| corrupt(id, "items"))?;
        let invoice = match (m.invoice_id, m.invoice_url, m.invoice_issued_at) {
            (Some(id), Some(url), Some(issued_at)) => Some(OrderInvoice { id, url, issued_at }),
            _ => None,
        };
        let shipping = match (m.shipping_id, m.shipping_carrier, m.shipping_tracking_code) {
            (Some(id), Some(carrier), Some(tracking_code)) => {
                let stored = m.shipping_status.as_deref();
                let status = SHIPMENT_STATUSES.into_iter().find(|s| Some(s.as_str()) == stored);
                let status = status.ok_or_else(|| corrupt(id, "shipping status"))?;
                Some(OrderShipping { id, carrier, tracking_code, status })
            }
            _ => None,
        };
        let status = ORDER_STATUSES.into_iter().find(|s| s.as_str() == m.status);
        Ok(OrderDetails {
            id,
            status: status.ok_or_else(|| corrupt(id, "status"))?,
            total: from_cents(m.total_cents),
            created_at: m.created_at,
            customer: OrderCustomer {
                id: m.customer_id,
                name: m.customer_name,
                email: m.customer_email,
            },
            items: items
                .into_iter()
                .map(|i| OrderItem {
                    product_id: i.product_id,
                    product_name: i.product_name,
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            invoice,
            shipping,
            version: m.version,
            updated_at: m.updated_at,
        })
    }
}

/// One order, if it exists.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<OrderDetails>, ReadError> {
    view::Entity::find_by_id(id).one(db).await?.map(OrderDetails::try_from).transpose()
}

/// Orders in id (creation) order after `after`, narrowed by `filter`; one
/// query per page.
pub async fn page(
    db: &DatabaseConnection,
    after: Option<Uuid>,
    limit: u64,
    filter: OrderFilter,
) -> Result<Page<OrderDetails>, ReadError> {
    let page = page_by_key::<view::Entity>(db, view::Column::OrderId, after, limit, |mut q| {
        if let Some(customer_id) = filter.customer_id {
            q = q.filter(view::Column::CustomerId.eq(customer_id));
        }
        if let Some(status) = filter.status {
            q = q.filter(view::Column::Status.eq(status.as_str()));
        }
        q
    })
    .await?;
    page.try_map(OrderDetails::try_from)
}
