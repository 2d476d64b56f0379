//! eventfold: a GraphQL backend built on CQRS and event sourcing.
//!
//! - [`es`]: the generic event-sourcing kernel (no domain, no GraphQL, no SQL).
//! - [`domain`]: aggregates, commands, events and rules (pure).
//! - [`commands`]: use cases spanning several aggregates (through the kernel).
//! - [`infra`], [`projections`], [`graphql`], [`http`]: the adapters.

pub mod app;
pub mod cli;
pub mod commands;
pub mod domain;
pub mod es;
pub mod graphql;
pub mod http;
pub mod infra;
pub mod projections;
