//! Adapters to the outside world: SeaORM (PostgreSQL, SQLite), Redis, and
//! the projection runtime that drives projections over a transport.

pub mod append_locks;
pub mod db;
pub mod deployment;
pub mod event_feed;
pub mod event_store;
mod event_writer;
pub mod jwt;
pub mod metrics;
pub mod pool_waits;
pub mod projection_runtime;
pub mod read_your_writes;
pub mod rebuild;
pub mod redis;
pub mod supervisor;
pub mod trace_context;
