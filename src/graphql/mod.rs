//! The GraphQL API: one resolver module per context, merged into one schema.
//! Resolvers turn GraphQL input into service calls and service results into
//! GraphQL types; the services decide, read and wait. Failures become codes
//! in one place, [`error`].

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{
    Context, MergedObject, MergedSubscription, SDLExportOptions, Schema, ServerResult,
};

pub mod accounts;
pub mod audit;
pub mod console;
pub mod customers;
pub mod decimal;
mod documents;
pub mod error;
pub mod feed;
pub mod limits;
mod metrics;
pub mod ops;
pub mod order_commands;
pub mod orders;
pub mod pagination;
pub mod payload;
pub mod products;
mod traces;

pub use error::ApiError;
pub use traces::operation_span;

use crate::service::{Caller, MinPosition, RequestWaits, Services};

#[derive(MergedObject, Default)]
pub struct Query(
    accounts::AccountQuery,
    audit::AuditQuery,
    feed::FeedQuery,
    console::ConsoleQuery,
    ops::OpsQuery,
    customers::CustomerQuery,
    products::ProductQuery,
    orders::OrderQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    accounts::AccountMutation,
    customers::CustomerMutation,
    products::ProductMutation,
    order_commands::OrderMutation,
    console::ConsoleMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(
    accounts::AccountSubscription,
    orders::OrderSubscription,
    products::ProductSubscription,
    feed::FeedSubscription,
    console::ConsoleSubscription,
);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// The schema without data: enough to print SDL.
pub fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .extension(error::DefaultErrorCode)
        .limit_depth(limits::MAX_DEPTH)
        .limit_complexity(limits::MAX_COMPLEXITY)
}

/// The schema serving `services`, refusing operations of more than
/// `max_root_fields` root fields.
pub fn schema(services: Arc<Services>, max_root_fields: usize) -> AppSchema {
    let caller = services.access.default_caller();
    schema_builder()
        .extension(limits::MaxRootFields(max_root_fields))
        .extension(PerRequestWaits)
        .extension(metrics::OperationMetrics)
        // Last, so innermost: it stands where the engine parses.
        .extension(documents::DocumentCache::default())
        .data(services)
        .data(caller)
        .finish()
}

/// The SDL served by the API, as written to `schema.graphql`: what
/// introspection shows, `@specifiedBy` URLs of the custom scalars included.
pub fn sdl() -> String {
    schema_builder().finish().sdl_with_options(SDLExportOptions::new().include_specified_by())
}

/// The services every resolver calls.
fn services<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<Services>> {
    ctx.data::<Arc<Services>>()
}

/// Gives every request (and subscription) its own [`RequestWaits`], which
/// its `minPosition` fields share.
struct PerRequestWaits;

impl ExtensionFactory for PerRequestWaits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequestWaits)
    }
}

#[async_trait::async_trait]
impl Extension for PerRequestWaits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        next.run(ctx, request.data(RequestWaits::default())).await
    }
}

/// A field's `minPosition`, waited for together with the other fields of
/// its request.
fn read_after<'a>(ctx: &Context<'a>, min_position: &'a Option<String>) -> MinPosition<'a> {
    MinPosition { position: min_position.as_deref(), request: ctx.data_opt::<RequestWaits>() }
}

/// The caller of this request (the schema's default caller when the
/// transport set none: anonymous, or admin in open mode).
fn caller<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Caller> {
    ctx.data::<Caller>()
}
