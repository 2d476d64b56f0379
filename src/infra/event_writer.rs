//! The write path of the SeaORM event store, with group commit.
//!
//! Concurrent appends are queued; a few writer tasks each take everything
//! queued (one append per stream at a time) and commit it in ONE
//! transaction: one query reads the current version of every stream
//! involved, appends whose expectations fail get their conflict, the rest
//! are inserted with one multi-row INSERT. If the shared transaction fails
//! (a race with another process, a duplicate command id), each append is
//! retried alone so one cannot fail another. Each transaction first locks
//! its streams, those it writes and those it only checks (see
//! [`super::append_locks`]), then checks the expectations under the locks,
//! before the first write. Its first write is the events INSERT, where the
//! commit-order lock is taken (a trigger; see the event store module): the
//! transaction gets its id under that lock, and holds it only for the
//! INSERT, the command records and the COMMIT.
//!
//! On PostgreSQL a group that writes every stream it names and records no
//! command (no client `commandId`) needs no transaction block: the locks,
//! the version check and the INSERT are one statement ([`APPEND_PG`]), one
//! round trip where the transaction takes four. The steps and their order
//! are the same.
//!
//! A group's statement carries at most [`ROUND_TRIP_BYTES`](crate::es::projector::ROUND_TRIP_BYTES) of parameters:
//! a larger group is cut into several, committed one after another (an
//! append larger than that goes alone). Each append's rows are serialized
//! by its caller, which is how their size is known before a group forms.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use chrono::Utc;
use entity::{command_log, events};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait as _, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect, SqlErr, Statement,
};
use serde_json::Value as Json;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tracing::Instrument as _;
use uuid::Uuid;

use super::append_locks::{begin_append, lock_set, lock_streams};
use super::supervisor::{Supervisor, TaskBoard};
use super::trace_context;
use crate::es::envelope::{EventMetadata, Position, StreamKey};
use crate::es::projector::round_trips;
use crate::es::store::{BatchedCommand, CommandRecord, Outcome, StoreError, StreamAppend};

/// Most appends committed together.
const MAX_GROUP: usize = 128;

/// An append's outcomes and how many appends shared its transaction.
type Reply = (AppendResult, usize);

/// What one append of a group got.
type AppendResult = Result<Vec<Outcome>, StoreError>;

/// One queued append: its streams, and the commands whose events it
/// carries (in order, over the first stream's events; usually one).
struct Pending {
    streams: Vec<StreamAppend>,
    commands: Vec<BatchedCommand>,
    /// Its event rows as PostgreSQL's inserts take them: JSON objects,
    /// comma-separated, each tagged with `tag` (empty on other databases).
    /// Serialized by the caller, off the writer task.
    rows: String,
    /// Tells its rows and its expectations apart from the rest of a group.
    tag: u64,
    reply: oneshot::Sender<Reply>,
}

impl Pending {
    /// About how many bytes of parameters it adds to a group's statement:
    /// its rows, and each stream's key, lock and expectation.
    fn bytes(&self) -> usize {
        self.rows.len() + 128 * self.streams.len()
    }
}

pub(crate) struct Writer {
    db: DatabaseConnection,
    committed: Arc<watch::Sender<u64>>,
    queue: mpsc::UnboundedSender<Pending>,
    /// The next [`Pending::tag`].
    tags: AtomicU64,
    /// The writer tasks, as their supervisor reports them.
    tasks: Arc<TaskBoard>,
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>;

impl Writer {
    /// Starts `writers` writer tasks on `db`, each supervised: a task that
    /// panics is restarted (the appends of the group it was committing get
    /// "event writer stopped"; the queue is kept).
    pub(crate) fn start(
        db: DatabaseConnection,
        committed: Arc<watch::Sender<u64>>,
        writers: usize,
    ) -> Arc<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let tasks = Arc::new(TaskBoard::default());
        let writer = Arc::new(Writer {
            db,
            committed,
            queue,
            tags: AtomicU64::new(0),
            tasks: tasks.clone(),
        });
        let receiver: Queue = Arc::new(Mutex::new(receiver));
        let supervisor = Supervisor::without_shutdown(tasks);
        for n in 1..=writers.max(1) {
            let (receiver, weak) = (receiver.clone(), Arc::downgrade(&writer));
            let task = move || write_groups(receiver.clone(), weak.clone());
            tokio::spawn(supervisor.clone().run(format!("event writer {n}"), task));
        }
        writer
    }

