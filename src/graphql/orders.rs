//! Orders as `orders_with_details_view` shows them: one row per order with
//! customer, items, invoice and shipping, so a page of orders is one query.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::decimal::Decimal;
use super::pagination::{connection, id_cursor, page_size};
use super::{ApiError, caller, read_after, services};
use crate::domain::order::OrderStatus as DomainOrderStatus;
use crate::domain::shipment::ShipmentStatus as DomainShipmentStatus;
use crate::service::{OrderDetails, OrderFilter};

/// Where an order is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl From<OrderStatus> for DomainOrderStatus {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending => DomainOrderStatus::Pending,
            OrderStatus::Confirmed => DomainOrderStatus::Confirmed,
            OrderStatus::Shipped => DomainOrderStatus::Shipped,
            OrderStatus::Delivered => DomainOrderStatus::Delivered,
            OrderStatus::Cancelled => DomainOrderStatus::Cancelled,
        }
    }
}

impl From<DomainOrderStatus> for OrderStatus {
    fn from(status: DomainOrderStatus) -> Self {
        match status {
            DomainOrderStatus::Pending => OrderStatus::Pending,
            DomainOrderStatus::Confirmed => OrderStatus::Confirmed,
            DomainOrderStatus::Shipped => OrderStatus::Shipped,
            DomainOrderStatus::Delivered => OrderStatus::Delivered,
            DomainOrderStatus::Cancelled => OrderStatus::Cancelled,
        }
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

impl From<ShipmentStatus> for DomainShipmentStatus {
    fn from(status: ShipmentStatus) -> Self {
        match status {
            ShipmentStatus::Created => DomainShipmentStatus::Created,
            ShipmentStatus::InTransit => DomainShipmentStatus::InTransit,
            ShipmentStatus::OutForDelivery => DomainShipmentStatus::OutForDelivery,
            ShipmentStatus::Delivered => DomainShipmentStatus::Delivered,
            ShipmentStatus::Returned => DomainShipmentStatus::Returned,
            ShipmentStatus::Lost => DomainShipmentStatus::Lost,
        }
    }
}

impl From<DomainShipmentStatus> for ShipmentStatus {
    fn from(status: DomainShipmentStatus) -> Self {
        match status {
            DomainShipmentStatus::Created => ShipmentStatus::Created,
            DomainShipmentStatus::InTransit => ShipmentStatus::InTransit,
            DomainShipmentStatus::OutForDelivery => ShipmentStatus::OutForDelivery,
            DomainShipmentStatus::Delivered => ShipmentStatus::Delivered,
            DomainShipmentStatus::Returned => ShipmentStatus::Returned,
            DomainShipmentStatus::Lost => ShipmentStatus::Lost,
        }
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

impl From<OrderDetails> for Order {
    fn from(o: OrderDetails) -> Self {
        Order {
            id: o.id,
            status: o.status.into(),
            total: o.total.into(),
            created_at: o.created_at,
            customer: OrderCustomer {
                id: o.customer.id,
                name: o.customer.name,
                email: o.customer.email,
            },
            items: o
                .items
                .into_iter()
                .map(|i| OrderItem {
                    product_id: i.product_id,
                    product_name: i.product_name,
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                })
                .collect(),
            invoice: o.invoice.map(|i| Invoice { id: i.id, url: i.url, issued_at: i.issued_at }),
            shipping: o.shipping.map(|s| Shipping {
                id: s.id,
                carrier: s.carrier,
                tracking_code: s.tracking_code,
                status: s.status.into(),
            }),
            version: o.version,
            updated_at: o.updated_at,
        }
    }
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
        let order = services(ctx)?.order(caller(ctx)?, id, read_after(ctx, &min_position)).await;
        Ok(order.map_err(ApiError::from)?.map(Order::from))
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
        let (limit, cursor) = (page_size(first)?, id_cursor(after.as_deref())?);
        let filter = OrderFilter { customer_id, status: status.map(Into::into) };
        let page = services(ctx)?
            .orders(caller(ctx)?, cursor, limit, filter, read_after(ctx, &min_position))
            .await;
        let page = page.map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |o| (o.id.to_string(), Order::from(o))))
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
        let updates = services(ctx)?.clone().order_updates(caller(ctx)?.clone(), id).await;
        Ok(updates.map_err(ApiError::from)?.map(Order::from))
    }
}
