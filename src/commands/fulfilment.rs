//! Invoicing and shipping an order. Both streams are keyed by the order:
//! the invoice stream id is the order id, the shipment id is derived from
//! it, so each order has at most one of each. Each also records itself on
//! the order stream in the same append (`OrderInvoiced`,
//! `OrderShipmentCreated`), so the order refuses to be cancelled afterwards
//! and a race with `cancelOrder` is settled by the order stream's version:
//! whichever appends to it second is decided again, and refused.

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::ShopError;
use crate::domain::invoice::{Invoice, InvoiceCommand};
use crate::domain::money::Money;
use crate::domain::order::{Order, OrderCommand, OrderStatus};
use crate::domain::shipment::{Shipment, ShipmentCommand};
use crate::es::aggregate::Aggregate;
use crate::es::command::{CommandContext, CommandError, CommandExecutor, Outcome};
use crate::es::envelope::StreamKey;
use crate::es::unit_of_work::{MultiStreamCommand, UnitOfWork};

/// Namespace of shipment ids derived from order ids.
const SHIPMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7466_6f6c_6400_0000_0000_0002);

/// The id of the shipment of `order_id`.
pub fn shipment_id_for(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&SHIPMENT_NAMESPACE, order_id.as_bytes())
}

/// A fresh tracking code: `EF` and 16 random upper-case hex digits.
pub fn new_tracking_code() -> String {
    let random = Uuid::new_v4().simple().to_string().to_uppercase();
    format!("EF{}", &random[..16])
}

/// Reads the order inside the unit of work, which then appends to it.
async fn order_status(
    work: &mut UnitOfWork<'_, ShopError>,
    order_id: Uuid,
) -> Result<(Money, OrderStatus), CommandError<ShopError>> {
    let order = work.state::<Order>(order_id).await?;
    match order.status {
        Some(status) => Ok((order.total, status)),
        None => Err(CommandError::Rejected(ShopError::OrderNotFound(order_id))),
    }
}

struct IssueInvoice {
    order_id: Uuid,
    invoice_id: Uuid,
    url: String,
}

#[async_trait]
impl MultiStreamCommand for IssueInvoice {
    type Rejection = ShopError;

    fn streams(&self) -> Vec<StreamKey> {
        vec![
            StreamKey::new(Invoice::STREAM_TYPE, self.order_id),
            StreamKey::new(Order::STREAM_TYPE, self.order_id),
        ]
    }

    async fn decide(
        &self,
        work: &mut UnitOfWork<'_, ShopError>,
    ) -> Result<(), CommandError<ShopError>> {
        let (total, order_status) = order_status(work, self.order_id).await?;
        let command = InvoiceCommand::IssueInvoice {
            invoice_id: self.invoice_id,
            order_id: self.order_id,
            order_status,
            total,
            url: self.url.clone(),
            issued_at: Utc::now(),
        };
        work.handle::<Invoice>(self.order_id, &command).await?;
        let record = OrderCommand::RecordInvoice { invoice_id: self.invoice_id };
        work.handle::<Order>(self.order_id, &record).await?;
        Ok(())
    }
}

/// Issues the invoice of a confirmed (or shipped, or delivered) order, with
/// a new UUIDv7 id, the URL `{base_url}/invoices/{invoice_id}.pdf` and now
/// as its issue time. The outcome's id is the invoice stream's, the order id.
pub async fn issue_invoice(
    executor: &CommandExecutor,
    order_id: Uuid,
    base_url: &str,
    ctx: &CommandContext,
) -> Result<Outcome, CommandError<ShopError>> {
    let invoice_id = Uuid::now_v7();
    let url = format!("{}/invoices/{invoice_id}.pdf", base_url.trim_end_matches('/'));
    executor.execute_many(&IssueInvoice { order_id, invoice_id, url }, ctx).await
}

struct CreateShipment {
    order_id: Uuid,
    carrier: String,
}

#[async_trait]
impl MultiStreamCommand for CreateShipment {
    type Rejection = ShopError;

    fn streams(&self) -> Vec<StreamKey> {
        vec![
            StreamKey::new(Shipment::STREAM_TYPE, shipment_id_for(self.order_id)),
            StreamKey::new(Order::STREAM_TYPE, self.order_id),
        ]
    }

    async fn decide(
        &self,
        work: &mut UnitOfWork<'_, ShopError>,
    ) -> Result<(), CommandError<ShopError>> {
        let (_, status) = order_status(work, self.order_id).await?;
        if status != OrderStatus::Confirmed {
            return Err(CommandError::Rejected(ShopError::OrderNotShippable(status)));
        }
        let command = ShipmentCommand::CreateShipment {
            order_id: self.order_id,
            carrier: self.carrier.clone(),
            tracking_code: new_tracking_code(),
        };
        let shipment_id = shipment_id_for(self.order_id);
        work.handle::<Shipment>(shipment_id, &command).await?;
        work.handle::<Order>(self.order_id, &OrderCommand::RecordShipment { shipment_id }).await?;
        Ok(())
    }
}

/// Creates the shipment of a confirmed order with a server-generated
/// tracking code. The outcome's id is the shipment id.
pub async fn create_shipment(
    executor: &CommandExecutor,
    order_id: Uuid,
    carrier: String,
    ctx: &CommandContext,
) -> Result<Outcome, CommandError<ShopError>> {
    executor.execute_many(&CreateShipment { order_id, carrier }, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_codes_are_short_unique_and_upper_case() {
        let (a, b) = (new_tracking_code(), new_tracking_code());
        assert_ne!(a, b);
        assert_eq!(a.len(), 18);
        assert!(
            a.starts_with("EF") && a.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn each_order_has_one_shipment_id() {
        let order = Uuid::now_v7();
        assert_eq!(shipment_id_for(order), shipment_id_for(order));
        assert_ne!(shipment_id_for(order), shipment_id_for(Uuid::now_v7()));
    }
}
