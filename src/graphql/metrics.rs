//! Counts and times GraphQL operations by name, type and outcome.
//!
//! Names come from clients, so their number is bounded: an unnamed
//! operation is `anonymous`, and past [`MAX_NAMES`] distinct names every
//! new one is `other`. The outcome is `ok` or the first error's
//! `extensions.code`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
    NextSubscribe,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use metrics::{counter, gauge, histogram};

/// Most distinct operation names counted apart.
const MAX_NAMES: usize = 200;

/// Measures each request (one instance per request).
pub(super) struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Measured::default())
    }
}

#[derive(Default)]
struct Measured {
    labels: Arc<Labels>,
}

/// What the request turned out to run.
#[derive(Default)]
struct Labels {
    /// The operations of the parsed document: name (`None`: anonymous) and type.
    operations: Mutex<Vec<(Option<String>, &'static str)>>,
    /// The operation executed: its label and type.
    executed: Mutex<Option<(&'static str, &'static str)>>,
}

#[async_trait::async_trait]
impl Extension for Measured {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        self.labels.count(&response, started);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Counted at its first response: a query's or mutation's result, a
        // subscription's first event (or its error).
        let (active, labels, started) = (Active::new(), self.labels.clone(), Instant::now());
        let mut counted = false;
        next.run(ctx, stream)
            .map(move |response| {
                let _running = &active;
                if !counted {
                    counted = true;
                    labels.count(&response, started);
                }
                response
            })
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations = document
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), kind(op.node.ty)))
            .collect();
        if let Ok(mut slot) = self.labels.operations.lock() {
            *slot = operations;
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let executed = self.labels.operations.lock().ok().and_then(|ops| {
            let (name, kind) = match operation_name {
                Some(wanted) => ops.iter().find(|(name, _)| name.as_deref() == Some(wanted))?,
                None => ops.first()?,
            };
            Some((name_label(name.as_deref()), *kind))
        });
        if let Ok(mut slot) = self.labels.executed.lock() {
            *slot = executed;
        }
        next.run(ctx, operation_name).await
    }
}

impl Labels {
    /// The executed operation's name and type: the one `execute` chose, or
    /// the document's only operation (subscriptions do not pass
    /// `execute`); `unknown` type for a request that never parsed.
    fn label(&self) -> (&'static str, &'static str) {
        if let Some(executed) = self.executed.lock().ok().and_then(|e| *e) {
            return executed;
        }
        let only = self.operations.lock().ok().and_then(|ops| match ops.as_slice() {
            [(name, kind)] => Some((name_label(name.as_deref()), *kind)),
            _ => None,
        });
        only.unwrap_or(("anonymous", "unknown"))
    }

    /// Counts the operation with the outcome of `response`, and its time
    /// unless it is a subscription (whose first event may come any time).
    fn count(&self, response: &Response, started: Instant) {
        let (name, kind) = self.label();
        let labels = [("operation", name), ("type", kind), ("outcome", outcome(response))];
        counter!("eventfold_graphql_operations_total", &labels).increment(1);
        if kind != "subscription" {
            histogram!("eventfold_graphql_operation_duration_seconds", &labels[..2])
                .record(started.elapsed().as_secs_f64());
        }
    }
}

/// An operation type as a label: `query`, `mutation` or `subscription`.
pub(super) fn kind(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// `ok`, or the first error's code (one of the codes the API gives).
fn outcome(response: &Response) -> &'static str {
    let Some(error) = response.errors.first() else { return "ok" };
    let code = error.extensions.as_ref().and_then(|e| e.get("code"));
    let code = match code {
        Some(async_graphql::Value::String(code)) => code.as_str(),
        _ => return "error",
    };
    super::error::CODES.iter().find(|c| **c == code).copied().unwrap_or("error")
}

/// The label of an operation name: `anonymous`, the name itself (kept for
/// the life of the process, at most [`MAX_NAMES`] of them), or `other`.
fn name_label(name: Option<&str>) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let Some(name) = name else { return "anonymous" };
    let Ok(mut names) = NAMES.get_or_init(Mutex::default).lock() else { return "other" };
    if let Some(label) = names.get(name) {
        return label;
    }
    if names.len() >= MAX_NAMES {
        return "other";
    }
    // Leaked on purpose: a bounded set of names, each kept once.
    let label: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(name.to_owned(), label);
    label
}

/// Counts a WebSocket operation as running while it lives.
struct Active;

impl Active {
    fn new() -> Self {
        gauge!("eventfold_subscriptions_active").increment(1.0);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        gauge!("eventfold_subscriptions_active").decrement(1.0);
    }
}
