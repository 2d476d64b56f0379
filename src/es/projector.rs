//! The projection contract. A projection folds events into read tables
//! inside a transaction of the read database that the runtime opens and
//! commits together with the projection's checkpoint.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait as _, DatabaseTransaction, DbBackend, Statement, Value};
use uuid::Uuid;

use super::changes::Change;
use super::envelope::RecordedEvent;

/// Why a projection could not apply an event. The text goes to logs and to
/// the dead-letter record, never to API clients.
///
/// The runtime retries what may pass ([`ProjectionError::Unavailable`], and
/// the database errors it classifies as transient: lost connections,
/// timeouts, deadlocks…) for as long as it lasts, and parks an event only
/// for what would fail again on the same input.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read database failed; the runtime decides whether it may pass.
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// The event cannot be applied as it is (unreadable, out of order,
    /// against an invariant of the read model): retrying fails again.
    #[error("{0}")]
    Rejected(String),
    /// Something the projection depends on is unavailable for now (say,
    /// the write side a process manager commands); worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl ProjectionError {
    /// A rejection of the event, see [`ProjectionError::Rejected`].
    pub fn new(err: impl std::fmt::Display) -> Self {
        ProjectionError::Rejected(err.to_string())
    }

    /// `event` cannot be applied because its stream's row is at
    /// `row_version`, not at the version just before it: an earlier event
    /// is missing. Reported, never papered over.
    pub fn version_gap(event: &RecordedEvent, row_version: i64) -> Self {
        ProjectionError::Rejected(format!(
            "{} v{} of {}/{} does not follow the read model's v{row_version}: an earlier event is missing",
            event.event_type, event.version, event.stream.stream_type, event.stream.stream_id
        ))
    }
}

impl From<super::upcast::DecodeError> for ProjectionError {
    fn from(err: super::upcast::DecodeError) -> Self {
        ProjectionError::new(err)
    }
}

/// Whether `event` is the next one for a read-model row at `row_version`:
/// `Ok(true)` to apply it, `Ok(false)` when the row already reflects it (a
/// replay), and a [`ProjectionError::version_gap`] when events are missing
/// in between.
pub fn follows(row_version: i64, event: &RecordedEvent) -> Result<bool, ProjectionError> {
    match event.version - row_version {
        1 => Ok(true),
        ..=0 => Ok(false),
        _ => Err(ProjectionError::version_gap(event, row_version)),
    }
}

#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and the name shown by `projections`.
    fn name(&self) -> &'static str;

    /// The stream types whose events this projection reads; `None` means
    /// all. A transport may skip other events without a transaction.
    fn stream_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The read tables this projection owns alone: a rebuild replaces
    /// exactly these. Empty means the projection cannot be rebuilt.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies one event and returns the read-model rows it changed. Events
    /// a projection does not care about return an empty list.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &RecordedEvent,
    ) -> Result<Vec<Change>, ProjectionError>;

    /// Applies events in order, as `apply` would one by one. Projections
    /// override it to read and write each row once per batch.
    async fn apply_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[&RecordedEvent],
    ) -> Result<Vec<Change>, ProjectionError> {
        let mut changes = Vec::new();
        for event in events {
            changes.extend(self.apply(txn, event).await?);
        }
        Ok(changes)
    }

    /// On PostgreSQL, what of `events` (a batch, in order) this projection
    /// writes in one statement; `None` when it writes nothing so. The
    /// runtime runs it first (in one round trip with the other projections'
    /// statements of the batch and the checkpoints'), then
    /// [`Projection::apply_batch`] with the events of every stream the
    /// statement did not apply ([`OneStatement::left`]). So the
    /// statement must write a stream's rows only where they are as it
    /// expects, and leave a stream it does not apply as the fold can take
    /// it up (see [`apply_events`]).
    fn one_statement(
        &self,
        _events: &[&RecordedEvent],
    ) -> Result<Option<OneStatement>, ProjectionError> {
        Ok(None)
    }
}

/// What one statement's parameters should stay under, in bytes. A larger
/// message is written in more than one piece once it exceeds the socket's
/// send buffer (16 KiB to start with, on Linux), and on loopback the server
/// acknowledges the first piece only after its delayed-ACK timer (40 ms):
/// the driver (sqlx 0.9) neither sets `TCP_NODELAY` nor lets the socket be
/// reached to size its buffer. Projections write large batches in chunks
/// of at most this much, and the event writer cuts its groups to fit it.
pub const ROUND_TRIP_BYTES: usize = 12 * 1024;

/// Items of `sizes` (bytes each), in order, cut into runs that fit
/// [`ROUND_TRIP_BYTES`] together (an item larger than that alone): the
/// index range of each run.
pub fn round_trips(sizes: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut sum, mut end) = (0, 0, 0);
    for (i, size) in sizes.into_iter().enumerate() {
        if i > start && sum + size > ROUND_TRIP_BYTES {
            runs.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += size;
        end = i + 1;
    }
    if start < end {
        runs.push(start..end);
    }
    runs
}

