//! `orders_with_details_view`: one row per order with its customer, items,
//! invoice and shipping, kept in sync from four kinds of streams:
//!
//! - order events create the row and move its status; every one of them,
//!   `OrderInvoiced` and `OrderShipmentCreated` too, advances `version`,
//!   which is always the order stream's version;
//! - customer events fill the customer's name and email into every row of
//!   that customer (`customer_version`), and into `order_view_customers`,
//!   this projector's own lookup for orders created later;
//! - `InvoiceIssued` (the invoice stream is keyed by the order id) fills the
//!   invoice, once;
//! - `ShipmentCreated` names the order and fills the shipping columns; later
//!   shipment events find the row by `shipping_id` (`shipping_version`).
//!
//! Customer events and order creations may be applied concurrently (they
//! travel in different partitions), so both lock the customer's lookup row
//! first: whichever commits second sees what the first wrote.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use entity::{order_view_customers as lookup, orders_with_details_view as view};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::customer::{Customer, CustomerEvent};
use crate::domain::invoice::{Invoice, InvoiceEvent};
use crate::domain::order::{Order, OrderEvent, OrderLine, OrderStatus};
use crate::domain::shipment::{Shipment, ShipmentEvent, ShipmentStatus};
use crate::es::aggregate::Aggregate;
use crate::es::changes::Change;
use crate::es::envelope::RecordedEvent;
use crate::es::projector::{Projection, ProjectionError, follows};
use crate::es::upcast::Upcasters;
use crate::read_models::{ReadModel, to_cents};

pub const NAME: &str = "orders_with_details";

/// One element of the `items` JSON column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemRow {
    pub product_id: Uuid,
    pub product_name: String,
    pub quantity: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
}

impl From<&OrderLine> for ItemRow {
    fn from(line: &OrderLine) -> Self {
        ItemRow {
            product_id: line.product_id,
            product_name: line.product_name.clone(),
            quantity: i64::from(line.quantity),
            unit_price: line.unit_price.amount(),
        }
    }
}

pub struct OrdersWithDetailsProjection {
    pub upcasters: Arc<Upcasters>,
}

fn changed(ids: impl IntoIterator<Item = Uuid>) -> Vec<Change> {
    ids.into_iter().map(|id| ReadModel::Order.changed(id)).collect()
}

fn missing(event: &RecordedEvent, what: &str) -> ProjectionError {
    ProjectionError::new(format!(
        "{} of {}/{} arrived before {what}",
        event.event_type, event.stream.stream_type, event.stream.stream_id
    ))
}

#[async_trait]
impl Projection for OrdersWithDetailsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Order", "Customer", "Invoice", "Shipment"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["orders_with_details_view", "order_view_customers"]
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        let kind = event.stream.stream_type.as_str();
        if kind == Order::STREAM_TYPE {
            self.order_event(txn, event, self.upcasters.decode(event)?).await
        } else if kind == Customer::STREAM_TYPE {
            self.customer_event(txn, event, self.upcasters.decode(event)?).await
        } else if kind == Invoice::STREAM_TYPE {
            self.invoice_event(txn, event, self.upcasters.decode(event)?).await
        } else if kind == Shipment::STREAM_TYPE {
            self.shipment_event(txn, event, self.upcasters.decode(event)?).await
        } else {
            Ok(vec![])
        }
    }
}

/// The lookup row of a customer, created empty (version 0) if needed and
/// locked for the rest of the transaction on PostgreSQL.
async fn lock_customer(
    txn: &DatabaseTransaction,
    id: Uuid,
) -> Result<lookup::Model, ProjectionError> {
    lookup::Entity::insert(lookup::ActiveModel {
        customer_id: Set(id),
        name: Set(String::new()),
        email: Set(None),
        version: Set(0),
    })
    .on_conflict(OnConflict::column(lookup::Column::CustomerId).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    let mut query = lookup::Entity::find_by_id(id);
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_exclusive();
    }
    query
        .one(txn)
        .await?
        .ok_or_else(|| ProjectionError::new(format!("customer {id} lookup row vanished")))
}