    /// Whether at least one writer task is alive (not waiting to restart).
    pub(crate) fn running(&self) -> bool {
        self.tasks.any_running()
    }

    /// Queues an append and waits for its group's commit.
    pub(crate) async fn append(
        &self,
        streams: Vec<StreamAppend>,
        command: Option<CommandRecord>,
    ) -> Result<Outcome, StoreError> {
        let events = streams.first().map_or(0, |s| s.events.len());
        let commands = vec![BatchedCommand { events, record: command }];
        let mut outcomes = self.append_commands(streams, commands).await?;
        outcomes.pop().ok_or_else(|| StoreError::Backend("append without outcome".into()))
    }

    /// Appends `streams` for `commands`, whose events follow each other in
    /// the first stream; one outcome per command. Runs in an `append` span
    /// (events, group size); when traces are exported, each event's
    /// metadata records that span's `traceparent`.
    pub(crate) async fn append_commands(
        &self,
        mut streams: Vec<StreamAppend>,
        commands: Vec<BatchedCommand>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let started = std::time::Instant::now();
        let events: usize = streams.iter().map(|s| s.events.len()).sum();
        let span = tracing::debug_span!("append", events, group_size = tracing::field::Empty);
        if let Some(traceparent) = span.in_scope(trace_context::current_traceparent) {
            for event in streams.iter_mut().flat_map(|s| s.events.iter_mut()) {
                event.metadata.traceparent = Some(traceparent.clone());
            }
        }
        let (reply, answer) = oneshot::channel();
        let tag = self.tags.fetch_add(1, Ordering::Relaxed);
        let rows = match self.db.get_database_backend() {
            DbBackend::Postgres => event_rows(tag, &streams).map_err(StoreError::backend)?,
            _ => String::new(),
        };
        self.queue
            .send(Pending { streams, commands, rows, tag, reply })
            .map_err(|_| StoreError::Backend("event writer stopped".into()))?;
        let (result, group_size) = answer
            .instrument(span.clone())
            .await
            .map_err(|_| StoreError::Backend("event writer stopped".into()))?;
        span.record("group_size", group_size);
        metrics::histogram!("eventfold_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn commit_group(&self, group: Vec<Pending>) {
        // One append per stream per transaction; the others go alone.
        let mut seen = HashSet::new();
        let (mut together, mut alone) = (Vec::new(), Vec::new());
        for pending in group {
            let keys: Vec<_> = pending.streams.iter().map(|s| s.stream.clone()).collect();
            if keys.iter().all(|k| !seen.contains(k)) {
                seen.extend(keys);
                together.push(pending);
            } else {
                alone.push(pending);
            }
        }
        let mut first_alone = Vec::new();
        let groups = match self.db.get_database_backend() {
            DbBackend::Postgres => within_round_trip(together),
            // No socket between the writer and an embedded database.
            _ => vec![together],
        };
        for together in groups.into_iter().filter(|g| !g.is_empty()) {
            if together.len() == 1 {
                first_alone.extend(together);
                continue;
            }
            let shared: Vec<&Pending> = together.iter().collect();
            match self.try_group(&shared).await {
                Ok(results) => {
                    let size = together.len();
                    for (pending, result) in together.into_iter().zip(results) {
                        let _ = pending.reply.send((result, size));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "group commit failed; appending one by one");
                    first_alone.extend(together);
                }
            }
        }
        for pending in first_alone.into_iter().chain(alone) {
            let result = self.append_one(&pending).await;
            let _ = pending.reply.send((result, 1));
        }
    }

    /// Appends `group` atomically. The streams of every append are locked,
    /// then every expectation is checked before the first write (see the
    /// module doc); appends whose streams moved get their conflict and the
    /// others go in. On PostgreSQL a group that writes every stream it
    /// names and records no command is one statement (see
    /// [`APPEND_PG`]); any other group is a transaction.
    async fn try_group(&self, group: &[&Pending]) -> Result<Vec<AppendResult>, DbErr> {
        let now = Utc::now();
        let results = if in_one_statement(self.db.get_database_backend(), group) {
            let (current, inserted) = append_in_one_statement(&self.db, group, now).await?;
            outcomes(group, &current, &inserted).0
        } else {
            let txn = begin_append(&self.db).await?;
            let current = lock_and_read_versions(&txn, group).await?;
            let accepted: Vec<&Pending> = group
                .iter()
                .copied()
                .filter(|p| first_conflict(&p.streams, &current).is_none())
                .collect();
            let inserted = insert_events(&txn, &accepted, now).await?;
            let (results, logs) = outcomes(group, &current, &inserted);
            if !logs.is_empty() {
                insert_logs(&txn, &logs, now).await?;
            }
            txn.commit().await?;
            results
        };
        self.committed.send_modify(|n| *n += 1);
        metrics::histogram!("eventfold_append_group_size").record(group.len() as f64);
        let written = (Utc::now() - now).num_microseconds().unwrap_or(0).max(0);
        metrics::histogram!("eventfold_append_write_duration_seconds").record(written as f64 / 1e6);
        Ok(results)
    }

    /// One append in its own transaction, with races mapped to conflicts.
    async fn append_one(&self, pending: &Pending) -> Result<Vec<Outcome>, StoreError> {
        let streams = &pending.streams;
        let command = pending.commands.iter().find_map(|c| c.record.as_ref());
        let err = match self.try_group(&[pending]).await {
            Ok(mut results) => return results.pop().expect("one append, one result"),
            Err(err) => err,
        };
        match err.sql_err() {
            // The unique key settled a race: someone else got there first.
            Some(SqlErr::UniqueConstraintViolation(msg)) if msg.contains("command_log") => {
                Err(StoreError::DuplicateCommand(command.map(|c| c.command_id).unwrap_or_default()))
            }
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                let keys: Vec<_> = streams.iter().map(|s| &s.stream).collect();
                let current =
                    current_versions(&self.db, &keys).await.map_err(StoreError::backend)?;
                let moved = first_conflict(streams, &current);
                Err(moved.unwrap_or_else(|| conflict(&streams[0], streams[0].expected_version + 1)))
            }
            _ => Err(StoreError::backend(err)),
        }
    }
}

