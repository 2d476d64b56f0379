use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::ProductEvent;
use crate::domain::input::{MAX_QUANTITY, MAX_TEXT, quantity_in_range, trimmed_text};
use crate::domain::money::Money;
use crate::es::aggregate::{Aggregate, Rejection, RejectionKind};

/// Most units a product may have on hand (available plus reserved): 10^9,
/// a thousand of the largest deliveries. Both counts then fit what the
/// read side serves them as: `i64` in the stock view, and a GraphQL `Int`,
/// which is a signed 32-bit number (at most 2,147,483,647). An increase past
/// it is refused; one that reaches it exactly is allowed.
pub const MAX_STOCK: u64 = 1_000_000_000;

/// What a product command may ask. Quantities are per operation and must be
/// within `1..=MAX_QUANTITY`; `handle` checks them.
#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    RegisterProduct {
        name: String,
        price: Money,
    },
    IncreaseStock {
        amount: u32,
        reason: String,
    },
    DecreaseStock {
        amount: u32,
        reason: String,
    },
    /// Holds stock for an order. Retrying with the same quantity is a no-op.
    ReserveStock {
        order_id: Uuid,
        quantity: u32,
    },
    /// Releases the order's reservation; a missing or already released
    /// reservation is a no-op, so the command is safe to retry.
    ReleaseStock {
        order_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// `INVALID_STATE`: a product is registered once.
    #[error("product is already registered")]
    AlreadyRegistered,
    /// `NOT_FOUND`: every command but RegisterProduct needs a registered product.
    #[error("product does not exist")]
    NotFound,
    /// `VALIDATION_ERROR`: a required text is empty or too long.
    #[error("{0} must be between 1 and {MAX_TEXT} characters")]
    InvalidText(&'static str),
    /// `VALIDATION_ERROR`: a product is never free.
    #[error("price must be greater than zero")]
    PriceNotPositive,
    /// `VALIDATION_ERROR`: one operation moves between 1 and 1,000,000 units.
    #[error("{0} must be between 1 and {MAX_QUANTITY}")]
    InvalidQuantity(&'static str),
    /// `INSUFFICIENT_STOCK`: removing or reserving more than is available.
    #[error("insufficient stock: {requested} requested, {available} available")]
    InsufficientStock { requested: u32, available: u64 },
    /// `VALIDATION_ERROR`: the units on hand would pass [`MAX_STOCK`].
    #[error("stock on hand would exceed the limit of {MAX_STOCK} units")]
    StockLimitExceeded,
    /// `INVALID_STATE`: the order already holds a reservation of another size.
    #[error("order {order_id} already reserved {reserved} units")]
    ReservationConflict { order_id: Uuid, reserved: u32 },
}

impl Rejection for ProductError {
    fn kind(&self) -> RejectionKind {
        match self {
            ProductError::AlreadyRegistered | ProductError::ReservationConflict { .. } => {
                RejectionKind::InvalidState
            }
            ProductError::NotFound => RejectionKind::NotFound,
            ProductError::InvalidText(_)
            | ProductError::PriceNotPositive
            | ProductError::InvalidQuantity(_)
            | ProductError::StockLimitExceeded => RejectionKind::Validation,
            ProductError::InsufficientStock { .. } => RejectionKind::InsufficientStock,
        }
    }
}

/// The state a decision needs, and nothing more.
///
/// Invariant: `available` counts units on hand that no order holds, so units
/// on hand are `available + reserved()` and neither is ever negative.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub registered: bool,
    pub name: String,
    pub price: Money,
    pub available: u64,
    /// Units held per order id, until released.
    pub reservations: BTreeMap<Uuid, u32>,
}

impl Product {
    /// Units held for orders.
    pub fn reserved(&self) -> u64 {
        self.reservations.values().map(|&q| u64::from(q)).sum()
    }

    /// Units physically on hand: available plus reserved.
    pub fn on_hand(&self) -> u64 {
        self.available.saturating_add(self.reserved())
    }

    /// Reserving and releasing move units between available and reserved;
    /// only an increase adds to what is on hand, so only it can pass the
    /// limit, and both counts stay within it.
    fn ensure_room_for(&self, amount: u32) -> Result<(), ProductError> {
        if self.on_hand().saturating_add(u64::from(amount)) > MAX_STOCK {
            return Err(ProductError::StockLimitExceeded);
        }
        Ok(())
    }

    fn ensure_registered(&self) -> Result<(), ProductError> {
        if self.registered { Ok(()) } else { Err(ProductError::NotFound) }
    }

    fn ensure_available(&self, requested: u32) -> Result<(), ProductError> {
        if u64::from(requested) > self.available {
            return Err(ProductError::InsufficientStock { requested, available: self.available });
        }
        Ok(())
    }
}

fn checked_quantity(value: u32, field: &'static str) -> Result<u32, ProductError> {
    if quantity_in_range(value) { Ok(value) } else { Err(ProductError::InvalidQuantity(field)) }
}

fn checked_text(value: &str, field: &'static str) -> Result<String, ProductError> {
    trimmed_text(value, MAX_TEXT).ok_or(ProductError::InvalidText(field))
}

impl Aggregate for Product {
    const STREAM_TYPE: &'static str = "Product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    fn command_name(command: &ProductCommand) -> &'static str {
        match command {
            ProductCommand::RegisterProduct { .. } => "RegisterProduct",
            ProductCommand::IncreaseStock { .. } => "IncreaseStock",
            ProductCommand::DecreaseStock { .. } => "DecreaseStock",
            ProductCommand::ReserveStock { .. } => "ReserveStock",
            ProductCommand::ReleaseStock { .. } => "ReleaseStock",
        }
    }

    fn handle(&self, command: &ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        match command {
            ProductCommand::RegisterProduct { name, price } => {
                if self.registered {
                    return Err(ProductError::AlreadyRegistered);
                }
                let name = checked_text(name, "name")?;
                if *price == Money::ZERO {
                    return Err(ProductError::PriceNotPositive);
                }
                Ok(vec![ProductEvent::ProductRegistered { name, price: *price }])
            }
            ProductCommand::IncreaseStock { amount, reason } => {
                self.ensure_registered()?;
                let amount = checked_quantity(*amount, "amount")?;
                let reason = checked_text(reason, "reason")?;
                self.ensure_room_for(amount)?;
                Ok(vec![ProductEvent::StockIncreased { amount, reason }])
            }
            ProductCommand::DecreaseStock { amount, reason } => {
                self.ensure_registered()?;
                let amount = checked_quantity(*amount, "amount")?;
                let reason = checked_text(reason, "reason")?;
                self.ensure_available(amount)?;
                Ok(vec![ProductEvent::StockDecreased { amount, reason }])
            }
            ProductCommand::ReserveStock { order_id, quantity } => {
                self.ensure_registered()?;
                let quantity = checked_quantity(*quantity, "quantity")?;
                match self.reservations.get(order_id) {
                    Some(&reserved) if reserved == quantity => return Ok(vec![]),
                    Some(&reserved) => {
                        return Err(ProductError::ReservationConflict {
                            order_id: *order_id,
                            reserved,
                        });
                    }
                    None => {}
                }
                self.ensure_available(quantity)?;
                Ok(vec![ProductEvent::StockReserved { order_id: *order_id, quantity }])
            }
            ProductCommand::ReleaseStock { order_id } => {
                self.ensure_registered()?;
                Ok(self
                    .reservations
                    .get(order_id)
                    .map(|&quantity| ProductEvent::StockReleased { order_id: *order_id, quantity })
                    .into_iter()
                    .collect())
            }
        }
    }

    /// Saturating arithmetic: `handle` never lets stock go negative, and a
    /// fold must not panic on history even if it somehow did.
    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::ProductRegistered { name, price } => {
                self.registered = true;
                self.name = name.clone();
                self.price = *price;
            }
            ProductEvent::StockIncreased { amount, .. } => {
                self.available = self.available.saturating_add(u64::from(*amount));
            }
            ProductEvent::StockDecreased { amount, .. } => {
                self.available = self.available.saturating_sub(u64::from(*amount));
            }
            ProductEvent::StockReserved { order_id, quantity } => {
                self.available = self.available.saturating_sub(u64::from(*quantity));
                self.reservations.insert(*order_id, *quantity);
            }
            ProductEvent::StockReleased { order_id, quantity } => {
                self.reservations.remove(order_id);
                self.available = self.available.saturating_add(u64::from(*quantity));
            }
        }
    }
}
