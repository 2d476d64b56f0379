//! Projection checkpoints in the read database: how far each key (a
//! projection, or one partition of it) has applied the log.

use chrono::Utc;
use entity::projection_checkpoints;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, QuerySelect,
};

use crate::es::envelope::Position;

pub async fn load_checkpoint(db: &DatabaseConnection, key: &str) -> anyhow::Result<Position> {
    let row = projection_checkpoints::Entity::find_by_id(key.to_owned()).one(db).await?;
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

/// Reads the checkpoint inside `txn`, holding its row lock on PostgreSQL so
/// two appliers of one key (say, a worker that lost its lease and the one
/// that took over) serialize instead of applying an event twice. Also takes
/// the projection's advisory lock in shared mode (see rebuilds).
pub(super) async fn lock_checkpoint(
    txn: &DatabaseTransaction,
    projection: &str,
    key: &str,
) -> Result<Position, sea_orm::DbErr> {
    let postgres = sea_orm::ConnectionTrait::get_database_backend(txn) == DbBackend::Postgres;
    if postgres {
        let lock = sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock_shared($1)",
            [projection_lock_id(projection).into()],
        );
        sea_orm::ConnectionTrait::execute_raw(txn, lock).await?;
    }
    let select = || {
        let query = projection_checkpoints::Entity::find_by_id(key.to_owned());
        if postgres { query.lock_exclusive() } else { query }
    };
    if let Some(row) = select().one(txn).await? {
        return Ok(Position { tx: row.tx_id, pos: row.position });
    }
    // First use of this key. The row must exist to be locked; inserting it
    // blocks on a concurrent insert of the same key until that transaction
    // ends. (Not on SQLite: it has one writer anyway, and must not take its
    // write lock this early, while a process manager's command on another
    // connection has to commit.)
    if !postgres {
        return Ok(Position::START);
    }
    projection_checkpoints::Entity::insert(projection_checkpoints::ActiveModel {
        name: Set(key.to_owned()),
        tx_id: Set(0),
        position: Set(0),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(OnConflict::column(projection_checkpoints::Column::Name).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    Ok(select()
        .one(txn)
        .await?
        .map(|r| Position { tx: r.tx_id, pos: r.position })
        .unwrap_or_default())
}

pub async fn save_checkpoint<C: sea_orm::ConnectionTrait>(
    db: &C,
    key: &str,
    position: Position,
) -> Result<(), sea_orm::DbErr> {
    projection_checkpoints::Entity::insert(projection_checkpoints::ActiveModel {
        name: Set(key.to_owned()),
        tx_id: Set(position.tx),
        position: Set(position.pos),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(projection_checkpoints::Column::Name)
            .update_columns([
                projection_checkpoints::Column::TxId,
                projection_checkpoints::Column::Position,
                projection_checkpoints::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
