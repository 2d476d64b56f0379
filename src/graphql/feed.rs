//! The event log as a feed (clerks and admins): `events` pages it in commit
//! order; the `events` subscription catches up from a position and then
//! follows live. Cursors and positions are the opaque `position` strings;
//! `"0"` (or `"0.0"`) is the start of the log.

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result, Subscription};
use futures::{Stream, StreamExt};

use super::audit::AuditEvent;
use super::pagination::{bad_cursor, connection, page_size};
use super::{ApiError, caller, services};
use crate::service::{FeedFilter, Position};

/// A position from a client (a cursor or an `after`): `"0"` is the start
/// of the log.
pub(super) fn position(after: Option<&str>) -> Result<Option<Position>, ApiError> {
    match after {
        None => Ok(None),
        Some("0") => Ok(Some(Position::START)),
        Some(p) => p.parse().map(Some).map_err(|_| bad_cursor()),
    }
}

fn filter(stream_types: Option<Vec<String>>, event_types: Option<Vec<String>>) -> FeedFilter {
    FeedFilter {
        stream_types: stream_types.unwrap_or_default(),
        event_types: event_types.unwrap_or_default(),
    }
}

#[derive(Default)]
pub struct FeedQuery;

#[Object]
impl FeedQuery {
    /// The global event log in commit order (the order the relay publishes
    /// it), from the start or after the cursor `after`; only events of the
    /// given stream and event types when those are given. An event appears
    /// once its transaction and every earlier one have committed, so a
    /// reader that pages on never misses one. Clerks and admins.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        stream_types: Option<Vec<String>>,
        event_types: Option<Vec<String>>,
    ) -> Result<Connection<String, AuditEvent>> {
        let limit = page_size(first)?;
        let from = position(after.as_deref())?;
        let page = services(ctx)?
            .events_page(caller(ctx)?, from, limit, &filter(stream_types, event_types))
            .await
            .map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |e| (e.position.to_string(), AuditEvent::from(e))))
    }
}

#[derive(Default)]
pub struct FeedSubscription;

#[Subscription]
impl FeedSubscription {
    /// The global event log in commit order, without end: first the events
    /// stored after `after` (`"0"`: from the start), then each new one as it
    /// commits, with no gap and no repeat between the two. Without `after`,
    /// only events committed from now on. To resume after a disconnection,
    /// pass the `position` of the last event received. A consumer that
    /// stops reading is not read ahead of: the server holds at most one
    /// page for it. Clerks and admins.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        stream_types: Option<Vec<String>>,
        event_types: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = AuditEvent>> {
        let from = position(after.as_deref())?;
        let events = services(ctx)?
            .follow_events(caller(ctx)?, from, filter(stream_types, event_types))
            .await
            .map_err(ApiError::from)?;
        Ok(events.map(AuditEvent::from))
    }
}