/// Each append's result, given the versions its streams were found at
/// and where the accepted events landed, and the idempotency records of
/// the commands that succeeded.
fn outcomes<'a>(
    group: &[&'a Pending],
    current: &HashMap<StreamKey, i64>,
    inserted: &[Inserted],
) -> (Vec<AppendResult>, Vec<(&'a CommandRecord, Outcome)>) {
    let positions: HashMap<(&str, Uuid, i64), Position> = inserted
        .iter()
        .map(|m| ((m.stream_type.as_str(), m.stream_id, m.version), m.position))
        .collect();
    let mut results = Vec::with_capacity(group.len());
    let mut logs = Vec::new();
    for pending in group {
        if let Some(conflict) = first_conflict(&pending.streams, current) {
            results.push(Err(conflict));
            continue;
        }
        let last = pending
            .streams
            .iter()
            .flat_map(|s| (1..=s.events.len() as i64).map(move |i| (s, s.expected_version + i)))
            .filter_map(|(s, v)| {
                positions.get(&(s.stream.stream_type.as_str(), s.stream.stream_id, v))
            })
            .max()
            .copied()
            .unwrap_or_default();
        // Each command ends at its own version; the last one's position is
        // the append's last (over every stream it wrote).
        let first = &pending.streams[0];
        let mut outcomes = Vec::with_capacity(pending.commands.len());
        let mut upto = 0;
        for (i, command) in pending.commands.iter().enumerate() {
            upto += command.events as i64;
            let version = first.expected_version + upto;
            let position = if i + 1 == pending.commands.len() {
                last
            } else {
                let key = (first.stream.stream_type.as_str(), first.stream.stream_id, version);
                positions.get(&key).copied().unwrap_or(last)
            };
            let outcome = Outcome { id: first.stream.stream_id, version, position };
            if let Some(record) = &command.record {
                logs.push((record, outcome));
            }
            outcomes.push(outcome);
        }
        results.push(Ok(outcomes));
    }
    (results, logs)
}

/// Whether `group` is appended by [`APPEND_PG`]: on PostgreSQL, when every
/// append writes every stream it names and no command is to be recorded.
fn in_one_statement(backend: DbBackend, group: &[&Pending]) -> bool {
    backend == DbBackend::Postgres
        && group.iter().all(|p| {
            p.streams.iter().all(|s| !s.events.is_empty())
                && p.commands.iter().all(|c| c.record.is_none())
        })
}

/// Appends `group` with [`APPEND_PG`], in one statement outside any
/// transaction; returns the version each stream was found at and where
/// the accepted events landed.
async fn append_in_one_statement(
    db: &DatabaseConnection,
    group: &[&Pending],
    now: chrono::DateTime<Utc>,
) -> Result<(HashMap<StreamKey, i64>, Vec<Inserted>), DbErr> {
    let appends = || group.iter().flat_map(|p| p.streams.iter().map(move |s| (p.tag, s)));
    let locks: Vec<i64> = lock_set(appends().map(|(_, s)| s)).into_keys().collect();
    let expected: Vec<Json> = appends()
        .map(|(a, s)| {
            serde_json::json!({
                "a": a,
                "stream_type": s.stream.stream_type,
                "stream_id": s.stream.stream_id,
                "expected": s.expected_version,
            })
        })
        .collect();
    let values = [rows_array(group)?.into(), now.into(), locks.into(), Json::from(expected).into()];
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, APPEND_PG, values);
    let (mut current, mut inserted) = (HashMap::new(), Vec::new());
    for row in db.query_all_raw(statement).await? {
        let stream_type: String = row.try_get("", "stream_type")?;
        let stream_id: Uuid = row.try_get("", "stream_id")?;
        let version: i64 = row.try_get("", "version")?;
        match row.try_get::<Option<i64>>("", "position")? {
            Some(pos) => {
                let tx = row.try_get("", "tx_id")?;
                inserted.push(Inserted {
                    stream_type,
                    stream_id,
                    version,
                    position: Position { tx, pos },
                });
            }
            None => {
                current.insert(StreamKey { stream_type, stream_id }, version);
            }
        }
    }
    Ok((current, inserted))
}

