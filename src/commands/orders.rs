//! Creating and cancelling orders: the order stream and every product
//! stream of the order change in one append, or none does.

use async_trait::async_trait;
use uuid::Uuid;

use super::ShopError;
use crate::domain::customer::Customer;
use crate::domain::order::{MAX_ORDER_LINES, Order, OrderCommand, OrderError, OrderLine};
use crate::domain::product::{Product, ProductCommand};
use crate::es::aggregate::Aggregate;
use crate::es::command::{CommandContext, CommandError, CommandExecutor, Outcome};
use crate::es::envelope::StreamKey;
use crate::es::unit_of_work::{MultiStreamCommand, UnitOfWork};

/// One requested line: which product and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: Uuid,
    pub quantity: u32,
}

/// Places `order_id` for `customer_id` and reserves each item's stock.
///
/// The customer and the products are looked up on the write side; their
/// names and prices go into `OrderCreated`, so later changes do not alter
/// the order. `INSUFFICIENT_STOCK` on any product appends nothing at all.
pub struct CreateOrder {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub items: Vec<OrderItem>,
}

#[async_trait]
impl MultiStreamCommand for CreateOrder {
    type Rejection = ShopError;

    fn streams(&self) -> Vec<StreamKey> {
        let order = StreamKey::new(Order::STREAM_TYPE, self.order_id);
        let products =
            self.items.iter().map(|i| StreamKey::new(Product::STREAM_TYPE, i.product_id));
        std::iter::once(order).chain(products).collect()
    }

    async fn decide(
        &self,
        work: &mut UnitOfWork<'_, ShopError>,
    ) -> Result<(), CommandError<ShopError>> {
        if !work.state::<Customer>(self.customer_id).await?.registered {
            return Err(CommandError::Rejected(ShopError::CustomerNotFound(self.customer_id)));
        }
        let mut lines = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let product = work.state::<Product>(item.product_id).await?;
            if !product.registered {
                return Err(CommandError::Rejected(ShopError::ProductNotFound(item.product_id)));
            }
            lines.push(OrderLine {
                product_id: item.product_id,
                product_name: product.name.clone(),
                unit_price: product.price,
                quantity: item.quantity,
            });
        }
        let create = OrderCommand::CreateOrder { customer_id: self.customer_id, items: lines };
        work.handle::<Order>(self.order_id, &create).await?;
        for item in &self.items {
            let reserve =
                ProductCommand::ReserveStock { order_id: self.order_id, quantity: item.quantity };
            work.handle::<Product>(item.product_id, &reserve).await?;
        }
        Ok(())
    }
}

/// Cancels an order and releases its reservations on the product streams.
pub struct CancelOrder {
    pub order_id: Uuid,
    pub reason: String,
    /// The order's products, read before locking: an order's lines never
    /// change after it is created.
    pub products: Vec<Uuid>,
}

#[async_trait]
impl MultiStreamCommand for CancelOrder {
    type Rejection = ShopError;

    fn streams(&self) -> Vec<StreamKey> {
        let order = StreamKey::new(Order::STREAM_TYPE, self.order_id);
        let products = self.products.iter().map(|id| StreamKey::new(Product::STREAM_TYPE, *id));
        std::iter::once(order).chain(products).collect()
    }

    async fn decide(
        &self,
        work: &mut UnitOfWork<'_, ShopError>,
    ) -> Result<(), CommandError<ShopError>> {
        let before = work.state::<Order>(self.order_id).await?.clone();
        let cancel = OrderCommand::CancelOrder { reason: self.reason.clone() };
        let decision = work.handle::<Order>(self.order_id, &cancel).await?;
        for release in before.reservations_to_release(&decision) {
            let command = ProductCommand::ReleaseStock { order_id: self.order_id };
            work.handle::<Product>(release.product_id, &command).await?;
        }
        Ok(())
    }
}

/// Creates an order (see [`CreateOrder`]).
pub async fn create_order(
    executor: &CommandExecutor,
    command: CreateOrder,
    ctx: &CommandContext,
) -> Result<Outcome, CommandError<ShopError>> {
    // Refuse oversized orders before locking one stream per line.
    if command.items.is_empty() || command.items.len() > MAX_ORDER_LINES {
        let count = command.items.len();
        return Err(CommandError::Rejected(OrderError::InvalidLineCount(count).into()));
    }
    executor.execute_many(&command, ctx).await
}

/// Cancels an order (see [`CancelOrder`]).
pub async fn cancel_order(
    executor: &CommandExecutor,
    order_id: Uuid,
    reason: String,
    ctx: &CommandContext,
) -> Result<Outcome, CommandError<ShopError>> {
    let order = executor.load::<Order>(order_id).await?;
    let products = order.state.items.iter().map(|line| line.product_id).collect();
    executor.execute_many(&CancelOrder { order_id, reason, products }, ctx).await
}
