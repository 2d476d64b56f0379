//! Failures of projections as they may be shown outside the log.
//!
//! A driver's error text (SQL, constraint names, pool and connection
//! messages) stays in the log and in the `dead_letters` table. What the API
//! shows, even to admins, is a [`Failure`]: its kind, the reference of the
//! log line that has the detail, and, only for text this program composed
//! about the event (a projector's rejection, an untrusted transport entry),
//! that reason.

use std::fmt;

use uuid::Uuid;

use crate::es::projector::ProjectionError;

/// The reason of an event parked behind an earlier parked event of its stream.
pub(super) const WAITING: &str = "waits behind an earlier parked event of its stream";

/// What kind of failure a projection met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// May pass by itself (a lost connection, a timeout, a deadlock, the
    /// write side unavailable): retried for as long as it lasts.
    Transient,
    /// The projector refused the event as it is (unreadable, out of order,
    /// against an invariant of the read model).
    Rejected,
    /// The read database refused the event's changes (a constraint, a
    /// trigger): retrying the same event fails again.
    Database,
    /// A transport entry could not be trusted; it was ignored and the
    /// event store read instead.
    Untrusted,
    /// Parked behind an earlier parked event of its stream.
    Waiting,
    /// The runner itself failed (the store or the transport unreachable);
    /// it restarts.
    Runner,
}

impl FailureKind {
    /// The name stored in `dead_letters.error_kind` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Rejected => "rejected",
            FailureKind::Database => "database",
            FailureKind::Untrusted => "untrusted",
            FailureKind::Waiting => "waiting",
            FailureKind::Runner => "runner",
        }
    }

    /// The kind stored as `name` (an unknown name reads as `Database`: its
    /// text is not shown).
    pub fn parse(name: &str) -> Self {
        [Self::Transient, Self::Rejected, Self::Untrusted, Self::Waiting, Self::Runner]
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(FailureKind::Database)
    }

    /// The kind of a projection error the runtime did not classify as
    /// transient.
    pub fn of(err: &ProjectionError) -> Self {
        match err {
            ProjectionError::Rejected(_) => FailureKind::Rejected,
            ProjectionError::Unavailable(_) => FailureKind::Transient,
            ProjectionError::Db(_) => FailureKind::Database,
        }
    }

    /// Whether the failure's text was composed by this program about the
    /// event (and may be shown), not passed on from a driver.
    fn own_text(self) -> bool {
        matches!(self, FailureKind::Rejected | FailureKind::Untrusted | FailureKind::Waiting)
    }
}

/// A failure as shown outside the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// Names the log line (and the dead letter) with the detail; `None`
    /// for an event that only waits behind another.
    pub reference: Option<Uuid>,
    /// The reason, for kinds whose text this program composed.
    pub reason: Option<String>,
}

impl Failure {
    /// A failure of `kind` with `detail`, under a fresh reference. The
    /// caller logs `detail` with [`Failure::reference`].
    pub fn new(kind: FailureKind, detail: &dyn fmt::Display) -> Self {
        Failure::stored(kind, Some(Uuid::new_v4()), &detail.to_string())
    }

    /// A failure as recorded with a dead letter.
    pub fn stored(kind: FailureKind, reference: Option<Uuid>, detail: &str) -> Self {
        Failure { kind, reference, reason: kind.own_text().then(|| detail.to_owned()) }
    }

    /// An event parked behind an earlier parked event of its stream.
    pub fn waiting() -> Self {
        Failure::stored(FailureKind::Waiting, None, WAITING)
    }
}

/// One line for people: the kind, the reason when it may be shown, and
/// the reference to look up in the log.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.reason, self.kind) {
            (Some(reason), FailureKind::Rejected) => write!(f, "rejected: {reason}")?,
            (Some(reason), _) => f.write_str(reason)?,
            (None, FailureKind::Transient) => f.write_str("a transient failure, retried")?,
            (None, FailureKind::Runner) => f.write_str("the runner failed and restarts")?,
            (None, _) => f.write_str("the read database refused the event")?,
        }
        match self.reference {
            Some(reference) => write!(f, " (reference {reference}; details in the server log)"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_text_is_never_shown_and_own_text_is() {
        let sql = "error returned from database: relation \"x\" violates check constraint";
        let db = Failure::new(FailureKind::Database, &sql);
        assert_eq!(db.reason, None);
        let shown = db.to_string();
        assert!(!shown.contains("constraint") && shown.contains("reference"), "{shown}");
        let transient = Failure::new(FailureKind::Transient, &"pool timed out").to_string();
        assert!(!transient.contains("pool"), "{transient}");
        let rejected = Failure::new(FailureKind::Rejected, &"arrived before AccountOpened");
        assert!(rejected.to_string().starts_with("rejected: arrived before AccountOpened"));
    }

    #[test]
    fn kinds_read_back_as_stored() {
        for kind in [
            FailureKind::Transient,
            FailureKind::Rejected,
            FailureKind::Database,
            FailureKind::Untrusted,
            FailureKind::Waiting,
            FailureKind::Runner,
        ] {
            assert_eq!(FailureKind::parse(kind.as_str()), kind);
        }
        assert_eq!(FailureKind::parse("anything else"), FailureKind::Database);
    }
}