/// `WITH <name> AS MATERIALIZED (…)`: every stream lock of the bigint
/// array `<param>`, exclusive, in ascending key order (the one global
/// order; see [`crate::infra::append_locks`]).
macro_rules! stream_locks_cte {
    ($name:literal, $param:literal) => {
        concat!(
            "WITH ",
            $name,
            " AS MATERIALIZED (SELECT pg_advisory_xact_lock(l.key) ",
            "FROM (SELECT unnest(",
            $param,
            "::bigint[]) AS key ORDER BY 1) AS l) "
        )
    };
}

/// The last version of the stream named by the `stream_type` and
/// `stream_id` columns of `<alias>` (NULL for a new stream): one index
/// step per stream.
macro_rules! last_version {
    ($alias:literal) => {
        concat!(
            "(SELECT MAX(e.version) FROM events e WHERE e.stream_type = ",
            $alias,
            ".stream_type AND e.stream_id = ",
            $alias,
            ".stream_id)"
        )
    };
}

/// Inserts the event rows of the JSON array `$1`, recorded at `$2`, that
/// pass `<filter>` (on `r`; a row may carry its append's index `a`), in
/// the order given (`ORDER BY n`), so positions follow it.
macro_rules! insert_events_pg {
    ($filter:literal) => {
        concat!(
            "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, ",
            "schema_version, payload, metadata, recorded_at) ",
            "SELECT r.event_id, r.stream_type, r.stream_id, r.version, r.event_type, ",
            "r.schema_version, r.payload, r.metadata, $2 ",
            "FROM ROWS FROM (jsonb_to_recordset($1) AS (event_id uuid, stream_type text, ",
            "stream_id uuid, version bigint, event_type text, schema_version int, payload jsonb, ",
            "metadata jsonb, a bigint)) WITH ORDINALITY AS r(event_id, stream_type, stream_id, ",
            "version, event_type, schema_version, payload, metadata, a, n) ",
            $filter,
            " ORDER BY r.n RETURNING tx_id, position, stream_type, stream_id, version"
        )
    };
}

