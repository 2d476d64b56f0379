//! Integration tests: the real server over real PostgreSQL (and once over
//! the embedded SQLite default), driven over HTTP and WebSocket.

mod accounts;
mod auth;
mod bank_limits;
mod concurrency;
mod convergence;
mod embedded;
mod event_store;
mod helpers;
mod hot_stream;
mod http;
mod integrity;
mod limits;
mod load;
mod process;
mod rebuild;
mod rebuild_exclusive;
mod relay_plan;
mod schema;
mod settings;
mod shop_flow;
mod shop_helpers;
mod shop_integrity;
mod shop_migration;
mod shop_process;
mod shop_rejections;
mod shop_snapshots;
mod shop_stock;
mod shop_subscriptions;
mod shop_upcasting;
mod stream_locks;
mod subscriptions;
mod supervision;
mod tls;
mod transport;
mod ws_security;
