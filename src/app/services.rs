//! The services behind every resolver: commands, reads, changes.

use std::future::Future;
use std::sync::Arc;

use entity::dead_letters;
use futures::Stream;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::es::aggregate::{Aggregate, Rejection};
use crate::es::changes::ChangeBus;
use crate::es::command::{CommandContext, CommandExecutor};
use crate::es::envelope::Position;
use crate::es::store::EventStore;
use crate::graphql::{ApiError, ops::MutationPayload};
use crate::infra::projector_runtime::ProjectionMonitor;
use crate::infra::read_your_writes::ReadYourWrites;

/// Everything a resolver needs, shared behind an `Arc`.
pub struct Services {
    pub commands: Arc<CommandExecutor>,
    pub store: Arc<dyn EventStore>,
    pub read_db: DatabaseConnection,
    pub changes: Arc<dyn ChangeBus>,
    pub monitor: Arc<ProjectionMonitor>,
    pub read_your_writes: ReadYourWrites,
    pub projection_names: Vec<&'static str>,
    pub invoice_base_url: String,
}

/// Lag is counted up to this many events.
const LAG_CAP: u64 = 1_000_000;

/// How far one projection is, for the API, the metrics and the CLI.
pub struct ProjectionReport {
    pub name: &'static str,
    pub checkpoint: Position,
    /// Committed events not yet applied, up to [`LAG_CAP`].
    pub lag: u64,
    pub dead_letters: Vec<dead_letters::Model>,
}

/// The context of a client command, with `expectedVersion` checked.
pub fn command_context(
    command_id: Option<Uuid>,
    expected_version: Option<i64>,
) -> Result<CommandContext, ApiError> {
    if expected_version.is_some_and(|v| v < 0) {
        return Err(ApiError::validation("expectedVersion must not be negative"));
    }
    Ok(CommandContext { command_id, expected_version, ..Default::default() })
}

/// Namespace for ids derived from client command ids.
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7466_6f6c_6400_0000_0000_0001);

impl Services {
    /// A new aggregate id: derived from the command id when there is one, so
    /// a retried "create" targets the same stream and is deduplicated.
    pub fn new_stream_id(&self, command_id: Option<Uuid>) -> Uuid {
        match command_id {
            Some(c) => Uuid::new_v5(&COMMAND_ID_NAMESPACE, c.as_bytes()),
            None => Uuid::now_v7(),
        }
    }

    pub async fn execute<A: Aggregate>(
        &self,
        id: Uuid,
        command: A::Command,
        command_id: Option<Uuid>,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<MutationPayload>
    where
        A::Error: Rejection,
    {
        let ctx = command_context(command_id, expected_version)?;
        let outcome =
            self.commands.execute::<A>(id, &command, &ctx).await.map_err(ApiError::from)?;
        Ok(outcome.into())
    }

    /// Progress of every projection: checkpoint, lag and parked events.
    pub async fn projection_reports(&self) -> Result<Vec<ProjectionReport>, ApiError> {
        let mut reports = Vec::with_capacity(self.projection_names.len());
        for name in &self.projection_names {
            let checkpoint = self.read_your_writes.checkpoint(name).await?;
            let lag = self.store.count_after(checkpoint, LAG_CAP).await?;
            let dead_letters = dead_letters::Entity::find()
                .filter(dead_letters::Column::Projection.eq(*name))
                .order_by_asc(dead_letters::Column::Position)
                .all(&self.read_db)
                .await?;
            reports.push(ProjectionReport { name, checkpoint, lag, dead_letters });
        }
        Ok(reports)
    }

    /// Waits until `projections` reached `min_position` (if given).
    pub async fn wait_for(
        &self,
        projections: &[&str],
        min_position: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(raw) = min_position else { return Ok(()) };
        let position: Position = raw.parse().map_err(|e: crate::es::envelope::BadPosition| {
            ApiError::validation(format!("minPosition: {e}"))
        })?;
        Ok(self.read_your_writes.wait(projections, position).await?)
    }

    /// A stream of freshly loaded rows of `model`, one per announced change
    /// (optionally of one id). If the subscriber falls behind, it skips to
    /// the current row instead of replaying every missed change.
    pub fn changed_rows<T, F, Fut>(
        self: Arc<Self>,
        model: &'static str,
        id: Option<Uuid>,
        load: F,
    ) -> impl Stream<Item = T> + use<T, F, Fut>
    where
        T: Send + 'static,
        F: Fn(Arc<Services>, Uuid) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<T>> + Send,
    {
        let receiver = self.changes.subscribe();
        futures::stream::unfold(
            (receiver, self, load),
            move |(mut rx, services, load)| async move {
                loop {
                    let wanted = match rx.recv().await {
                        Ok(change)
                            if change.model == model && id.is_none_or(|i| i == change.id) =>
                        {
                            change.id
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => match id {
                            Some(id) => id,
                            None => continue,
                        },
                        Err(RecvError::Closed) => return None,
                    };
                    if let Some(row) = load(services.clone(), wanted).await {
                        return Some((row, (rx, services, load)));
                    }
                }
            },
        )
    }
}
