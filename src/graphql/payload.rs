//! The payload every mutation returns.

use async_graphql::{Context, SimpleObject};
use uuid::Uuid;

use super::ApiError;
use crate::service::{CommandOptions, CorrelationId, Outcome, ServiceError};

/// What every mutation returns.
#[derive(SimpleObject)]
pub struct MutationPayload {
    /// The aggregate the command acted on.
    pub id: Uuid,
    /// The stream's version after the command.
    pub version: i64,
    /// Global position of the command's last event; pass it as
    /// `minPosition` to read your own write.
    pub position: String,
}

impl From<Outcome> for MutationPayload {
    fn from(o: Outcome) -> Self {
        MutationPayload { id: o.id, version: o.version, position: o.position.to_string() }
    }
}

/// A command's result as the mutation's answer.
pub fn payload(result: Result<Outcome, ServiceError>) -> async_graphql::Result<MutationPayload> {
    result.map(MutationPayload::from).map_err(|e| ApiError::from(e).into())
}

/// The options every mutation input carries, with the request's
/// correlation id (which the transport put in the request's data).
pub fn options(
    ctx: &Context<'_>,
    command_id: Option<Uuid>,
    expected_version: Option<i64>,
) -> CommandOptions {
    let correlation_id = ctx.data_opt::<CorrelationId>().cloned();
    CommandOptions { command_id, expected_version, correlation_id }
}
