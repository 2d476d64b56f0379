//! Adapters to the outside world: SeaORM (PostgreSQL, SQLite) and the
//! projector runtime that drives projections over a transport.

pub mod db;
pub mod dead_letters;
pub mod event_store;
mod event_writer;
pub mod in_process;
pub mod projector_runtime;
pub mod read_your_writes;
pub mod rebuild;
pub mod redis;
