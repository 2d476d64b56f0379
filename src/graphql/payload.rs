//! The payload every mutation returns.

use async_graphql::SimpleObject;
use uuid::Uuid;

use super::ApiError;
use crate::service::{CommandOptions, Outcome, ServiceError};

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

/// The options every mutation input carries.
pub fn options(command_id: Option<Uuid>, expected_version: Option<i64>) -> CommandOptions {
    CommandOptions { command_id, expected_version }
}
