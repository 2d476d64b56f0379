//! Integration tests: the real server over real PostgreSQL (and once over
//! the embedded SQLite default), driven over HTTP and WebSocket.

mod accounts;
mod concurrency;
mod convergence;
mod embedded;
mod event_store;
mod helpers;
mod http;
mod process;
mod rebuild;
mod schema;
mod subscriptions;
mod transport;
