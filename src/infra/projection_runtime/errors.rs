//! Which projection failures may pass by themselves.
//!
//! Transient: the connection or the pool failed, a statement or lock wait
//! timed out, the server is shutting down or restarting, a serialization
//! failure or a deadlock, SQLite busy or locked, and anything the
//! projection itself calls unavailable. Everything else (a constraint the
//! event violates, an unreadable event, a version gap) would fail again on
//! the same input.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

use crate::es::projector::ProjectionError;

/// Whether retrying the same work later may succeed.
pub fn is_transient(err: &ProjectionError) -> bool {
    match err {
        ProjectionError::Unavailable(_) => true,
        ProjectionError::Rejected(_) => false,
        ProjectionError::Db(db) => is_transient_db(db),
    }
}

fn is_transient_db(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        _ => driver_error(err).is_some_and(is_transient_sqlx),
    }
}

/// The SQLSTATE of a statement that refused itself (`eventfold_expect`,
/// see `checkpoint::ONE_TRIP_READY_PG`).
pub(super) const REFUSED: &str = "EF001";

/// Whether `err` is a statement refusing itself: it wrote nothing.
pub(super) fn is_refused(err: &DbErr) -> bool {
    matches!(driver_error(err), Some(sqlx::Error::Database(db)) if db.code().as_deref() == Some(REFUSED))
}

/// The driver's error under a statement's failure, if that is what `err` is.
fn driver_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

fn is_transient_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs and SQLite result codes that describe the moment,
/// not the statement.
fn is_transient_code(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || matches!(
            code,
            "40001" // serialization failure
            | "40P01" // deadlock detected
            | "55P03" // lock not available (lock_timeout)
            | "57014" // query canceled (statement_timeout)
            | "58000" | "58030" // system / I/O error
            | "5" | "6" | "261" | "262" | "517" // SQLITE_BUSY, SQLITE_LOCKED and their extended codes
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_timeouts_and_deadlocks_may_pass_and_violations_do_not() {
        for code in ["08006", "08003", "53300", "57P01", "40001", "40P01", "55P03", "57014", "5"] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["23505", "23503", "P0001", "42P01", "22003", "19"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn the_projection_decides_for_its_own_errors() {
        assert!(is_transient(&ProjectionError::Unavailable("write side down".into())));
        assert!(!is_transient(&ProjectionError::new("arrived before AccountOpened")));
        assert!(is_transient(&ProjectionError::Db(DbErr::ConnectionAcquire(
            sea_orm::error::ConnAcquireErr::Timeout
        ))));
        assert!(!is_transient(&ProjectionError::Db(DbErr::RecordNotUpdated)));
    }
}
