//! Operational queries: projections with their progress and parked events.

use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ApiError, caller, services};

#[derive(SimpleObject)]
pub struct DeadLetter {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub event_type: String,
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct ProjectionInfo {
    pub name: String,
    /// The checkpoint: position of the last event applied.
    pub position: String,
    /// Committed events not yet applied (counted up to 1,000,000).
    pub lag: i64,
    /// RUNNING, FAILING, STOPPED, or REMOTE when it runs in another process.
    pub status: String,
    pub last_error: Option<String>,
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// Every projection with its progress and parked events.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionInfo>> {
        let reports = services(ctx)?.projections(caller(ctx)?).await.map_err(ApiError::from)?;
        let out = reports
            .into_iter()
            .map(|r| ProjectionInfo {
                name: r.name.to_owned(),
                position: r.checkpoint.to_string(),
                lag: r.lag as i64,
                status: r.state.as_ref().map_or("REMOTE", |s| s.status.as_str()).to_owned(),
                last_error: r.state.and_then(|s| s.last_error),
                dead_letters: r
                    .dead_letters
                    .into_iter()
                    .map(|d| DeadLetter {
                        position: d.position,
                        event_id: d.event_id,
                        stream_type: d.stream_type,
                        stream_id: d.stream_id,
                        event_type: d.event_type,
                        error: d.error,
                        attempts: d.attempts,
                        parked_at: d.parked_at,
                    })
                    .collect(),
            })
            .collect();
        Ok(out)
    }
}
