//! The locks of an append transaction: a decision that rests on a stream the
//! command only read holds that stream until the append commits, so no
//! concurrent append can move it in between (no write skew). Re-reading the
//! version inside the transaction is not enough on its own: under
//! `read committed` two transactions can each read the other's stream before
//! either commits, and both succeed.
//!
//! - PostgreSQL: transaction-level advisory locks, exclusive on every stream
//!   the transaction appends to and shared on every stream it only checks,
//!   taken in ONE statement in ascending key order before the versions are
//!   read. Every append transaction takes its locks in that one global
//!   order, so two of them never wait for each other in a cycle; readers of a
//!   stream share it, a writer excludes both. Where the transaction only
//!   checks some stream, the version query that follows is a new statement,
//!   so under `read committed` it sees every append that held a conflicting
//!   lock before us. Where it writes every stream it names, the locks and
//!   the versions are one statement (one round trip less): its snapshot
//!   predates a lock it waited for, so it may miss the holder's new version,
//!   but then its own insert of that version breaks the unique key on
//!   (stream, version) and the append is retried alone and answered with
//!   the conflict, as any race the key settles. Such an append that
//!   records no command is even one statement in all, insert included (see
//!   [`super::event_writer`]). The locks end with the transaction.
//! - SQLite: see [`begin_append`].

use std::collections::BTreeMap;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::es::envelope::StreamKey;
use crate::es::store::StreamAppend;

/// Namespace of the UUIDv5 from which a stream's lock key is taken.
const LOCK_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7466_6f6c_6400_0000_0000_0004);

/// The advisory lock key of a stream: the first 64 bits of a UUIDv5 of its
/// type and id, so every process and every release computes the same key.
/// Two streams that collide only wait for each other; they never deadlock,
/// because the key order is still one global order.
pub fn stream_lock_key(stream: &StreamKey) -> i64 {
    let mut name = Vec::with_capacity(stream.stream_type.len() + 17);
    name.extend_from_slice(stream.stream_type.as_bytes());
    name.push(0);
    name.extend_from_slice(stream.stream_id.as_bytes());
    let hash = Uuid::new_v5(&LOCK_NAMESPACE, &name);
    let mut first = [0; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_be_bytes(first)
}

/// The locks a transaction of `appends` needs, by key in ascending order:
/// `true` (exclusive) where any append writes the stream, `false` (shared)
/// where they only check its version.
pub(crate) fn lock_set<'a>(
    appends: impl IntoIterator<Item = &'a StreamAppend>,
) -> BTreeMap<i64, bool> {
    let mut locks = BTreeMap::new();
    for append in appends {
        let exclusive = locks.entry(stream_lock_key(&append.stream)).or_insert(false);
        *exclusive |= !append.events.is_empty();
    }
    locks
}

/// Starts an append transaction.
///
/// On SQLite it starts `IMMEDIATE`: it takes the database's single write
/// lock before its first read, waiting (busy timeout) while another
/// connection writes. That is enough to make every stream it reads as
/// locked as the ones it writes: SQLite has one writer at a time, so from
/// the version check to the commit no other append (through this pool's
/// one connection, the process manager's own connection or another process)
/// can commit, and the check reads the latest committed state. A deferred
/// transaction would instead read first and fail with "database is locked"
/// (`SQLITE_BUSY_SNAPSHOT`) when another connection committed before it
/// upgraded to a writer. PostgreSQL ignores the mode.
pub(crate) async fn begin_append(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    db.begin_with_options(options).await
}

/// Takes the advisory locks `locks` (a [`lock_set`]) on PostgreSQL (see
/// the module doc), in one statement; a no-op on SQLite, whose append
/// transaction already holds the write lock.
pub(crate) async fn lock_streams(
    txn: &DatabaseTransaction,
    locks: BTreeMap<i64, bool>,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    if locks.is_empty() {
        return Ok(());
    }
    // One JSON parameter: one statement shape for any number of streams.
    let locks: Vec<serde_json::Value> = locks
        .into_iter()
        .map(|(key, exclusive)| serde_json::json!({ "key": key, "exclusive": exclusive }))
        .collect();
    let sql = "SELECT CASE WHEN l.exclusive THEN pg_advisory_xact_lock(l.key) \
         ELSE pg_advisory_xact_lock_shared(l.key) END \
         FROM (SELECT v.key, v.exclusive \
               FROM jsonb_to_recordset($1) AS v(key bigint, exclusive boolean) \
               ORDER BY v.key) AS l";
    let values = [serde_json::Value::from(locks).into()];
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(stream: &StreamKey, events: usize) -> StreamAppend {
        let event = crate::es::envelope::NewEvent {
            event_id: Uuid::nil(),
            event_type: "E".into(),
            schema_version: 1,
            payload: serde_json::Value::Null,
            metadata: Default::default(),
        };
        StreamAppend { stream: stream.clone(), expected_version: 0, events: vec![event; events] }
    }

    #[test]
    fn a_stream_key_is_stable_and_depends_on_type_and_id() {
        let id = Uuid::from_u128(42);
        let order = StreamKey::new("Order", id);
        assert_eq!(stream_lock_key(&order), stream_lock_key(&StreamKey::new("Order", id)));
        assert_ne!(stream_lock_key(&order), stream_lock_key(&StreamKey::new("Invoice", id)));
        assert_ne!(stream_lock_key(&order), stream_lock_key(&StreamKey::new("Order", Uuid::nil())));
        // Pinned: processes of different releases must agree on every key.
        assert_eq!(stream_lock_key(&order), -2_045_356_507_816_374_193);
    }

    #[test]
    fn written_streams_are_exclusive_read_ones_shared_and_writing_wins() {
        let (a, b, c) = (
            StreamKey::new("T", Uuid::from_u128(1)),
            StreamKey::new("T", Uuid::from_u128(2)),
            StreamKey::new("T", Uuid::from_u128(3)),
        );
        // One append writes a and only reads b; another only reads a and c.
        let group = [append(&a, 1), append(&b, 0), append(&a, 0), append(&c, 0)];
        let locks = lock_set(&group);
        assert_eq!(locks.len(), 3);
        assert!(locks[&stream_lock_key(&a)], "written by one, read by another: exclusive");
        assert!(!locks[&stream_lock_key(&b)] && !locks[&stream_lock_key(&c)], "read: shared");
        let keys: Vec<_> = locks.keys().copied().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "one global ascending order");
    }
}
