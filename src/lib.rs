//! eventfold: a GraphQL backend built on CQRS and event sourcing.
//!
//! A request goes http → graphql → service → (domain through the kernel) →
//! infra; the read side is fed by the projection runtime.
//!
//! - [`es`]: the generic event-sourcing kernel (no domain, no GraphQL, no SQL
//!   beyond the transaction a projection is handed).
//! - [`domain`]: aggregates, commands, events and rules (pure).
//! - [`commands`]: use cases spanning several aggregates (through the kernel).
//! - [`service`]: what the API, the CLI and `/metrics` call; knows no GraphQL.
//! - [`read_models`]: each read model's projector and queries, side by side.
//! - [`processes`]: process managers (projections that issue commands).
//! - [`infra`]: SeaORM, Redis, and the projection runtime.
//! - [`graphql`], [`http`]: the API.
//! - [`app`], [`cli`]: startup wiring, the only code that knows every layer.

pub mod app;
pub mod cli;
pub mod commands;
pub mod domain;
pub mod es;
pub mod graphql;
pub mod http;
pub mod infra;
pub mod processes;
pub mod read_models;
pub mod service;
