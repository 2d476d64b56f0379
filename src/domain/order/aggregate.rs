use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{OrderEvent, OrderLine, OrderStatus};
use crate::domain::input::{MAX_QUANTITY, MAX_TEXT, quantity_in_range, trimmed_text};
use crate::domain::money::{MAX_AMOUNT, Money};
use crate::es::aggregate::{Aggregate, Rejection, RejectionKind};

/// Most lines one order may have.
pub const MAX_ORDER_LINES: usize = 100;

/// What an order command may ask. The caller looks up the customer and the
/// products (names, prices) before `handle` and puts them in `CreateOrder`.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    CreateOrder {
        customer_id: Uuid,
        items: Vec<OrderLine>,
    },
    /// PENDING → CONFIRMED.
    ConfirmOrder,
    /// PENDING or CONFIRMED → CANCELLED, unless the order has an invoice or
    /// a shipment.
    CancelOrder {
        reason: String,
    },
    /// Records the invoice issued for a CONFIRMED, SHIPPED or DELIVERED
    /// order; a no-op for the invoice on record.
    RecordInvoice {
        invoice_id: Uuid,
    },
    /// Records the shipment created for a CONFIRMED order; a no-op for the
    /// shipment on record.
    RecordShipment {
        shipment_id: Uuid,
    },
    /// CONFIRMED → SHIPPED; a no-op once shipped or delivered by this shipment.
    MarkOrderShipped {
        shipment_id: Uuid,
    },
    /// SHIPPED → DELIVERED, or CONFIRMED → SHIPPED → DELIVERED in one decision
    /// when the in-transit news never arrived; a no-op once delivered by this
    /// shipment.
    MarkOrderDelivered {
        shipment_id: Uuid,
    },
}

impl OrderCommand {
    /// The name an [`OrderError::IllegalTransition`] reports.
    pub(super) fn name(&self) -> &'static str {
        match self {
            OrderCommand::CreateOrder { .. } => "CreateOrder",
            OrderCommand::ConfirmOrder => "ConfirmOrder",
            OrderCommand::CancelOrder { .. } => "CancelOrder",
            OrderCommand::RecordInvoice { .. } => "RecordInvoice",
            OrderCommand::RecordShipment { .. } => "RecordShipment",
            OrderCommand::MarkOrderShipped { .. } => "MarkOrderShipped",
            OrderCommand::MarkOrderDelivered { .. } => "MarkOrderDelivered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// `INVALID_STATE`: an order is created once.
    #[error("order already exists")]
    AlreadyCreated,
    /// `NOT_FOUND`: every command but CreateOrder needs an existing order.
    #[error("order does not exist")]
    NotFound,
    /// `VALIDATION_ERROR`: an order has between 1 and 100 lines.
    #[error("an order needs between 1 and {MAX_ORDER_LINES} items, got {0}")]
    InvalidLineCount(usize),
    /// `VALIDATION_ERROR`: a product appears on two lines; the caller merges them.
    #[error("product {0} appears on more than one line")]
    DuplicateProduct(Uuid),
    /// `VALIDATION_ERROR`: a line quantity is outside `1..=MAX_QUANTITY`.
    #[error("quantity of product {0} must be between 1 and {MAX_QUANTITY}")]
    InvalidQuantity(Uuid),
    /// `VALIDATION_ERROR`: a line's unit price is zero.
    #[error("unit price of product {0} must be greater than zero")]
    PriceNotPositive(Uuid),
    /// `VALIDATION_ERROR`: a required text is empty or too long.
    #[error("{0} must be between 1 and {MAX_TEXT} characters")]
    InvalidText(&'static str),
    /// `VALIDATION_ERROR`: the total would exceed [`MAX_AMOUNT`].
    #[error("order total must not exceed {MAX_AMOUNT}")]
    TotalTooLarge,
    /// `INVALID_STATE`: the command is not allowed in the current status.
    #[error("{command} is not allowed on a {status} order")]
    IllegalTransition { status: OrderStatus, command: &'static str },
    /// `INVALID_STATE`: the order already travels with another shipment.
    #[error("order travels with another shipment than {0}")]
    OtherShipment(Uuid),
    /// `INVALID_STATE`: an order is invoiced once.
    #[error("order already has invoice {0}")]
    AlreadyInvoiced(Uuid),
    /// `INVALID_STATE`: an invoiced order is billed; cancelling it would
    /// leave an invoice for a cancelled order.
    #[error("order has invoice {0} and can no longer be cancelled")]
    InvoicedNotCancellable(Uuid),
    /// `INVALID_STATE`: an order with a shipment is on its way; cancelling
    /// it would leave a shipment for a cancelled order.
    #[error("order has shipment {0} and can no longer be cancelled")]
    ShipmentNotCancellable(Uuid),
}

impl Rejection for OrderError {
    fn kind(&self) -> RejectionKind {
        match self {
            OrderError::AlreadyCreated
            | OrderError::IllegalTransition { .. }
            | OrderError::OtherShipment(_)
            | OrderError::AlreadyInvoiced(_)
            | OrderError::InvoicedNotCancellable(_)
            | OrderError::ShipmentNotCancellable(_) => RejectionKind::InvalidState,
            OrderError::NotFound => RejectionKind::NotFound,
            OrderError::InvalidLineCount(_)
            | OrderError::DuplicateProduct(_)
            | OrderError::InvalidQuantity(_)
            | OrderError::PriceNotPositive(_)
            | OrderError::InvalidText(_)
            | OrderError::TotalTooLarge => RejectionKind::Validation,
        }
    }
}

/// A stock reservation to release on a product stream after a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationRelease {
    pub product_id: Uuid,
    pub quantity: u32,
}

/// The state a decision needs, and nothing more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// `None` until `OrderCreated`: the order does not exist.
    pub status: Option<OrderStatus>,
    pub customer_id: Uuid,
    pub items: Vec<OrderLine>,
    pub total: Money,
    /// The shipment carrying the order, from `OrderShipmentCreated` (or,
    /// for orders shipped before shipments were recorded, `OrderShipped`) on.
    pub shipment_id: Option<Uuid>,
    /// The order's invoice, from `OrderInvoiced` on.
    pub invoice_id: Option<Uuid>,
}

impl Order {
    /// The reservations the command layer must release after `decision`, the
    /// events `handle` just returned: every line of the order when the
    /// decision cancels it, nothing otherwise. Call it on the state *before*
    /// the decision is applied. A repeated cancel is rejected, so nothing is
    /// released twice; `ReleaseStock` is idempotent on the product anyway.
    pub fn reservations_to_release(&self, decision: &[OrderEvent]) -> Vec<ReservationRelease> {
        if !decision.iter().any(|e| matches!(e, OrderEvent::OrderCancelled { .. })) {
            return vec![];
        }
        self.items
            .iter()
            .map(|line| ReservationRelease { product_id: line.product_id, quantity: line.quantity })
            .collect()
    }

