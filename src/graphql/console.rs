//! What the event console asks for: stream types and streams, an
//! aggregate's state at any version, retrying dead letters, and rebuilding
//! a projection with live progress. Clerks read; admins act.

use std::time::Duration;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use uuid::Uuid;

use super::pagination::{connection, id_cursor, page_size};
use super::{ApiError, caller, services};
use crate::service::{self, StreamFilter};

/// A stream type of the log, with how much it holds.
#[derive(SimpleObject)]
pub struct StreamType {
    pub stream_type: String,
    /// Streams of this type.
    pub streams: i64,
    /// Events of this type's streams.
    pub events: i64,
}

/// One stream of the log.
#[derive(SimpleObject)]
pub struct StreamInfo {
    pub stream_type: String,
    pub stream_id: Uuid,
    /// Its version: how many events it holds.
    pub version: i64,
}

/// An aggregate's state folded from the event store.
#[derive(SimpleObject)]
pub struct AggregateStateAt {
    /// The version folded to (the latest when none was asked for, or when
    /// the one asked for is past the stream's end).
    pub version: i64,
    /// The state as the domain serializes it.
    pub state: Json<serde_json::Value>,
}

/// What a retry of dead letters did.
#[derive(SimpleObject)]
pub struct RetryResult {
    /// Parked events applied (and no longer parked).
    pub applied: i64,
    /// Parked events that failed again and stay parked.
    pub failed: i64,
    /// Parked events not tried because an earlier one of their stream failed.
    pub waiting: i64,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "service::RebuildPhase")]
pub enum RebuildPhase {
    Running,
    Done,
    Failed,
}

/// A background rebuild started by this server.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct RebuildProgress {
    pub projection: String,
    pub phase: RebuildPhase,
    /// Events replayed so far, of `total`.
    pub applied: i64,
    pub total: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

impl From<service::RebuildProgress> for RebuildProgress {
    fn from(p: service::RebuildProgress) -> Self {
        RebuildProgress {
            projection: p.projection,
            phase: p.phase.into(),
            applied: p.applied as i64,
            total: p.total as i64,
            started_at: p.started_at,
            finished_at: p.finished_at,
            error: p.error,
        }
    }
}

#[derive(Default)]
pub struct ConsoleQuery;

#[Object]
impl ConsoleQuery {
    /// Every stream type in the log with its counts (staff).
    async fn stream_types(&self, ctx: &Context<'_>) -> Result<Vec<StreamType>> {
        let counts = services(ctx)?.stream_types(caller(ctx)?).await.map_err(ApiError::from)?;
        Ok(counts
            .into_iter()
            .map(|c| StreamType {
                stream_type: c.stream_type,
                streams: c.streams,
                events: c.events,
            })
            .collect())
    }

    /// Streams by id, optionally of one type, or the streams with one id
    /// (to find a stream by its id); cursors are stream ids (staff).
    async fn streams(
        &self,
        ctx: &Context<'_>,
        stream_type: Option<String>,
        stream_id: Option<Uuid>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, StreamInfo>> {
        let limit = page_size(first)?;
        let filter = StreamFilter { stream_type, stream_id, after: id_cursor(after.as_deref())? };
        let page =
            services(ctx)?.streams(caller(ctx)?, &filter, limit).await.map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |s| {
            let node = StreamInfo {
                stream_type: s.stream_type,
                stream_id: s.stream_id,
                version: s.version,
            };
            (s.stream_id.to_string(), node)
        }))
    }

    /// The aggregate's state after its events up to `version` (all when
    /// omitted), folded from the event store through the domain's own
    /// `apply`, upcasters included; `null` when the stream has no events
    /// (staff).
    async fn aggregate_state(
        &self,
        ctx: &Context<'_>,
        stream_type: String,
        stream_id: Uuid,
        version: Option<i64>,
    ) -> Result<Option<AggregateStateAt>> {
        let folded = services(ctx)?
            .aggregate_state(caller(ctx)?, &stream_type, stream_id, version)
            .await
            .map_err(ApiError::from)?;
        Ok(folded.map(|f| AggregateStateAt { version: f.version, state: Json(f.state) }))
    }

    /// The latest rebuild of projection `name` this server started, if any
    /// (staff).
    async fn rebuild_status(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<Option<RebuildProgress>> {
        let progress =
            services(ctx)?.rebuild_progress(caller(ctx)?, &name).map_err(ApiError::from)?;
        Ok(progress.map(RebuildProgress::from))
    }
}

#[derive(Default)]
pub struct ConsoleMutation;

#[Object]
impl ConsoleMutation {
    /// Applies the dead letters of `projection` again, oldest first, after
    /// their cause was fixed (admins).
    async fn retry_dead_letters(
        &self,
        ctx: &Context<'_>,
        projection: String,
    ) -> Result<RetryResult> {
        let report = services(ctx)?
            .retry_dead_letters_as(caller(ctx)?, &projection)
            .await
            .map_err(ApiError::from)?;
        Ok(RetryResult {
            applied: report.applied as i64,
            failed: report.failed as i64,
            waiting: report.waiting as i64,
        })
    }

    /// Starts rebuilding projection `name` from the event store in the
    /// background, swapping the fresh tables in when done; follow it with
    /// `rebuildProgress` or `rebuildStatus` (admins).
    async fn rebuild_projection(&self, ctx: &Context<'_>, name: String) -> Result<RebuildProgress> {
        let started = services(ctx)?.start_rebuild(caller(ctx)?, &name).map_err(ApiError::from)?;
        Ok(started.into())
    }
}

/// How often a progress subscription looks at its rebuild.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct ConsoleSubscription;

#[Subscription]
impl ConsoleSubscription {
    /// The progress of the latest rebuild of projection `name` this server
    /// started, each time it changes, ending once it is done or failed
    /// (staff).
    async fn rebuild_progress(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<impl Stream<Item = RebuildProgress>> {
        let services = services(ctx)?.clone();
        let caller = caller(ctx)?.clone();
        services.rebuild_progress(&caller, &name).map_err(ApiError::from)?;
        let state = (services, caller, name, None::<RebuildProgress>, false);
        Ok(futures::stream::unfold(state, |(services, caller, name, last, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let now = services.rebuild_progress(&caller, &name).ok().flatten();
                let now = now.map(RebuildProgress::from);
                if let Some(current) = now
                    && last.as_ref() != Some(&current)
                {
                    let ended = current.phase != RebuildPhase::Running;
                    return Some((current.clone(), (services, caller, name, Some(current), ended)));
                }
                tokio::time::sleep(PROGRESS_EVERY).await;
            }
        }))
    }
}