/// A whole append group in one statement, so outside a transaction block
/// (one round trip instead of BEGIN, locks and versions, INSERT, COMMIT):
/// - `held` takes every stream lock of `$3`, exclusive, in ascending key
///   order, before anything else is read;
/// - `found` reads the version of each stream of `$4` (after the locks:
///   the `WHERE` makes it wait for them) and compares it with what its
///   append (`a`) expected;
/// - the INSERT writes the events of `$1` (recorded at `$2`) of every
///   append none of whose streams moved, in the order given (positions
///   follow it).
///
/// The result lists `found` first, then the inserted rows: PostgreSQL
/// runs a `UNION ALL`'s branches in order and runs the INSERT when its
/// branch is read, so the locks are held and the versions read before the
/// INSERT's trigger takes the commit-order lock (stream locks before the
/// commit-order lock, as in a transaction; see the module doc). As there,
/// the statement's snapshot may predate a lock it waited for, and then its
/// insert breaks the (stream, version) unique key and the group is retried
/// append by append.
const APPEND_PG: &str = concat!(
    stream_locks_cte!("held", "$3"),
    ", found AS MATERIALIZED (SELECT x.a, x.stream_type, x.stream_id, x.expected, COALESCE(",
    last_version!("x"),
    ", 0) AS version FROM jsonb_to_recordset($4) AS x(a bigint, stream_type text, stream_id uuid, \
     expected bigint) WHERE (SELECT count(*) FROM held) >= 0), inserted AS (",
    insert_events_pg!("WHERE r.a NOT IN (SELECT f.a FROM found f WHERE f.version <> f.expected)"),
    ") SELECT f.stream_type, f.stream_id, f.version, NULL::bigint AS tx_id, \
     NULL::bigint AS position FROM found f \
     UNION ALL SELECT i.stream_type, i.stream_id, i.version, i.tx_id, i.position FROM inserted i"
);

/// One writer task: takes everything queued (up to [`MAX_GROUP`]) and
/// commits it, until the queue closes or the store is gone.
async fn write_groups(receiver: Queue, writer: Weak<Writer>) -> anyhow::Result<()> {
    loop {
        let mut group = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return Ok(()) };
            group.push(first);
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
        }
        let Some(writer) = writer.upgrade() else { return Ok(()) };
        writer.commit_group(group).await;
    }
}

/// The current version of each stream (absent streams are at 0), in one
/// query. On PostgreSQL the keys travel as one JSON parameter, so the
/// statement has one shape whatever their number (one prepared statement
/// per connection, not one per group size), and each key is an index
/// lookup of its stream's last version.
async fn current_versions<C: sea_orm::ConnectionTrait>(
    db: &C,
    keys: &[&StreamKey],
) -> Result<HashMap<StreamKey, i64>, DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            CURRENT_VERSIONS_PG,
            [Json::from(stream_keys(keys)).into()],
        );
        return versions_of(db.query_all_raw(statement).await?);
    }
    let mut any = Condition::any();
    for key in keys {
        any = any.add(
            Condition::all()
                .add(events::Column::StreamType.eq(key.stream_type.as_str()))
                .add(events::Column::StreamId.eq(key.stream_id)),
        );
    }
    let rows: Vec<(String, Uuid, Option<i64>)> = events::Entity::find()
        .select_only()
        .column(events::Column::StreamType)
        .column(events::Column::StreamId)
        .column_as(events::Column::Version.max(), "v")
        .filter(any)
        .group_by(events::Column::StreamType)
        .group_by(events::Column::StreamId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(stream_type, stream_id, v)| (StreamKey { stream_type, stream_id }, v.unwrap_or(0)))
        .collect())
}

/// The last version of each stream whose key is in the JSON array `$1`.
macro_rules! current_versions_pg {
    () => {
        concat!(
            "SELECT k.stream_type, k.stream_id, ",
            last_version!("k"),
            " AS v FROM jsonb_to_recordset($1) AS k(stream_type text, stream_id uuid)"
        )
    };
}

const CURRENT_VERSIONS_PG: &str = current_versions_pg!();

/// Takes the stream locks of `group` and reads the current version of
/// each of its streams (see [`crate::infra::append_locks`]): in one
/// statement on PostgreSQL when every append writes every stream it names,
/// in two (locks, then versions) when some stream is only checked.
async fn lock_and_read_versions(
    txn: &DatabaseTransaction,
    group: &[&Pending],
) -> Result<HashMap<StreamKey, i64>, DbErr> {
    let appends = || group.iter().flat_map(|p| &p.streams);
    let keys: Vec<&StreamKey> = appends().map(|s| &s.stream).collect();
    let locks = lock_set(appends());
    let writes_all = locks.values().all(|exclusive| *exclusive);
    if txn.get_database_backend() != DbBackend::Postgres || !writes_all {
        lock_streams(txn, locks).await?;
        return current_versions(txn, &keys).await;
    }
    let locks: Vec<i64> = locks.into_keys().collect();
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        LOCK_AND_READ_VERSIONS_PG,
        [Json::from(stream_keys(&keys)).into(), locks.into()],
    );
    versions_of(txn.query_all_raw(statement).await?)
}