impl OrdersWithDetailsProjection {
    async fn order_event(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
        decoded: OrderEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        let id = event.stream.stream_id;
        let row = view::Entity::find_by_id(id).one(txn).await?;
        if let Some(r) = &row
            && !follows(r.version, event)?
        {
            return Ok(vec![]);
        }
        let status = match decoded {
            OrderEvent::OrderCreated { customer_id, items, total } => {
                let customer = Some(lock_customer(txn, customer_id).await?);
                let items: Vec<ItemRow> = items.iter().map(ItemRow::from).collect();
                view::ActiveModel {
                    order_id: Set(id),
                    status: Set(OrderStatus::Pending.as_str().to_owned()),
                    total_cents: Set(to_cents(total.amount())?),
                    created_at: Set(event.recorded_at),
                    customer_id: Set(customer_id),
                    customer_name: Set(customer
                        .as_ref()
                        .map(|c| c.name.clone())
                        .unwrap_or_default()),
                    customer_email: Set(customer.as_ref().and_then(|c| c.email.clone())),
                    customer_version: Set(customer.as_ref().map_or(0, |c| c.version)),
                    items: Set(serde_json::to_value(items).map_err(ProjectionError::new)?),
                    invoice_id: Set(None),
                    invoice_url: Set(None),
                    invoice_issued_at: Set(None),
                    shipping_id: Set(None),
                    shipping_carrier: Set(None),
                    shipping_tracking_code: Set(None),
                    shipping_status: Set(None),
                    shipping_version: Set(None),
                    version: Set(event.version),
                    updated_at: Set(event.recorded_at),
                }
                .insert(txn)
                .await?;
                return Ok(changed([id]));
            }
            OrderEvent::OrderConfirmed => Some(OrderStatus::Confirmed),
            OrderEvent::OrderCancelled { .. } => Some(OrderStatus::Cancelled),
            OrderEvent::OrderShipped { .. } => Some(OrderStatus::Shipped),
            OrderEvent::OrderDelivered { .. } => Some(OrderStatus::Delivered),
            // The invoice and shipping columns come from their own streams.
            OrderEvent::OrderInvoiced { .. } | OrderEvent::OrderShipmentCreated { .. } => None,
        };
        let Some(row) = row else { return Err(missing(event, "OrderCreated")) };
        let mut active = row.into_active_model();
        if let Some(status) = status {
            active.status = Set(status.as_str().to_owned());
        }
        active.version = Set(event.version);
        active.updated_at = Set(event.recorded_at);
        active.update(txn).await?;
        Ok(changed([id]))
    }

    async fn customer_event(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
        decoded: CustomerEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        let id = event.stream.stream_id;
        let row = lock_customer(txn, id).await?;
        let (name, email) = match decoded {
            CustomerEvent::CustomerRegistered { name, email } => (Some(name), email),
            CustomerEvent::CustomerEmailChanged { email } => (None, Some(email)),
        };
        if follows(row.version, event)? {
            let mut active = row.into_active_model();
            if let Some(name) = &name {
                active.name = Set(name.clone());
            }
            active.email = Set(email.clone());
            active.version = Set(event.version);
            active.update(txn).await?;
        }
        // Every order row of this customer that has not seen this version.
        let stale = || {
            view::Entity::find()
                .filter(view::Column::CustomerId.eq(id))
                .filter(view::Column::CustomerVersion.lt(event.version))
        };
        let ids: Vec<Uuid> =
            stale().select_only().column(view::Column::OrderId).into_tuple().all(txn).await?;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut update = view::Entity::update_many()
            .col_expr(view::Column::CustomerEmail, Expr::value(email))
            .col_expr(view::Column::CustomerVersion, Expr::value(event.version))
            .col_expr(view::Column::UpdatedAt, Expr::value(Utc::now()));
        if let Some(name) = name {
            update = update.col_expr(view::Column::CustomerName, Expr::value(name));
        }
        update
            .filter(view::Column::CustomerId.eq(id))
            .filter(view::Column::CustomerVersion.lt(event.version))
            .exec(txn)
            .await?;
        Ok(changed(ids))
    }

    async fn invoice_event(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
        decoded: InvoiceEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        let InvoiceEvent::InvoiceIssued { invoice_id, order_id, url, issued_at, .. } = decoded;
        let Some(row) = view::Entity::find_by_id(order_id).one(txn).await? else {
            return Err(missing(event, "OrderCreated"));
        };
        if row.invoice_id.is_some() {
            return Ok(vec![]);
        }
        let mut active = row.into_active_model();
        active.invoice_id = Set(Some(invoice_id));
        active.invoice_url = Set(Some(url));
        active.invoice_issued_at = Set(Some(issued_at));
        active.updated_at = Set(event.recorded_at);
        active.update(txn).await?;
        Ok(changed([order_id]))
    }

    async fn shipment_event(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
        decoded: ShipmentEvent,
    ) -> Result<Vec<Change>, ProjectionError> {
        let shipment_id = event.stream.stream_id;
        let row = match &decoded {
            ShipmentEvent::ShipmentCreated { order_id, .. } => {
                view::Entity::find_by_id(*order_id).one(txn).await?
            }
            ShipmentEvent::ShipmentStatusChanged { .. } => {
                view::Entity::find()
                    .filter(view::Column::ShippingId.eq(shipment_id))
                    .one(txn)
                    .await?
            }
        };
        let Some(row) = row else { return Err(missing(event, "its order or ShipmentCreated")) };
        let seen = match row.shipping_id {
            Some(id) if id == shipment_id => row.shipping_version.unwrap_or(0),
            _ => 0,
        };
        if !follows(seen, event)? {
            return Ok(vec![]);
        }
        let order_id = row.order_id;
        let mut active = row.into_active_model();
        match decoded {
            ShipmentEvent::ShipmentCreated { carrier, tracking_code, .. } => {
                active.shipping_id = Set(Some(shipment_id));
                active.shipping_carrier = Set(Some(carrier));
                active.shipping_tracking_code = Set(Some(tracking_code));
                active.shipping_status = Set(Some(ShipmentStatus::Created.as_str().to_owned()));
            }
            ShipmentEvent::ShipmentStatusChanged { to, .. } => {
                active.shipping_status = Set(Some(to.as_str().to_owned()));
            }
        }
        active.shipping_version = Set(Some(event.version));
        active.updated_at = Set(event.recorded_at);
        active.update(txn).await?;
        Ok(changed([order_id]))
    }
}
