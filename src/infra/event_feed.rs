//! The event log as a feed for outside consumers: pages of the `events`
//! table in commit order, and a follower that reads them one page at a
//! time as its consumer pulls.
//!
//! Commit order is `(tx_id, position)`, as the relay reads it: on
//! PostgreSQL transactions that insert events commit one after another in
//! that order (see the event store module), so a page of committed rows
//! never passes an event that could still commit before one it returned;
//! on SQLite (one writer, tx_id 0) the position alone. This is the feed's
//! own query, with its filters, so the relay's may change without changing
//! the feed.
//!
//! A follower has no catch-up/live seam: it always reads the store after
//! the last position it handed out. Between reads it sleeps until it is
//! woken — by a commit of this process, by PostgreSQL's `NOTIFY` on insert
//! (so commits of every other process wake it too), or by
//! [`FeedSettings::poll`] as a bound — and it reads the next page only when
//! its consumer has taken the previous one, so a consumer that stops
//! reading holds at most one page in this process.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use entity::events;
use futures::Stream;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::watch;

use super::event_store::{read_committed_query, to_recorded};
use super::redis::relay::listen_for_commits;
use crate::es::envelope::{Position, RecordedEvent};
use crate::es::store::StoreError;

/// Which events a reader wants; an empty list lets every value through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    pub stream_types: Vec<String>,
    pub event_types: Vec<String>,
}

/// How a follower reads.
#[derive(Debug, Clone, Copy)]
pub struct FeedSettings {
    /// Events read at once (and the most one follower holds in memory).
    pub page: u64,
    /// The longest a follower sleeps without a wake-up before it looks
    /// again (covers commits no notification announced).
    pub poll: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings { page: 200, poll: Duration::from_millis(250) }
    }
}

pub struct EventFeed {
    db: DatabaseConnection,
    /// Where to LISTEN for inserts of other processes (PostgreSQL).
    listen_url: Option<String>,
    /// Changes after each commit through this process's store.
    commits: watch::Receiver<u64>,
    /// Changes on every `NOTIFY` of the events trigger; started with the
    /// first follower.
    notified: OnceLock<watch::Receiver<u64>>,
    settings: FeedSettings,
}

impl EventFeed {
    /// A feed over the event store `db`; `database_url` is `db`'s URL (to
    /// LISTEN on, when it is PostgreSQL).
    pub fn new(
        db: DatabaseConnection,
        database_url: &str,
        commits: watch::Receiver<u64>,
        settings: FeedSettings,
    ) -> Self {
        let listen_url = super::db::is_postgres(&db).then(|| database_url.to_owned());
        EventFeed { db, listen_url, commits, notified: OnceLock::new(), settings }
    }

    /// Up to `limit` events after `after` in commit order that pass `filter`.
    pub async fn page(
        &self,
        after: Position,
        limit: u64,
        filter: &FeedFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // The event store's own commit-order read (an index condition on
        // `(tx_id, position)`), narrowed by the filter.
        let mut query = read_committed_query(after, limit);
        if !filter.stream_types.is_empty() {
            query = query.filter(events::Column::StreamType.is_in(filter.stream_types.clone()));
        }
        if !filter.event_types.is_empty() {
            query = query.filter(events::Column::EventType.is_in(filter.event_types.clone()));
        }
        let rows = query.all(&self.db).await.map_err(StoreError::backend)?;
        Ok(rows.into_iter().map(to_recorded).collect())
    }

    /// The position of the newest committed event: a follower
    /// that starts there sees only what commits from now on.
    pub async fn head(&self) -> Result<Position, StoreError> {
        let row = events::Entity::find()
            .order_by_desc(events::Column::TxId)
            .order_by_desc(events::Column::Position)
            .one(&self.db)
            .await
            .map_err(StoreError::backend)?;
        Ok(row.map_or(Position::START, |m| Position { tx: m.tx_id, pos: m.position }))
    }

    /// Every event after `after` that passes `filter`, in commit order,
    /// without end. A read that fails is retried after a pause (and
    /// logged): the follower never skips and never ends on its own.
    pub fn follow(
        self: &Arc<Self>,
        after: Position,
        filter: FeedFilter,
    ) -> impl Stream<Item = RecordedEvent> + Send + 'static {
        let follower = Follower {
            feed: self.clone(),
            after,
            filter,
            buffered: VecDeque::new(),
            commits: self.commits.clone(),
            notified: self.notifications(),
        };
        futures::stream::unfold(follower, |mut f| async move {
            let event = f.next().await;
            Some((event, f))
        })
    }

    /// Notifications of inserts by any process (PostgreSQL), from one
    /// listener per feed, started on first use.
    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        let url = self.listen_url.clone()?;
        Some(self.notified.get_or_init(|| spawn_listener(url)).clone())
    }
}

struct Follower {
    feed: Arc<EventFeed>,
    /// The position of the last event handed out (or read into the buffer).
    after: Position,
    filter: FeedFilter,
    buffered: VecDeque<RecordedEvent>,
    commits: watch::Receiver<u64>,
    notified: Option<watch::Receiver<u64>>,
}

impl Follower {
    async fn next(&mut self) -> RecordedEvent {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return event;
            }
            // Mark what was seen before reading, so a commit during the
            // read wakes the next wait at once.
            self.commits.borrow_and_update();
            if let Some(n) = &mut self.notified {
                n.borrow_and_update();
            }
            let settings = self.feed.settings;
            match self.feed.page(self.after, settings.page, &self.filter).await {
                Ok(page) if !page.is_empty() => {
                    self.after = page.last().map_or(self.after, |e| e.position);
                    self.buffered.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event feed read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            tokio::select! {
                () = changed(Some(&mut self.commits)) => {}
                () = changed(self.notified.as_mut()) => {}
                () = tokio::time::sleep(settings.poll) => {}
            }
        }
    }
}

/// Resolves when `signal` changes; never when there is none (or its
/// sender is gone: then only polling is left).
async fn changed(signal: Option<&mut watch::Receiver<u64>>) {
    if let Some(signal) = signal
        && signal.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// LISTENs for the events trigger's notifications until the feed is
/// dropped (reconnecting after a failure; followers poll meanwhile).
fn spawn_listener(url: String) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move { listen_for_commits(&url, &tx, "event feed").await });
    rx
}
