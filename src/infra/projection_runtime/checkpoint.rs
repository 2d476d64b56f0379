//! Projection checkpoints in the read database: how far each key (a
//! projection, or one partition of it) has applied the log, and under which
//! lease epoch.
//!
//! Two rules hold for every write here. A checkpoint only moves forward.
//! And a writer whose [`Claim`] carries a lower epoch than the one stored is
//! refused ([`Fenced`]): once a worker has taken a partition over and
//! written its epoch, the worker it replaced (frozen, partitioned away, slow
//! to notice) can no longer commit anything under that key.

use chrono::Utc;
use entity::projection_checkpoints as checkpoints;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, QueryFilter, QuerySelect, Statement, TransactionTrait, Value,
};

use crate::es::envelope::Position;

/// What makes the transaction it runs in commit without waiting for
/// its commit record to reach disk (`synchronous_commit` off, for that
/// transaction only; the connection keeps its own setting).
///
/// Used for a group's read transactions (read-model rows and checkpoints)
/// and the relay's checkpoint: all derived from the event log, which
/// itself always commits synchronously. A crash of PostgreSQL may lose the
/// last fraction of a second of these commits, each one whole (a read
/// transaction's rows with the checkpoints that say they were applied): a
/// group then finds a checkpoint behind what it had applied and catches up
/// from the event store, and the relay publishes again what its lost
/// checkpoint covered. In exchange no read transaction waits for a disk
/// flush. The in-process transport, which would not notice a checkpoint
/// moved back, keeps synchronous commits.
///
/// A condition for a statement's `WHERE`: an uncorrelated sub-select, run
/// once when the statement starts, that is always true.
macro_rules! unflushed {
    () => {
        "(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"
    };
}

/// The right to write one checkpoint key: the key and the epoch of the
/// lease it is held under (0 where there are no leases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub epoch: i64,
}

impl Claim {
    /// A key written without leases (the in-process transport, rebuilds,
    /// operators' retries).
    pub fn unleased(key: impl Into<String>) -> Self {
        Claim { key: key.into(), epoch: 0 }
    }
}

/// The claim's epoch is older than the stored one: another worker took the
/// key over. Nothing was written.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "checkpoint {key} is held under lease epoch {current}; this worker's epoch {mine} is stale"
)]
pub struct Fenced {
    pub key: String,
    pub mine: i64,
    pub current: i64,
}

/// Why a checkpoint transaction did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error(transparent)]
    Db(#[from] DbErr),
}

pub async fn load_checkpoint(db: &DatabaseConnection, key: &str) -> Result<Position, DbErr> {
    let row = checkpoints::Entity::find_by_id(key.to_owned()).one(db).await?;
    Ok(row.map(|r| Position { tx: r.tx_id, pos: r.position }).unwrap_or_default())
}

/// The advisory lock a rebuild takes exclusively to swap a projection's
/// tables while no applier of it is mid-transaction.
pub fn projection_lock_id(projection: &str) -> i64 {
    // FNV-1a: stable across processes and releases.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in projection.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

fn is_postgres<C: ConnectionTrait>(db: &C) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// A checkpoint as its transaction locked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Locked {
    pub at: Position,
    /// The projection may have parked events (see [`mark_parked`]); when
    /// clear, no stream of the batch is parked and none needs a look.
    pub parked: bool,
}

impl Locked {
    /// A key never written (SQLite): nothing is known, so look.
    const NEW: Locked = Locked { at: Position::START, parked: true };

    fn of(row: &checkpoints::Model, claim: &Claim) -> Result<Locked, CheckpointError> {
        if row.lease_epoch > claim.epoch {
            return Err(Fenced {
                key: claim.key.clone(),
                mine: claim.epoch,
                current: row.lease_epoch,
            }
            .into());
        }
        Ok(Locked { at: Position { tx: row.tx_id, pos: row.position }, parked: row.parked })
    }
}

/// Reads the checkpoint of `claim` inside `txn`, holding its row lock on
/// PostgreSQL so two appliers of one key serialize instead of applying an
/// event twice, and checks the claim's epoch against the stored one. Also
/// takes the projection's advisory lock in shared mode (see rebuilds); on
/// PostgreSQL both in one statement, as [`lock_checkpoints`] for one.
pub(super) async fn lock_checkpoint(
    txn: &DatabaseTransaction,
    projection: &str,
    claim: &Claim,
) -> Result<Locked, CheckpointError> {
    let mut locked = lock_checkpoints(txn, &[(projection, claim)], false).await?;
    Ok(locked.remove(0))
}

