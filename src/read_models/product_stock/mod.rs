//! `product_stock_view`: one row per product with its available and
//! reserved stock.

mod projector;
pub mod query;

pub use projector::{NAME, ProductStockProjection};