    fn existing_status(&self) -> Result<OrderStatus, OrderError> {
        self.status.ok_or(OrderError::NotFound)
    }

    /// A repeated shipping notice is a no-op only for the shipment on record.
    fn ensure_same_shipment(&self, shipment_id: Uuid) -> Result<(), OrderError> {
        if self.shipment_id == Some(shipment_id) {
            Ok(())
        } else {
            Err(OrderError::OtherShipment(shipment_id))
        }
    }

    /// A first shipping notice must come from the shipment on record, if
    /// one is (orders shipped before shipments were recorded have none).
    fn ensure_no_other_shipment(&self, shipment_id: Uuid) -> Result<(), OrderError> {
        match self.shipment_id {
            Some(on_record) if on_record != shipment_id => {
                Err(OrderError::OtherShipment(shipment_id))
            }
            _ => Ok(()),
        }
    }

    /// An order that is billed or on its way is kept: cancelling it would
    /// leave an invoice or a shipment for a cancelled order.
    fn ensure_cancellable(&self) -> Result<(), OrderError> {
        if let Some(invoice_id) = self.invoice_id {
            return Err(OrderError::InvoicedNotCancellable(invoice_id));
        }
        if let Some(shipment_id) = self.shipment_id {
            return Err(OrderError::ShipmentNotCancellable(shipment_id));
        }
        Ok(())
    }
}

/// Checks every line and sums the total. Duplicate products are rejected
/// rather than merged, so the caller sees exactly what will be stored.
fn checked_lines(lines: &[OrderLine]) -> Result<(Vec<OrderLine>, Money), OrderError> {
    if lines.is_empty() || lines.len() > MAX_ORDER_LINES {
        return Err(OrderError::InvalidLineCount(lines.len()));
    }
    let mut seen = BTreeSet::new();
    let mut total = Decimal::ZERO;
    let mut checked = Vec::with_capacity(lines.len());
    for line in lines {
        if !seen.insert(line.product_id) {
            return Err(OrderError::DuplicateProduct(line.product_id));
        }
        if !quantity_in_range(line.quantity) {
            return Err(OrderError::InvalidQuantity(line.product_id));
        }
        if line.unit_price == Money::ZERO {
            return Err(OrderError::PriceNotPositive(line.product_id));
        }
        let product_name = trimmed_text(&line.product_name, MAX_TEXT)
            .ok_or(OrderError::InvalidText("productName"))?;
        total = line
            .subtotal()
            .and_then(|subtotal| total.checked_add(subtotal))
            .filter(|sum| *sum <= MAX_AMOUNT)
            .ok_or(OrderError::TotalTooLarge)?;
        checked.push(OrderLine { product_name, ..line.clone() });
    }
    let total = Money::non_negative(total, "total").map_err(|_| OrderError::TotalTooLarge)?;
    Ok((checked, total))
}

impl Aggregate for Order {
    const STREAM_TYPE: &'static str = "Order";
    /// 2: the state records its invoice (`invoice_id`).
    const STATE_VERSION: i32 = 2;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn command_name(command: &OrderCommand) -> &'static str {
        command.name()
    }

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus::{Confirmed, Delivered, Pending, Shipped};

