use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::InvoiceEvent;
use crate::domain::money::Money;
use crate::domain::order::OrderStatus;
use crate::es::aggregate::{Aggregate, Rejection, RejectionKind};

/// Longest invoice URL accepted.
pub const MAX_URL: usize = 2048;

/// What an invoice command may ask. The caller reads the order first and
/// passes its status; it also chooses the invoice id and the time.
#[derive(Debug, Clone, PartialEq)]
pub enum InvoiceCommand {
    IssueInvoice {
        invoice_id: Uuid,
        order_id: Uuid,
        order_status: OrderStatus,
        total: Money,
        url: String,
        issued_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// `INVALID_STATE`: an order is invoiced once.
    #[error("order already has invoice {0}")]
    AlreadyIssued(Uuid),
    /// `INVALID_STATE`: only CONFIRMED, SHIPPED or DELIVERED orders are invoiced.
    #[error("a {0} order cannot be invoiced")]
    OrderNotInvoiceable(OrderStatus),
    /// `VALIDATION_ERROR`: an invoice is never for nothing.
    #[error("total must be greater than zero")]
    TotalNotPositive,
    /// `VALIDATION_ERROR`: the URL is not an absolute http(s) URL of at most
    /// 2048 characters without spaces.
    #[error("url must be an absolute http(s) URL of at most {MAX_URL} characters")]
    InvalidUrl,
}

impl Rejection for InvoiceError {
    fn kind(&self) -> RejectionKind {
        match self {
            InvoiceError::AlreadyIssued(_) | InvoiceError::OrderNotInvoiceable(_) => {
                RejectionKind::InvalidState
            }
            InvoiceError::TotalNotPositive | InvoiceError::InvalidUrl => RejectionKind::Validation,
        }
    }
}

/// The state a decision needs, plus what the invoice says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    /// `None` until `InvoiceIssued`.
    pub invoice_id: Option<Uuid>,
    pub order_id: Uuid,
    pub total: Money,
    pub url: String,
    pub issued_at: Option<DateTime<Utc>>,
}

/// Whether an order in `status` may be invoiced: it must have been confirmed
/// and not cancelled; shipping or delivery afterwards does not matter.
fn invoiceable(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered)
}

fn checked_url(url: &str) -> Result<String, InvoiceError> {
    let url = url.trim();
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !host_ok || url.chars().count() > MAX_URL || url.chars().any(char::is_whitespace) {
        return Err(InvoiceError::InvalidUrl);
    }
    Ok(url.to_owned())
}

impl Aggregate for Invoice {
    const STREAM_TYPE: &'static str = "Invoice";
    type Command = InvoiceCommand;
    type Event = InvoiceEvent;
    type Error = InvoiceError;

    fn command_name(command: &InvoiceCommand) -> &'static str {
        match command {
            InvoiceCommand::IssueInvoice { .. } => "IssueInvoice",
        }
    }

    fn handle(&self, command: &InvoiceCommand) -> Result<Vec<InvoiceEvent>, InvoiceError> {
        match command {
            InvoiceCommand::IssueInvoice {
                invoice_id,
                order_id,
                order_status,
                total,
                url,
                issued_at,
            } => {
                if let Some(issued) = self.invoice_id {
                    return Err(InvoiceError::AlreadyIssued(issued));
                }
                if !invoiceable(*order_status) {
                    return Err(InvoiceError::OrderNotInvoiceable(*order_status));
                }
                if *total == Money::ZERO {
                    return Err(InvoiceError::TotalNotPositive);
                }
                Ok(vec![InvoiceEvent::InvoiceIssued {
                    invoice_id: *invoice_id,
                    order_id: *order_id,
                    total: *total,
                    url: checked_url(url)?,
                    issued_at: *issued_at,
                }])
            }
        }
    }

    fn apply(&mut self, event: &InvoiceEvent) {
        match event {
            InvoiceEvent::InvoiceIssued { invoice_id, order_id, total, url, issued_at } => {
                self.invoice_id = Some(*invoice_id);
                self.order_id = *order_id;
                self.total = *total;
                self.url = url.clone();
                self.issued_at = Some(*issued_at);
            }
        }
    }
}