/// A projection's writes of a batch as one data-modifying statement (see
/// [`Projection::one_statement`]).
#[derive(Debug)]
pub struct OneStatement {
    /// An `INSERT` or `UPDATE` with the parameters `$1`…`$n` (`values`),
    /// `RETURNING` one `uuid` column named `key`: the stream of each row it
    /// wrote.
    pub sql: &'static str,
    pub values: Vec<Value>,
    /// About how many bytes `values` take on the wire: the runtime keeps
    /// what one round trip carries under a bound.
    pub bytes: usize,
    /// The streams whose events it applies, each when it writes all of
    /// that stream's rows.
    pub covers: Vec<Cover>,
}

/// One stream a [`OneStatement`] applies.
#[derive(Debug)]
pub struct Cover {
    pub stream_id: Uuid,
    /// The rows it writes for the stream when it applies its events.
    pub rows: usize,
    /// The change announced when it does.
    pub change: Option<Change>,
}

impl OneStatement {
    /// Given the `key` of every row the statement returned, the events of
    /// `events` (those it was made for) it did not apply, and the changes
    /// of those it did.
    pub fn left<'a>(
        &self,
        events: &[&'a RecordedEvent],
        keys: &[Uuid],
    ) -> (Vec<&'a RecordedEvent>, Vec<Change>) {
        let mut written: HashMap<Uuid, usize> = HashMap::with_capacity(self.covers.len());
        for key in keys {
            *written.entry(*key).or_default() += 1;
        }
        let mut applied = HashSet::with_capacity(self.covers.len());
        let mut changes = Vec::new();
        for cover in &self.covers {
            if written.get(&cover.stream_id) == Some(&cover.rows) {
                applied.insert(cover.stream_id);
                changes.extend(cover.change.clone());
            }
        }
        let left = events.iter().copied().filter(|e| !applied.contains(&e.stream.stream_id));
        (left.collect(), changes)
    }

    /// A statement whose only parameter, `$1`, is `rows` as a JSON array
    /// (`jsonb`; PostgreSQL parses it once, however often the statement
    /// reads it).
    pub fn of_json_rows(
        sql: &'static str,
        rows: Vec<serde_json::Value>,
        covers: Vec<Cover>,
    ) -> Self {
        let rows = serde_json::Value::Array(rows);
        let mut bytes = Counted(0);
        // Writing to a counter cannot fail, nor can serializing a Value.
        let _ = serde_json::to_writer(&mut bytes, &rows);
        OneStatement { sql, bytes: bytes.0 + 1, values: vec![rows.into()], covers }
    }

    /// The statement as it runs alone.
    pub fn statement(&self) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, self.sql, self.values.clone())
    }
}

/// Counts the bytes written to it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `projection`'s one statement for `events`, when it has one that fits
/// one round trip ([`ROUND_TRIP_BYTES`]; a larger one is left to the fold).
pub fn one_statement_within<P: Projection + ?Sized>(
    projection: &P,
    events: &[&RecordedEvent],
) -> Result<Option<OneStatement>, ProjectionError> {
    Ok(projection.one_statement(events)?.filter(|o| o.bytes <= ROUND_TRIP_BYTES))
}

/// Applies `events` to `projection` as the runtime does, in the caller's
/// transaction: on PostgreSQL its one statement (if it has one for them,
/// within [`ROUND_TRIP_BYTES`]), then the fold of what that did not apply.
pub async fn apply_events<P: Projection + ?Sized>(
    projection: &P,
    txn: &DatabaseTransaction,
    events: &[&RecordedEvent],
) -> Result<Vec<Change>, ProjectionError> {
    let one = match txn.get_database_backend() {
        DbBackend::Postgres => one_statement_within(projection, events)?,
        _ => None,
    };
    let Some(one) = one else {
        return projection.apply_batch(txn, events).await;
    };
    let mut keys = Vec::new();
    for row in txn.query_all_raw(one.statement()).await? {
        keys.push(row.try_get::<Uuid>("", "key")?);
    }
    let (left, mut changes) = one.left(events, &keys);
    if !left.is_empty() {
        changes.extend(projection.apply_batch(txn, &left).await?);
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::{ROUND_TRIP_BYTES, round_trips};

    #[test]
    fn round_trips_fill_up_in_order_and_a_large_item_goes_alone() {
        let half = ROUND_TRIP_BYTES / 2;
        assert_eq!(
            round_trips([half, half, 1, ROUND_TRIP_BYTES * 2, 1]),
            vec![0..2, 2..3, 3..4, 4..5]
        );
        assert_eq!(round_trips([1, 2, 3]), vec![0..3]);
        assert_eq!(round_trips(Vec::<usize>::new()), Vec::<std::ops::Range<usize>>::new());
    }
}
