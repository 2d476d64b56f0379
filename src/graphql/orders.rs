//! Orders as `orders_with_details_view` shows them: one row per order with
//! customer, items, invoice and shipping, so a page of orders is one query.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use entity::orders_with_details_view as view;
use futures::Stream;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::ApiError;
use super::customers::cursor;
use super::pagination::{connection, page_size};
use crate::app::Services;
use crate::domain::order::OrderStatus as DomainOrderStatus;
use crate::domain::shipment::ShipmentStatus as DomainShipmentStatus;
use crate::projections::from_cents;
use crate::projections::orders_with_details::{self, ItemRow};

/// Where an order is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    fn domain(self) -> DomainOrderStatus {
        match self {
            OrderStatus::Pending => DomainOrderStatus::Pending,
            OrderStatus::Confirmed => DomainOrderStatus::Confirmed,
            OrderStatus::Shipped => DomainOrderStatus::Shipped,
            OrderStatus::Delivered => DomainOrderStatus::Delivered,
            OrderStatus::Cancelled => DomainOrderStatus::Cancelled,
        }
    }

    fn parse(stored: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Shipped, Self::Delivered, Self::Cancelled]
            .into_iter()
            .find(|s| s.domain().as_str() == stored)
    }
}

/// Where a shipment is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ShipmentStatus {
    Created,
    InTransit,
    OutForDelivery,
    Delivered,
    Returned,
    Lost,
}

impl ShipmentStatus {
    pub(crate) fn domain(self) -> DomainShipmentStatus {
        match self {
            ShipmentStatus::Created => DomainShipmentStatus::Created,
            ShipmentStatus::InTransit => DomainShipmentStatus::InTransit,
            ShipmentStatus::OutForDelivery => DomainShipmentStatus::OutForDelivery,
            ShipmentStatus::Delivered => DomainShipmentStatus::Delivered,
            ShipmentStatus::Returned => DomainShipmentStatus::Returned,
            ShipmentStatus::Lost => DomainShipmentStatus::Lost,
        }
    }

    fn parse(stored: &str) -> Option<Self> {
        use ShipmentStatus::*;
        [Created, InTransit, OutForDelivery, Delivered, Returned, Lost]
            .into_iter()
            .find(|s| s.domain().as_str() == stored)
    }
}

/// The customer as the order row replicates it.
#[derive(SimpleObject, Clone)]
pub struct OrderCustomer {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
}

#[derive(SimpleObject, Clone)]
pub struct OrderItem {
    pub product_id: Uuid,
    /// The name when the order was placed.
    pub product_name: String,
    pub quantity: i64,
    /// The price when the order was placed.
    pub unit_price: Decimal,
}

#[derive(SimpleObject, Clone)]
pub struct Invoice {
    pub id: Uuid,
    pub url: String,
    pub issued_at: DateTime<Utc>,
}

#[derive(SimpleObject, Clone)]
pub struct Shipping {
    pub id: Uuid,
    pub carrier: String,
    pub tracking_code: String,
    pub status: ShipmentStatus,
}

#[derive(SimpleObject, Clone)]
pub struct Order {
    pub id: Uuid,
    pub status: OrderStatus,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub customer: OrderCustomer,
    pub items: Vec<OrderItem>,
    /// Null until the order is invoiced.
    pub invoice: Option<Invoice>,
    /// Null until a shipment is created.
    pub shipping: Option<Shipping>,
    /// The order stream's version this row reflects.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

fn corrupt(what: &str, id: Uuid) -> ApiError {
    ApiError::internal(format!("orders_with_details_view row {id} has an unreadable {what}"))
}

impl TryFrom<view::Model> for Order {
    type Error = ApiError;

    fn try_from(m: view::Model) -> Result<Self, ApiError> {
        let id = m.order_id;
        let items: Vec<ItemRow> =
            serde_json::from_value(m.items).map_err(|_| corrupt("items", id))?;
        let invoice = match (m.invoice_id, m.invoice_url, m.invoice_issued_at) {
            (Some(id), Some(url), Some(issued_at)) => Some(Invoice { id, url, issued_at }),
            _ => None,
        };
        let shipping = match (m.shipping_id, m.shipping_carrier, m.shipping_tracking_code) {
            (Some(id), Some(carrier), Some(tracking_code)) => {
                let status = m.shipping_status.as_deref().and_then(ShipmentStatus::parse);
                let status = status.ok_or_else(|| corrupt("shipping status", id))?;
                Some(Shipping { id, carrier, tracking_code, status })
            }
            _ => None,
        };
        Ok(Order {
            id,
            status: OrderStatus::parse(&m.status).ok_or_else(|| corrupt("status", id))?,
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

async fn load_order(services: &Services, id: Uuid) -> Result<Option<Order>, ApiError> {
    let row = view::Entity::find_by_id(id).one(&services.read_db).await?;
    row.map(Order::try_from).transpose()
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// One order with all its details, or null if no such order exists.
    async fn order(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        min_position: Option<String>,
    ) -> Result<Option<Order>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[orders_with_details::NAME], min_position.as_deref()).await?;
        Ok(load_order(services, id).await?)
    }

    /// Orders in id (creation) order, optionally of one customer and/or in
    /// one status. One read-table query per page.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        customer_id: Option<Uuid>,
        status: Option<OrderStatus>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Order>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[orders_with_details::NAME], min_position.as_deref()).await?;
        let limit = page_size(first)?;
        let mut query = view::Entity::find().order_by_asc(view::Column::OrderId);
        if let Some(after) = &after {
            query = query.filter(view::Column::OrderId.gt(cursor(after)?));
        }
        if let Some(customer_id) = customer_id {
            query = query.filter(view::Column::CustomerId.eq(customer_id));
        }
        if let Some(status) = status {
            query = query.filter(view::Column::Status.eq(status.domain().as_str()));
        }
        let rows = query.limit(limit + 1).all(&services.read_db).await.map_err(ApiError::from)?;
        let rows = rows
            .into_iter()
            .map(|m| Ok((m.order_id.to_string(), Order::try_from(m)?)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(connection(rows, limit, after.is_some()))
    }
}

#[derive(Default)]
pub struct OrderSubscription;

#[Subscription]
impl OrderSubscription {
    /// The order's row each time a projector changes it; without `id`, every
    /// order's.
    async fn order_updated(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
    ) -> Result<impl Stream<Item = Order>> {
        let services = ctx.data::<Arc<Services>>()?.clone();
        Ok(services.changed_rows("order", id, move |services, id| async move {
            load_order(&services, id).await.ok().flatten()
        }))
    }
}