        let illegal = |status| OrderError::IllegalTransition { status, command: command.name() };
        match command {
            OrderCommand::CreateOrder { customer_id, items } => {
                if self.status.is_some() {
                    return Err(OrderError::AlreadyCreated);
                }
                let (items, total) = checked_lines(items)?;
                Ok(vec![OrderEvent::OrderCreated { customer_id: *customer_id, items, total }])
            }
            OrderCommand::ConfirmOrder => match self.existing_status()? {
                Pending => Ok(vec![OrderEvent::OrderConfirmed]),
                status => Err(illegal(status)),
            },
            OrderCommand::CancelOrder { reason } => match self.existing_status()? {
                Pending | Confirmed => {
                    self.ensure_cancellable()?;
                    let reason =
                        trimmed_text(reason, MAX_TEXT).ok_or(OrderError::InvalidText("reason"))?;
                    Ok(vec![OrderEvent::OrderCancelled { reason }])
                }
                status => Err(illegal(status)),
            },
            OrderCommand::RecordInvoice { invoice_id } => match self.existing_status()? {
                Confirmed | Shipped | Delivered => match self.invoice_id {
                    None => Ok(vec![OrderEvent::OrderInvoiced { invoice_id: *invoice_id }]),
                    Some(on_record) if on_record == *invoice_id => Ok(vec![]),
                    Some(on_record) => Err(OrderError::AlreadyInvoiced(on_record)),
                },
                status => Err(illegal(status)),
            },
            OrderCommand::RecordShipment { shipment_id } => match self.existing_status()? {
                Confirmed if self.shipment_id.is_none() => {
                    Ok(vec![OrderEvent::OrderShipmentCreated { shipment_id: *shipment_id }])
                }
                Confirmed => self.ensure_same_shipment(*shipment_id).map(|()| vec![]),
                status => Err(illegal(status)),
            },
            OrderCommand::MarkOrderShipped { shipment_id } => match self.existing_status()? {
                Confirmed => {
                    self.ensure_no_other_shipment(*shipment_id)?;
                    Ok(vec![OrderEvent::OrderShipped { shipment_id: *shipment_id }])
                }
                Shipped | Delivered => self.ensure_same_shipment(*shipment_id).map(|()| vec![]),
                status => Err(illegal(status)),
            },
            OrderCommand::MarkOrderDelivered { shipment_id } => match self.existing_status()? {
                Confirmed => {
                    self.ensure_no_other_shipment(*shipment_id)?;
                    Ok(vec![
                        OrderEvent::OrderShipped { shipment_id: *shipment_id },
                        OrderEvent::OrderDelivered { shipment_id: *shipment_id },
                    ])
                }
                Shipped => {
                    self.ensure_same_shipment(*shipment_id)?;
                    Ok(vec![OrderEvent::OrderDelivered { shipment_id: *shipment_id }])
                }
                Delivered => self.ensure_same_shipment(*shipment_id).map(|()| vec![]),
                status => Err(illegal(status)),
            },
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderCreated { customer_id, items, total } => {
                self.status = Some(OrderStatus::Pending);
                self.customer_id = *customer_id;
                self.items = items.clone();
                self.total = *total;
            }
            OrderEvent::OrderConfirmed => self.status = Some(OrderStatus::Confirmed),
            OrderEvent::OrderCancelled { .. } => self.status = Some(OrderStatus::Cancelled),
            OrderEvent::OrderShipped { shipment_id } => {
                self.status = Some(OrderStatus::Shipped);
                self.shipment_id = Some(*shipment_id);
            }
            OrderEvent::OrderDelivered { shipment_id } => {
                self.status = Some(OrderStatus::Delivered);
                self.shipment_id = Some(*shipment_id);
            }
            OrderEvent::OrderInvoiced { invoice_id } => self.invoice_id = Some(*invoice_id),
            OrderEvent::OrderShipmentCreated { shipment_id } => {
                self.shipment_id = Some(*shipment_id);
            }
        }
    }
}
