//! Order, invoice and shipment mutations. Creating and cancelling an order
//! change the product streams in the same append (see `crate::commands`).

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, Result};
use uuid::Uuid;

use super::orders::ShipmentStatus;
use super::products::quantity;
use super::{ApiError, ops::MutationPayload};
use crate::app::Services;
use crate::commands::fulfilment::{create_shipment, issue_invoice};
use crate::commands::orders::{CreateOrder, OrderItem, cancel_order, create_order};
use crate::domain::order::{Order, OrderCommand};
use crate::domain::shipment::{Shipment, ShipmentCommand};
use crate::es::command::CommandContext;

#[derive(InputObject)]
pub struct OrderItemInput {
    pub product_id: Uuid,
    /// Units, between 1 and 1,000,000.
    pub quantity: i32,
}

#[derive(InputObject)]
pub struct CreateOrderInput {
    pub customer_id: Uuid,
    /// Between 1 and 100 lines, each product at most once.
    pub items: Vec<OrderItemInput>,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct ConfirmOrderInput {
    pub order_id: Uuid,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct IssueInvoiceInput {
    pub order_id: Uuid,
    pub command_id: Option<Uuid>,
    /// Applies to the invoice stream (0 before the invoice exists).
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct CancelOrderInput {
    pub order_id: Uuid,
    pub reason: String,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct CreateShipmentInput {
    pub order_id: Uuid,
    pub carrier: String,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct UpdateShipmentStatusInput {
    pub shipment_id: Uuid,
    pub status: ShipmentStatus,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

fn context(command_id: Option<Uuid>, expected_version: Option<i64>) -> Result<CommandContext> {
    Ok(crate::app::command_context(command_id, expected_version)?)
}

#[derive(Default)]
pub struct OrderMutation;

#[Object]
impl OrderMutation {
    /// Places an order and reserves its stock, all or nothing. Names and
    /// prices are taken from the products now. With a `commandId`, the order
    /// id is derived from it, so a retried request places the order once.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        input: CreateOrderInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let context = context(input.command_id, input.expected_version)?;
        let items = input
            .items
            .iter()
            .map(|i| {
                Ok(OrderItem {
                    product_id: i.product_id,
                    quantity: quantity(i.quantity, "quantity")?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let command = CreateOrder {
            order_id: services.new_stream_id(input.command_id),
            customer_id: input.customer_id,
            items,
        };
        let outcome =
            create_order(&services.commands, command, &context).await.map_err(ApiError::from)?;
        Ok(outcome.into())
    }

    async fn confirm_order(
        &self,
        ctx: &Context<'_>,
        input: ConfirmOrderInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        services
            .execute::<Order>(
                input.order_id,
                OrderCommand::ConfirmOrder,
                input.command_id,
                input.expected_version,
            )
            .await
    }

    /// Cancels a pending or confirmed order and releases its stock in the
    /// same append.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        input: CancelOrderInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let context = context(input.command_id, input.expected_version)?;
        let outcome = cancel_order(&services.commands, input.order_id, input.reason, &context)
            .await
            .map_err(ApiError::from)?;
        Ok(outcome.into())
    }

    /// Issues the order's one invoice. The payload's id is the invoice
    /// stream's, which is keyed by the order id; the invoice's own id and URL
    /// appear on the order.
    async fn issue_invoice(
        &self,
        ctx: &Context<'_>,
        input: IssueInvoiceInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let context = context(input.command_id, input.expected_version)?;
        let outcome =
            issue_invoice(&services.commands, input.order_id, &services.invoice_base_url, &context)
                .await
                .map_err(ApiError::from)?;
        Ok(outcome.into())
    }

    /// Creates the shipment of a confirmed order; the payload's id is the
    /// shipment id. The tracking code is generated by the server.
    async fn create_shipment(
        &self,
        ctx: &Context<'_>,
        input: CreateShipmentInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let context = context(input.command_id, input.expected_version)?;
        let outcome = create_shipment(&services.commands, input.order_id, input.carrier, &context)
            .await
            .map_err(ApiError::from)?;
        Ok(outcome.into())
    }

    /// Moves a shipment along its legal transitions; the order follows
    /// (SHIPPED, DELIVERED) shortly after, through the shipping process.
    async fn update_shipment_status(
        &self,
        ctx: &Context<'_>,
        input: UpdateShipmentStatusInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = ShipmentCommand::UpdateShipmentStatus { status: input.status.domain() };
        services
            .execute::<Shipment>(
                input.shipment_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }
}