/// Sets the parked mark of checkpoint `key` in `txn`, which parks an event
/// of a stream this key covers while it holds the row's lock: a later
/// transaction of the key sees the mark with the checkpoint it locks.
pub(super) async fn mark_parked(txn: &DatabaseTransaction, key: &str) -> Result<(), DbErr> {
    set_parked(txn, &[key], true).await
}

/// Clears the parked mark of `keys` (locked by `txn`), whose projections
/// were found to have no parked event.
pub(super) async fn clear_parked(txn: &DatabaseTransaction, keys: &[&str]) -> Result<(), DbErr> {
    set_parked(txn, keys, false).await
}

async fn set_parked<C: ConnectionTrait>(db: &C, keys: &[&str], parked: bool) -> Result<(), DbErr> {
    if keys.is_empty() {
        return Ok(());
    }
    checkpoints::Entity::update_many()
        .col_expr(checkpoints::Column::Parked, Expr::value(parked))
        .filter(checkpoints::Column::Name.is_in(keys.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// The checkpoint row of `key`, locked until `txn` ends (on PostgreSQL; on
/// SQLite the transaction is the only writer). `None` only on SQLite, for a
/// key never written.
async fn lock_row(
    txn: &DatabaseTransaction,
    projection: &str,
    key: &str,
) -> Result<Option<checkpoints::Model>, DbErr> {
    let postgres = is_postgres(txn);
    if postgres {
        let lock = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock_shared($1)",
            [projection_lock_id(projection).into()],
        );
        txn.execute_raw(lock).await?;
    }
    let select = || {
        let query = checkpoints::Entity::find_by_id(key.to_owned());
        if postgres { query.lock_exclusive() } else { query }
    };
    Ok(match select().one(txn).await? {
        Some(row) => Some(row),
        // First use of this key. The row must exist to be locked; inserting
        // it blocks on a concurrent insert of the same key until that
        // transaction ends. (Not on SQLite: it has one writer anyway, and
        // must not take its write lock this early, while a process
        // manager's command on another connection has to commit.)
        None if postgres => {
            checkpoints::Entity::insert(row_at(key, Position::START, 0))
                .on_conflict(OnConflict::column(checkpoints::Column::Name).do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
            select().one(txn).await?
        }
        None => None,
    })
}

/// [`lock_checkpoint`] for several projections at once (`members`: each
/// projection's name and claim, keys distinct): on PostgreSQL one
/// statement takes every projection's advisory lock in shared mode, then
/// locks every checkpoint row, in key order. Returns each claim's
/// checkpoint, in the order given; any stale claim fences the whole call.
/// With `unflushed` (PostgreSQL), `txn` will commit without waiting for
/// its flush (see `unflushed!`): only for a caller that notices a
/// checkpoint found behind what it had applied, as a group does.
pub(super) async fn lock_checkpoints(
    txn: &DatabaseTransaction,
    members: &[(&str, &Claim)],
    unflushed: bool,
) -> Result<Vec<Locked>, CheckpointError> {
    if !is_postgres(txn) {
        let mut locked = Vec::with_capacity(members.len());
        for (projection, claim) in members {
            locked.push(match lock_row(txn, projection, &claim.key).await? {
                Some(row) => Locked::of(&row, claim)?,
                None => Locked::NEW,
            });
        }
        return Ok(locked);
    }
    let mut rows = lock_rows(txn, members, unflushed).await?;
    if rows.len() < members.len() {
        // First use of some key: its row must exist to be locked (see
        // `lock_row`).
        let missing = members.iter().map(|(_, c)| row_at(&c.key, Position::START, 0));
        checkpoints::Entity::insert_many(missing)
            .on_conflict(OnConflict::column(checkpoints::Column::Name).do_nothing().to_owned())
            .exec_without_returning(txn)
            .await?;
        rows = lock_rows(txn, members, unflushed).await?;
    }
    members
        .iter()
        .map(|(_, claim)| {
            let row = rows.iter().find(|r| r.name == claim.key);
            let Some(row) = row else {
                return Err(DbErr::RecordNotFound(format!("checkpoint {}", claim.key)).into());
            };
            Locked::of(row, claim)
        })
        .collect()
}

/// The checkpoint rows of `members` that exist, locked until `txn` ends,
/// after the shared advisory lock of every member projection (PostgreSQL).
/// With `unflushed`, `txn` will commit without waiting for its flush.
async fn lock_rows(
    txn: &DatabaseTransaction,
    members: &[(&str, &Claim)],
    unflushed: bool,
) -> Result<Vec<checkpoints::Model>, DbErr> {
    let locks: Vec<i64> = members.iter().map(|(p, _)| projection_lock_id(p)).collect();
    let keys: Vec<String> = members.iter().map(|(_, c)| c.key.clone()).collect();
    let sql = if unflushed { LOCK_ROWS_UNFLUSHED_PG } else { LOCK_ROWS_PG };
    let select =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [locks.into(), keys.into()]);
    checkpoints::Entity::find().from_raw_sql(select).all(txn).await
}

/// Takes the shared advisory locks `$1`, then locks the checkpoint rows
/// named in `$2`. The uncorrelated sub-selects run once, before the scan:
/// the advisory locks are held before any row lock, as in `lock_row` and
/// the rebuild. `$also` is one more condition of that kind.
macro_rules! lock_rows_sql {
    ($also:expr) => {
        concat!(
            "WITH shared AS (SELECT pg_advisory_xact_lock_shared(id) FROM unnest($1::bigint[]) AS id) \
             SELECT name, tx_id, position, updated_at, lease_epoch, parked \
             FROM projection_checkpoints \
             WHERE name = ANY($2) AND (SELECT count(*) FROM shared) >= 0",
            $also,
            " ORDER BY name FOR UPDATE"
        )
    };
}

const LOCK_ROWS_PG: &str = lock_rows_sql!("");

/// [`LOCK_ROWS_PG`] in a transaction that will commit without waiting for
/// its flush.
const LOCK_ROWS_UNFLUSHED_PG: &str = lock_rows_sql!(concat!(" AND ", unflushed!()));

/// The `WITH` queries that open a group's one-statement commit (see
/// `writes::OneTrip`), with no transaction around it: they take the shared
/// advisory locks `$1`, then move each checkpoint named in `$2` to `$7`,
/// `$8` (tx id, position; stamped `$9`) only where it is where the group
/// last committed it, under the claim's epoch (`$3`…`$5`: tx ids,
/// positions, epochs) and, where its projection has events to apply
/// (`$6`), with no parked event (see [`mark_parked`]); and yield `ready`
/// (one row, `ok`) only if every one of them moved, otherwise the
/// statement fails whole (`eventfold_expect`, SQLSTATE
/// [`REFUSED`](super::errors::REFUSED)). The
/// `UPDATE` locks each row and checks it on its newest version, so the
/// check and the move are one step. The statement's writes each read a
/// parameter through `ready`, so none starts before the locks are held
/// and the checkpoints checked; the statement commits without waiting for
/// its flush (see `unflushed!`).
///
/// Its snapshot is older than the locks (taken when the statement
/// started): a writer that committed in between under the same keys
/// moved a checkpoint, which refuses the statement; the projections' own
/// statements check each row they change against what they expect, on
/// the newest version of the row.
pub(super) const ONE_TRIP_READY_PG: &str = concat!(
    "WITH shared AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(id) \
       FROM unnest($1::bigint[]) AS id), \
     moved AS MATERIALIZED (UPDATE projection_checkpoints AS c \
       SET tx_id = e.to_tx, position = e.to_position, updated_at = $9 \
       FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::boolean[], \
         $7::bigint[], $8::bigint[]) AS e(name, tx_id, position, epoch, fresh, to_tx, to_position) \
       WHERE c.name = e.name AND c.tx_id = e.tx_id AND c.position = e.position \
         AND c.lease_epoch = e.epoch AND NOT (c.parked AND e.fresh) \
         AND (SELECT count(*) FROM shared) >= 0 AND ",
    unflushed!(),
    " RETURNING c.name), \
     ready AS MATERIALIZED (SELECT eventfold_expect(count(*) = cardinality($2::text[]), \
         'checkpoints where this worker committed them') AS ok FROM moved)"
);

/// One checkpoint of a one-statement commit: expected `from` (where the
/// group last committed it, under the claim's epoch), moved `to`; `fresh`
/// when its projection has events in the batch.
pub(super) struct OneTripMove<'a> {
    pub claim: &'a Claim,
    pub from: Position,
    pub fresh: bool,
    pub to: Position,
}

/// The parameters of [`ONE_TRIP_READY_PG`]: the projections' advisory
/// locks and the checkpoints' moves.
pub(super) fn one_trip_ready_values(locks: Vec<i64>, moves: &[OneTripMove<'_>]) -> Vec<Value> {
    let column = |f: fn(&OneTripMove<'_>) -> i64| -> Value {
        moves.iter().map(f).collect::<Vec<i64>>().into()
    };
    vec![
        locks.into(),
        moves.iter().map(|m| m.claim.key.clone()).collect::<Vec<String>>().into(),
        column(|m| m.from.tx),
        column(|m| m.from.pos),
        column(|m| m.claim.epoch),
        moves.iter().map(|m| m.fresh).collect::<Vec<bool>>().into(),
        column(|m| m.to.tx),
        column(|m| m.to.pos),
        Utc::now().into(),
    ]
}

/// Holds every checkpoint in `keys` of `projection` until `txn` ends, so no
/// applier of the projection commits meanwhile (an operator's retry uses it).
pub(super) async fn lock_all(
    txn: &DatabaseTransaction,
    projection: &str,
    keys: &[String],
) -> Result<(), DbErr> {
    if !is_postgres(txn) {
        // One writer at a time: the transaction already excludes appliers.
        return Ok(());
    }
    let mut keys = keys.to_vec();
    keys.sort();
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock_shared($1)",
        [projection_lock_id(projection).into()],
    ))
    .await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT name FROM projection_checkpoints WHERE name = ANY($1) ORDER BY name FOR UPDATE",
        [keys.into()],
    ))
    .await?;
    Ok(())
}

