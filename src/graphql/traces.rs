//! The GraphQL operation as a span: `graphql` (named `<type> <name>`, e.g.
//! `mutation depositMoney`), the child of the HTTP request's span and the
//! parent of the commands and reads it runs. The name is the operation's,
//! or for an anonymous one its first root field's.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection,
};
use async_graphql::{Response, ServerResult, Variables};
use tracing::Instrument as _;

/// Puts each request in a `graphql` span (free when that span is disabled).
pub(super) struct OperationSpan;

impl ExtensionFactory for OperationSpan {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest::default())
    }
}

#[derive(Default)]
struct PerRequest {
    /// The `operationName` of the request, once prepared.
    operation_name: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let span = tracing::debug_span!(
            "graphql",
            otel.name = tracing::field::Empty,
            graphql.operation.name = tracing::field::Empty,
            graphql.operation.type = tracing::field::Empty,
        );
        if span.is_disabled() {
            return next.run(ctx).await;
        }
        next.run(ctx).instrument(span).await
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        if let Ok(mut name) = self.operation_name.lock() {
            name.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let span = tracing::Span::current();
        if !span.is_disabled() {
            let wanted = self.operation_name.lock().ok().and_then(|n| n.clone());
            if let Some((kind, name)) = describe(&document, wanted.as_deref()) {
                span.record("otel.name", format!("{kind} {name}"));
                span.record("graphql.operation.name", name);
                span.record("graphql.operation.type", kind);
            }
        }
        Ok(document)
    }
}

/// The type and name of the operation `wanted` selects in `document`.
fn describe(document: &ExecutableDocument, wanted: Option<&str>) -> Option<(&'static str, String)> {
    let (name, operation) = match (&document.operations, wanted) {
        (DocumentOperations::Single(op), _) => (None, op),
        (DocumentOperations::Multiple(ops), Some(wanted)) => {
            let (name, op) = ops.iter().find(|(n, _)| n.as_str() == wanted)?;
            (Some(name.to_string()), op)
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            let (name, op) = ops.iter().next()?;
            (Some(name.to_string()), op)
        }
        (DocumentOperations::Multiple(_), None) => return None,
    };
    let kind = match operation.node.ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    let name = name.or_else(|| {
        operation.node.selection_set.node.items.iter().find_map(|s| match &s.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
    })?;
    Some((kind, name))
}