/// Every lock of `$2`, exclusive, in ascending key order (a one-time
/// filter: run before the first row of the version lookup), then
/// [`CURRENT_VERSIONS_PG`] of `$1`.
const LOCK_AND_READ_VERSIONS_PG: &str = concat!(
    stream_locks_cte!("locks", "$2"),
    current_versions_pg!(),
    " WHERE (SELECT count(*) FROM locks) >= 0"
);

/// `keys` as the JSON array the version lookups take.
fn stream_keys(keys: &[&StreamKey]) -> Vec<serde_json::Value> {
    keys.iter()
        .map(|k| serde_json::json!({ "stream_type": k.stream_type, "stream_id": k.stream_id }))
        .collect()
}

/// The versions a PostgreSQL version lookup found (absent streams at 0).
fn versions_of(rows: Vec<sea_orm::QueryResult>) -> Result<HashMap<StreamKey, i64>, DbErr> {
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = StreamKey {
            stream_type: row.try_get("", "stream_type")?,
            stream_id: row.try_get("", "stream_id")?,
        };
        found.insert(key, row.try_get::<Option<i64>>("", "v")?.unwrap_or(0));
    }
    Ok(found)
}

/// An inserted event: where it landed.
struct Inserted {
    stream_type: String,
    stream_id: Uuid,
    version: i64,
    position: Position,
}

/// Inserts the events of `appends`, in order (positions follow it), and
/// returns where each landed. On PostgreSQL every row travels in one JSON
/// parameter: one statement shape for any group size.
async fn insert_events(
    txn: &DatabaseTransaction,
    appends: &[&Pending],
    now: chrono::DateTime<Utc>,
) -> Result<Vec<Inserted>, DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        let rows = appends.iter().flat_map(|p| p.streams.iter()).flat_map(|s| rows_for(s, now));
        let inserted = events::Entity::insert_many(rows).exec_with_returning(txn).await?;
        return Ok(inserted
            .into_iter()
            .map(|m| Inserted {
                stream_type: m.stream_type,
                stream_id: m.stream_id,
                version: m.version,
                position: Position { tx: m.tx_id, pos: m.position },
            })
            .collect());
    }
    let values = [rows_array(appends)?.into(), now.into()];
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, INSERT_EVENTS_PG, values);
    let mut inserted = Vec::new();
    for row in txn.query_all_raw(statement).await? {
        inserted.push(Inserted {
            stream_type: row.try_get("", "stream_type")?,
            stream_id: row.try_get("", "stream_id")?,
            version: row.try_get("", "version")?,
            position: Position { tx: row.try_get("", "tx_id")?, pos: row.try_get("", "position")? },
        });
    }
    Ok(inserted)
}

/// One event as a row of the PostgreSQL inserts' JSON (`a`: its append's
/// tag), written straight from the event (no copy of its payload).
#[derive(serde::Serialize)]
struct EventRow<'a> {
    a: u64,
    event_id: Uuid,
    stream_type: &'a str,
    stream_id: Uuid,
    version: i64,
    event_type: &'a str,
    schema_version: i32,
    payload: &'a Json,
    metadata: &'a EventMetadata,
}

/// The event rows of the streams of one append tagged `tag`, as JSON
/// objects separated by commas (see [`Pending::rows`]).
fn event_rows(tag: u64, streams: &[StreamAppend]) -> serde_json::Result<String> {
    let mut out = Vec::new();
    for s in streams {
        for (i, event) in s.events.iter().enumerate() {
            if !out.is_empty() {
                out.push(b',');
            }
            let row = EventRow {
                a: tag,
                event_id: event.event_id,
                stream_type: &s.stream.stream_type,
                stream_id: s.stream.stream_id,
                version: s.expected_version + i as i64 + 1,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                payload: &event.payload,
                metadata: &event.metadata,
            };
            serde_json::to_writer(&mut out, &row)?;
        }
    }
    // serde_json writes UTF-8 only.
    Ok(String::from_utf8(out).expect("JSON is UTF-8"))
}

