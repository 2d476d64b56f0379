//! The one place where failures become GraphQL errors with a stable
//! `extensions.code`. Internal details are logged, never returned.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe,
};
use async_graphql::{ErrorExtensions, Response, ServerError};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::es::aggregate::RejectionKind;
use crate::service::ServiceError;

/// Every `extensions.code` the API gives: what clients match on, and the
/// outcomes the GraphQL metrics count (any other code would count as
/// `error`). An [`ApiError`] with a code missing here fails in debug builds.
pub const CODES: &[&str] = &[
    "VALIDATION_ERROR",
    "NOT_FOUND",
    "CONCURRENCY_CONFLICT",
    "INSUFFICIENT_FUNDS",
    "INSUFFICIENT_STOCK",
    "INVALID_STATE",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "RATE_LIMITED",
    "TIMEOUT",
    "INTERNAL",
];

/// A client-facing error. Deliberately not `Display`, so that converting it
/// always goes through [`From<ApiError> for async_graphql::Error`].
#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(CODES.contains(&code), "{code} is not in graphql::error::CODES");
        ApiError { code, message: message.into() }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("VALIDATION_ERROR", message)
    }

    /// Logs the cause and returns an error that reveals nothing about it.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
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

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let code = match &err {
            ServiceError::Invalid(_) | ServiceError::CommandIdReused(_) => "VALIDATION_ERROR",
            ServiceError::Rejected { kind, .. } => rejection_code(*kind),
            ServiceError::NotFound(_) => "NOT_FOUND",
            ServiceError::Unauthenticated(_) => "UNAUTHENTICATED",
            ServiceError::Forbidden(_) => "FORBIDDEN",
            ServiceError::Conflict { .. } | ServiceError::AlreadyRunning(_) => {
                "CONCURRENCY_CONFLICT"
            }
            ServiceError::Timeout(_) => "TIMEOUT",
            ServiceError::Store(_) | ServiceError::Read(_) | ServiceError::Internal(_) => {
                return ApiError::internal(&err);
            }
        };
        ApiError::new(code, err.to_string())
    }
}

fn rejection_code(kind: RejectionKind) -> &'static str {
    match kind {
        RejectionKind::Validation => "VALIDATION_ERROR",
        RejectionKind::InvalidState => "INVALID_STATE",
        RejectionKind::NotFound => "NOT_FOUND",
        RejectionKind::InsufficientFunds => "INSUFFICIENT_FUNDS",
        RejectionKind::InsufficientStock => "INSUFFICIENT_STOCK",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_a_service_error_or_a_rejection_gets_is_a_listed_code() {
        let errors = [
            ServiceError::Invalid("x".into()),
            ServiceError::Unauthenticated("x".into()),
            ServiceError::Forbidden("x".into()),
            ServiceError::NotFound("x".into()),
            ServiceError::Conflict { expected: 1, actual: 2 },
            ServiceError::CommandIdReused(uuid::Uuid::nil()),
            ServiceError::AlreadyRunning("x".into()),
            ServiceError::Timeout(std::time::Duration::from_secs(1)),
        ];
        for err in errors {
            let code = ApiError::from(err).code;
            assert!(CODES.contains(&code), "{code}");
        }
        for kind in [
            RejectionKind::Validation,
            RejectionKind::InvalidState,
            RejectionKind::NotFound,
            RejectionKind::InsufficientFunds,
            RejectionKind::InsufficientStock,
        ] {
            assert!(CODES.contains(&rejection_code(kind)), "{kind:?}");
        }
        assert!(CODES.contains(&"INTERNAL"));
        assert!(CODES.contains(&"VALIDATION_ERROR"), "the engine's own errors");
    }
}