fn row_at(key: &str, position: Position, epoch: i64) -> checkpoints::ActiveModel {
    checkpoints::ActiveModel {
        name: Set(key.to_owned()),
        tx_id: Set(position.tx),
        position: Set(position.pos),
        updated_at: Set(Utc::now()),
        lease_epoch: Set(epoch),
        // A new row starts marked (the column's default): nothing says yet
        // that its projection has no parked event.
        parked: NotSet,
    }
}

/// Moves the checkpoint of `claim` to `position` and stamps the claim's
/// epoch, in the caller's transaction. Never moves a checkpoint back and
/// never lowers an epoch, whatever the caller passes.
pub async fn save_checkpoint<C: ConnectionTrait>(
    db: &C,
    claim: &Claim,
    position: Position,
) -> Result<(), DbErr> {
    save_checkpoints(db, &[(claim, position)]).await
}

/// [`save_checkpoint`] for several claims in one statement (a row each;
/// the keys must be distinct).
pub async fn save_checkpoints<C: ConnectionTrait>(
    db: &C,
    moves: &[(&Claim, Position)],
) -> Result<(), DbErr> {
    if moves.is_empty() {
        return Ok(());
    }
    if is_postgres(db) {
        db.execute_raw(save_statement(moves)).await?;
        return Ok(());
    }
    let forward = Expr::cust(
        "(excluded.tx_id, excluded.position) > (projection_checkpoints.tx_id, projection_checkpoints.position) \
         OR excluded.lease_epoch > projection_checkpoints.lease_epoch",
    );
    let newest = |column: &str| {
        Expr::cust(format!(
            "CASE WHEN (excluded.tx_id, excluded.position) > (projection_checkpoints.tx_id, projection_checkpoints.position) \
             THEN excluded.{column} ELSE projection_checkpoints.{column} END"
        ))
    };
    let epoch = Expr::cust("MAX(excluded.lease_epoch, projection_checkpoints.lease_epoch)");
    let rows = moves.iter().map(|(claim, position)| row_at(&claim.key, *position, claim.epoch));
    checkpoints::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(checkpoints::Column::Name)
                .value(checkpoints::Column::TxId, newest("tx_id"))
                .value(checkpoints::Column::Position, newest("position"))
                .value(checkpoints::Column::LeaseEpoch, epoch)
                .update_column(checkpoints::Column::UpdatedAt)
                .action_and_where(forward)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// [`save_checkpoint`] in a transaction of its own that commits without
/// waiting for its flush (see `unflushed!`): the relay's checkpoint, saved
/// after every batch it publishes. Lost in a crash, it is found behind the
/// events the relay had published, which it then publishes again; the
/// consumers skip what their checkpoints cover.
pub async fn save_checkpoint_unflushed(
    db: &DatabaseConnection,
    claim: &Claim,
    position: Position,
) -> Result<(), DbErr> {
    if !is_postgres(db) {
        return save_checkpoint(db, claim, position).await;
    }
    db.execute_raw(save_statement_of(&[(claim, position)], SAVE_CHECKPOINTS_UNFLUSHED_PG)).await?;
    Ok(())
}

/// [`save_checkpoints`] on PostgreSQL: one statement of one shape however
/// many claims (their keys, positions and epochs as arrays).
pub(super) fn save_statement(moves: &[(&Claim, Position)]) -> Statement {
    save_statement_of(moves, SAVE_CHECKPOINTS_PG)
}

/// `moves` as the parameters of `sql` (one of the statements
/// `save_checkpoints_sql!` makes).
fn save_statement_of(moves: &[(&Claim, Position)], sql: &'static str) -> Statement {
    let keys: Vec<String> = moves.iter().map(|(c, _)| c.key.clone()).collect();
    let txs: Vec<i64> = moves.iter().map(|(_, p)| p.tx).collect();
    let positions: Vec<i64> = moves.iter().map(|(_, p)| p.pos).collect();
    let epochs: Vec<i64> = moves.iter().map(|(c, _)| c.epoch).collect();
    let values = [keys.into(), txs.into(), positions.into(), epochs.into(), Utc::now().into()];
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Each (key, tx_id, position, epoch) of the arrays `$1`…`$4` written at
/// `$5`: a checkpoint moves only forward, an epoch only up. `$filter` goes
/// after the rows' source.
macro_rules! save_checkpoints_sql {
    ($filter:expr) => {
        concat!(
            "INSERT INTO projection_checkpoints AS c \
               (name, tx_id, position, lease_epoch, updated_at) \
             SELECT m.name, m.tx_id, m.position, m.epoch, $5 \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
               AS m(name, tx_id, position, epoch) ",
            $filter,
            " ON CONFLICT (name) DO UPDATE SET \
               tx_id = CASE WHEN (excluded.tx_id, excluded.position) > (c.tx_id, c.position) \
                 THEN excluded.tx_id ELSE c.tx_id END, \
               position = CASE WHEN (excluded.tx_id, excluded.position) > (c.tx_id, c.position) \
                 THEN excluded.position ELSE c.position END, \
               lease_epoch = GREATEST(excluded.lease_epoch, c.lease_epoch), \
               updated_at = excluded.updated_at \
             WHERE (excluded.tx_id, excluded.position) > (c.tx_id, c.position) \
               OR excluded.lease_epoch > c.lease_epoch"
        )
    };
}

const SAVE_CHECKPOINTS_PG: &str = save_checkpoints_sql!("");

/// [`SAVE_CHECKPOINTS_PG`] committing without waiting for its flush.
const SAVE_CHECKPOINTS_UNFLUSHED_PG: &str = save_checkpoints_sql!(concat!("WHERE ", unflushed!()));

/// Takes checkpoint `key` of `projection` over: writes the next lease epoch
/// into it and returns the claim carrying that epoch. From this commit on,
/// any earlier holder is refused ([`Fenced`]); a transaction of an earlier
/// holder that is under way is waited for.
pub async fn fence(db: &DatabaseConnection, projection: &str, key: &str) -> Result<Claim, DbErr> {
    let txn = db.begin().await?;
    let row = lock_row(&txn, projection, key).await?;
    let epoch = row.as_ref().map_or(0, |r| r.lease_epoch) + 1;
    let position = row.map_or(Position::START, |r| Position { tx: r.tx_id, pos: r.position });
    let claim = Claim { key: key.to_owned(), epoch };
    save_checkpoint(&txn, &claim, position).await?;
    txn.commit().await?;
    Ok(claim)
}
