//! The one place where failures become GraphQL errors with a stable
//! `extensions.code`. Internal details are logged, never returned.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe,
};
use async_graphql::{ErrorExtensions, Response, ServerError};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::es::aggregate::{Rejection, RejectionKind};
use crate::es::command::CommandError;
use crate::es::store::StoreError;
use crate::infra::read_your_writes::WaitError;

/// A client-facing error. Deliberately not `Display`, so that converting it
/// always goes through [`From<ApiError> for async_graphql::Error`].
#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("VALIDATION_ERROR", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("NOT_FOUND", message)
    }

    /// Logs the cause and returns an error that reveals nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let reference = uuid::Uuid::new_v4();
        tracing::error!(%reference, error = %cause, "internal error");
        Self::new("INTERNAL", format!("internal error (reference {reference})"))
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        async_graphql::Error::new(err.message).extend_with(|_, ext| ext.set("code", err.code))
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::internal(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { .. } => ApiError::new("CONCURRENCY_CONFLICT", err.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<WaitError> for ApiError {
    fn from(err: WaitError) -> Self {
        match err {
            WaitError::Timeout(_) => ApiError::new("TIMEOUT", err.to_string()),
            WaitError::Db(e) => ApiError::internal(e),
        }
    }
}

pub fn rejection_code(kind: RejectionKind) -> &'static str {
    match kind {
        RejectionKind::Validation => "VALIDATION_ERROR",
        RejectionKind::InvalidState => "INVALID_STATE",
        RejectionKind::NotFound => "NOT_FOUND",
        RejectionKind::InsufficientFunds => "INSUFFICIENT_FUNDS",
        RejectionKind::InsufficientStock => "INSUFFICIENT_STOCK",
    }
}

impl<E: Rejection + std::fmt::Display> From<CommandError<E>> for ApiError {
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Rejected(e) => ApiError::new(rejection_code(e.kind()), e.to_string()),
            CommandError::Conflict { .. } => ApiError::new("CONCURRENCY_CONFLICT", err.to_string()),
            CommandError::CommandIdReused(_) => ApiError::validation(err.to_string()),
            CommandError::Store(e) => e.into(),
        }
    }
}

/// Errors raised by the GraphQL engine itself (syntax, unknown fields,
/// values that fail to parse as a scalar) carry no code; they are all
/// problems of the request, so they get `VALIDATION_ERROR`.
pub struct DefaultErrorCode;

impl ExtensionFactory for DefaultErrorCode {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DefaultErrorCodeExtension)
    }
}

struct DefaultErrorCodeExtension;

fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        add_code(error);
    }
    response
}

fn add_code(error: &mut ServerError) {
    let has_code = error.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
    if !has_code {
        error.extensions.get_or_insert_with(Default::default).set("code", "VALIDATION_ERROR");
    }
}

#[async_trait::async_trait]
impl Extension for DefaultErrorCodeExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }
}