/// The rows of `group` as one JSON array: the statements' `jsonb`
/// parameter `$1`. Read back from each append's serialized rows: the same
/// text bound as `text` and cast in the statement (`$1::jsonb`) cost
/// PostgreSQL more than a `jsonb` parameter (`bench --quick`, alternating:
/// CPU per mutation 554–587 vs 497–528 µs at 16 clients).
fn rows_array(group: &[&Pending]) -> Result<Json, DbErr> {
    let mut array =
        String::with_capacity(2 + group.iter().map(|p| p.rows.len() + 1).sum::<usize>());
    array.push('[');
    for rows in group.iter().map(|p| p.rows.as_str()).filter(|r| !r.is_empty()) {
        if array.len() > 1 {
            array.push(',');
        }
        array.push_str(rows);
    }
    array.push(']');
    serde_json::from_str(&array).map_err(|e| DbErr::Json(e.to_string()))
}

/// `group` cut, in order, into groups whose statements each carry at most
/// [`ROUND_TRIP_BYTES`](crate::es::projector::ROUND_TRIP_BYTES) of parameters (an append larger than that alone):
/// a larger message stalls on the driver's socket (see that constant).
fn within_round_trip(group: Vec<Pending>) -> Vec<Vec<Pending>> {
    let trips = round_trips(group.iter().map(Pending::bytes));
    let mut pending = group.into_iter();
    trips.into_iter().map(|trip| pending.by_ref().take(trip.len()).collect()).collect()
}

/// Every event row of `$1`.
const INSERT_EVENTS_PG: &str = insert_events_pg!("");

/// Records each command's outcome (its idempotency record); on PostgreSQL
/// in one statement shape for any number.
async fn insert_logs(
    txn: &DatabaseTransaction,
    logs: &[(&CommandRecord, Outcome)],
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        let rows = logs.iter().map(|(record, outcome)| log_row(record, *outcome, now));
        command_log::Entity::insert_many(rows).exec_without_returning(txn).await?;
        return Ok(());
    }
    let rows: Vec<Json> = logs
        .iter()
        .map(|(record, outcome)| {
            serde_json::json!({
                "command_id": record.command_id,
                "stream_type": record.stream.stream_type,
                "stream_id": record.stream.stream_id,
                "result": outcome,
            })
        })
        .collect();
    let values = [Json::from(rows).into(), now.into()];
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, INSERT_LOGS_PG, values))
        .await?;
    Ok(())
}

const INSERT_LOGS_PG: &str = "INSERT INTO command_log (command_id, stream_type, stream_id, result, recorded_at) \
     SELECT r.command_id, r.stream_type, r.stream_id, r.result, $2 \
     FROM jsonb_to_recordset($1) AS r(command_id uuid, stream_type text, stream_id uuid, result jsonb)";

fn rows_for(append: &StreamAppend, now: chrono::DateTime<Utc>) -> Vec<events::ActiveModel> {
    append
        .events
        .iter()
        .enumerate()
        .map(|(i, event)| events::ActiveModel {
            position: NotSet,
            tx_id: NotSet,
            event_id: Set(event.event_id),
            stream_type: Set(append.stream.stream_type.clone()),
            stream_id: Set(append.stream.stream_id),
            version: Set(append.expected_version + i as i64 + 1),
            event_type: Set(event.event_type.clone()),
            schema_version: Set(event.schema_version),
            payload: Set(event.payload.clone()),
            metadata: Set(serde_json::to_value(&event.metadata).unwrap_or_default()),
            recorded_at: Set(now),
        })
        .collect()
}

fn log_row(
    command: &CommandRecord,
    outcome: Outcome,
    now: chrono::DateTime<Utc>,
) -> command_log::ActiveModel {
    command_log::ActiveModel {
        command_id: Set(command.command_id),
        stream_type: Set(command.stream.stream_type.clone()),
        stream_id: Set(command.stream.stream_id),
        result: Set(serde_json::to_value(outcome).unwrap_or_default()),
        recorded_at: Set(now),
    }
}

/// The conflict of the first stream not at its expected version.
fn first_conflict(
    streams: &[StreamAppend],
    current: &HashMap<StreamKey, i64>,
) -> Option<StoreError> {
    streams.iter().find_map(|s| {
        let actual = current.get(&s.stream).copied().unwrap_or(0);
        (actual != s.expected_version).then(|| conflict(s, actual))
    })
}

fn conflict(append: &StreamAppend, actual: i64) -> StoreError {
    StoreError::Conflict {
        stream_type: append.stream.stream_type.clone(),
        stream_id: append.stream.stream_id,
        expected: append.expected_version,
        actual,
    }
}
