//! Orders, invoices and shipments. Creating and cancelling an order change
//! the product streams in the same append (see `crate::commands`).

use std::sync::Arc;

use futures::Stream;
use uuid::Uuid;

use super::{CommandOptions, Outcome, ServiceError, Services, new_stream_id, quantity};
use crate::commands::fulfilment::{create_shipment, issue_invoice};
use crate::commands::orders::{self, CreateOrder};
use crate::domain::order::{Order, OrderCommand};
use crate::domain::shipment::{Shipment, ShipmentCommand, ShipmentStatus};
use crate::read_models::orders_with_details::{
    self,
    query::{OrderDetails, OrderFilter},
};
use crate::read_models::{Page, ReadModel};

/// One requested order line, as a client sends it.
#[derive(Debug, Clone, Copy)]
pub struct OrderLineRequest {
    pub product_id: Uuid,
    /// Units, between 1 and 1,000,000.
    pub quantity: i32,
}

impl Services {
    /// Places an order and reserves its stock, all or nothing. Names and
    /// prices are taken from the products now. With a `commandId`, the order
    /// id is derived from it, so a retried request places the order once.
    pub async fn create_order(
        &self,
        customer_id: Uuid,
        lines: &[OrderLineRequest],
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        let items = lines
            .iter()
            .map(|l| {
                let quantity = quantity(l.quantity, "quantity")?;
                Ok(orders::OrderItem { product_id: l.product_id, quantity })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        let command =
            CreateOrder { order_id: new_stream_id(options.command_id), customer_id, items };
        Ok(orders::create_order(&self.commands, command, &ctx).await?)
    }

    pub async fn confirm_order(
        &self,
        order_id: Uuid,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        Ok(self.commands.execute::<Order>(order_id, &OrderCommand::ConfirmOrder, &ctx).await?)
    }

    /// Cancels a pending or confirmed order and releases its stock in the
    /// same append.
    pub async fn cancel_order(
        &self,
        order_id: Uuid,
        reason: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        Ok(orders::cancel_order(&self.commands, order_id, reason, &ctx).await?)
    }

    /// Issues the order's one invoice. The outcome's id is the invoice
    /// stream's, which is keyed by the order id.
    pub async fn issue_invoice(
        &self,
        order_id: Uuid,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        Ok(issue_invoice(&self.commands, order_id, &self.invoice_base_url, &ctx).await?)
    }

    /// Creates the shipment of a confirmed order; the outcome's id is the
    /// shipment id. The tracking code is generated here.
    pub async fn create_shipment(
        &self,
        order_id: Uuid,
        carrier: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        Ok(create_shipment(&self.commands, order_id, carrier, &ctx).await?)
    }

    /// Moves a shipment along its legal transitions; the order follows
    /// shortly after, through the shipping process.
    pub async fn update_shipment_status(
        &self,
        shipment_id: Uuid,
        status: ShipmentStatus,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        let command = ShipmentCommand::UpdateShipmentStatus { status };
        Ok(self.commands.execute::<Shipment>(shipment_id, &command, &ctx).await?)
    }

    /// One order with all its details, or `None` if no such order exists.
    pub async fn order(
        &self,
        id: Uuid,
        min_position: Option<&str>,
    ) -> Result<Option<OrderDetails>, ServiceError> {
        self.wait_for(&[orders_with_details::NAME], min_position).await?;
        Ok(orders_with_details::query::find(&self.read_db, id).await?)
    }

    /// Orders in id (creation) order, narrowed by `filter`.
    pub async fn orders(
        &self,
        after: Option<Uuid>,
        limit: u64,
        filter: OrderFilter,
        min_position: Option<&str>,
    ) -> Result<Page<OrderDetails>, ServiceError> {
        self.wait_for(&[orders_with_details::NAME], min_position).await?;
        Ok(orders_with_details::query::page(&self.read_db, after, limit, filter).await?)
    }

    /// The order's row each time a projector changes it; without `id`,
    /// every order's.
    pub fn order_updates(self: Arc<Self>, id: Option<Uuid>) -> impl Stream<Item = OrderDetails> {
        self.changed_rows(ReadModel::Order, id, |services, id| async move {
            orders_with_details::query::find(&services.read_db, id).await.ok().flatten()
        })
    }
}
