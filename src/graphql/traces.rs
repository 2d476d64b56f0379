//! The GraphQL operation as a span: named `<type> <name>` (e.g.
//! `mutation depositMoney`), the child of the HTTP request's span and the
//! parent of the commands and reads it runs. The name is the operation's,
//! or for an anonymous one its first root field's. It is named before it
//! starts (a started span keeps its name), so the document is parsed here,
//! once: the request keeps it for execution.

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection};

/// The span to execute `request` in: disabled (free) unless traces are
/// exported and the document parses (a bad one fails in execution as ever).
pub fn operation_span(request: &mut async_graphql::Request) -> tracing::Span {
    if !crate::infra::trace_context::enabled() {
        return tracing::Span::none();
    }
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else { return tracing::Span::none() };
    let Some((kind, name)) = describe(document, wanted.as_deref()) else {
        return tracing::Span::none();
    };
    tracing::debug_span!(
        "graphql",
        otel.name = %format_args!("{kind} {name}"),
        graphql.operation.name = %name,
        graphql.operation.type = kind,
    )
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
    let kind = super::metrics::kind(operation.node.ty);
    let name = name.or_else(|| {
        operation.node.selection_set.node.items.iter().find_map(|s| match &s.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
    })?;
    Some((kind, name))
}
