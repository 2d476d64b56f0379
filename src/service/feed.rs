//! The event log as a feed (clerks and admins): pages in commit order, and
//! a follower that catches up and then goes on live, for outside consumers.

use futures::{Stream, StreamExt};

use super::{Caller, ServiceError, Services};
use crate::es::envelope::Position;
use crate::infra::event_feed::FeedFilter;
use crate::read_models::Page;
use crate::read_models::audit_log::query::LoggedEvent;

impl Services {
    /// Up to `limit` events after `after` (from the start when `None`) in
    /// commit order, filtered.
    pub async fn events_page(
        &self,
        caller: &Caller,
        after: Option<Position>,
        limit: u64,
        filter: &FeedFilter,
    ) -> Result<Page<LoggedEvent>, ServiceError> {
        caller.require_staff()?;
        let fetched = self.feed.page(after.unwrap_or(Position::START), limit + 1, filter).await?;
        Ok(Page::of(fetched, limit).map(LoggedEvent::from))
    }

    /// Every event after `after` in commit order, filtered, without end:
    /// first those already stored, then each as it commits. `None` starts
    /// at the newest committed event (only what commits from now on).
    pub async fn follow_events(
        &self,
        caller: &Caller,
        after: Option<Position>,
        filter: FeedFilter,
    ) -> Result<impl Stream<Item = LoggedEvent> + Send + 'static, ServiceError> {
        caller.require_staff()?;
        let after = match after {
            Some(after) => after,
            None => self.feed.head().await?,
        };
        Ok(self.feed.follow(after, filter).map(LoggedEvent::from))
    }
}
