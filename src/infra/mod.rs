//! Adapters to the outside world: SeaORM (PostgreSQL, SQLite) and the
//! projector runtime that drives projections over a transport.

pub mod db;
pub mod event_store;
pub mod projector_runtime;
pub mod read_your_writes;
pub mod rebuild;
pub mod redis;
