//! Orders, invoices and shipments. Creating and cancelling an order change
//! the product streams in the same append (see `crate::commands`).

use std::sync::Arc;

use futures::Stream;
use uuid::Uuid;

use super::{
    Caller, CommandOptions, MinPosition, Outcome, ServiceError, Services, new_stream_id, quantity,
};
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

/// An order the caller may not see, as it sees it: absent.
fn order_not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!("order {id} does not exist"))
}

impl Services {
    /// Places an order and reserves its stock, all or nothing. Names and
    /// prices are taken from the products now. With a `commandId`, the order
    /// id is derived from it, so a retried request places the order once.
    pub async fn create_order(
        &self,
        caller: &Caller,
        customer_id: Uuid,
        lines: &[OrderLineRequest],
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_signed_in()?;
        if !caller.may_see(Some(customer_id)) {
            return Err(ServiceError::NotFound(format!("customer {customer_id} does not exist")));
        }
        let ctx = options.context(caller)?;
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
        caller: &Caller,
        order_id: Uuid,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_staff()?;
        let ctx = options.context(caller)?;
        Ok(self.commands.execute::<Order>(order_id, &OrderCommand::ConfirmOrder, &ctx).await?)
    }

    /// Cancels a pending or confirmed order and releases its stock in the
    /// same append.
    pub async fn cancel_order(
        &self,
        caller: &Caller,
        order_id: Uuid,
        reason: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_signed_in()?;
        if !caller.is_staff() {
            let order = self.commands.load::<Order>(order_id).await?;
            if !caller.may_see(Some(order.state.customer_id)) || order.state.status.is_none() {
                return Err(order_not_found(order_id));
            }
        }
        let ctx = options.context(caller)?;
        Ok(orders::cancel_order(&self.commands, order_id, reason, &ctx).await?)
    }

    /// Issues the order's one invoice. The outcome's id is the invoice
    /// stream's, which is keyed by the order id.
    pub async fn issue_invoice(
        &self,
        caller: &Caller,
        order_id: Uuid,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_staff()?;
        let ctx = options.context(caller)?;
        Ok(issue_invoice(&self.commands, order_id, &self.invoice_base_url, &ctx).await?)
    }

    /// Creates the shipment of a confirmed order; the outcome's id is the
    /// shipment id. The tracking code is generated here.
    pub async fn create_shipment(
        &self,
        caller: &Caller,
        order_id: Uuid,
        carrier: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_staff()?;
        let ctx = options.context(caller)?;
        Ok(create_shipment(&self.commands, order_id, carrier, &ctx).await?)
    }

    /// Moves a shipment along its legal transitions; the order follows
    /// shortly after, through the shipping process.
    pub async fn update_shipment_status(
        &self,
        caller: &Caller,
        shipment_id: Uuid,
        status: ShipmentStatus,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_staff()?;
        let ctx = options.context(caller)?;
        let command = ShipmentCommand::UpdateShipmentStatus { status };
        Ok(self.commands.execute::<Shipment>(shipment_id, &command, &ctx).await?)
    }

    /// One order with all its details, or `None` if no such order exists.
    pub async fn order(
        &self,
        caller: &Caller,
        id: Uuid,
        min_position: MinPosition<'_>,
    ) -> Result<Option<OrderDetails>, ServiceError> {
        caller.require_signed_in()?;
        self.wait_for(&[orders_with_details::NAME], min_position).await?;
        let order = orders_with_details::query::find(&self.read_db, id).await?;
        Ok(order.filter(|o| caller.may_see(Some(o.customer.id))))
    }

    /// Orders in id (creation) order, narrowed by `filter`.
    pub async fn orders(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        limit: u64,
        filter: OrderFilter,
        min_position: MinPosition<'_>,
    ) -> Result<Page<OrderDetails>, ServiceError> {
        caller.require_signed_in()?;
        // A customer's list is always its own.
        let filter = match caller.customer() {
            Some(own) => OrderFilter { customer_id: Some(own), ..filter },
            None => filter,
        };
        self.wait_for(&[orders_with_details::NAME], min_position).await?;
        Ok(orders_with_details::query::page(&self.read_db, after, limit, filter).await?)
    }

    /// The order's row each time a projector changes it; without `id`,
    /// every order's the caller may see. Refused for an order of another
    /// customer.
    pub async fn order_updates(
        self: Arc<Self>,
        caller: Caller,
        id: Option<Uuid>,
    ) -> Result<impl Stream<Item = OrderDetails>, ServiceError> {
        caller.require_signed_in()?;
        if let Some(id) = id
            && let Some(order) = orders_with_details::query::find(&self.read_db, id).await?
            && !caller.may_see(Some(order.customer.id))
        {
            return Err(order_not_found(id));
        }
        Ok(self.changed_rows(ReadModel::Order, id, move |services, id| {
            let caller = caller.clone();
            async move {
                let order = orders_with_details::query::find(&services.read_db, id).await;
                order.ok().flatten().filter(|o| caller.may_see(Some(o.customer.id)))
            }
        }))
    }
}
