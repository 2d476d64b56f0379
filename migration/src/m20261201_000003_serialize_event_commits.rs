//! PostgreSQL only: appends of events commit one after another, in the
//! order of their positions, so a reader may pass every committed event
//! without waiting for the oldest transaction of the cluster.
//!
//! A statement trigger runs before every `INSERT` into `events`, i.e. before
//! its rows take their positions (the sequence) and their transaction its
//! id: it takes one transaction-level advisory lock, which the transaction
//! holds until it ends. PostgreSQL releases a transaction's locks only after
//! its commit is visible to new snapshots, so:
//! - two transactions that insert events hold the lock one after the other;
//! - the later one takes its transaction id and its positions after the
//!   earlier one's, and commits after it;
//! - hence `(tx_id, position)` order is commit order, and a snapshot that
//!   sees an event sees every event before it in that order.
//!
//! The order only holds if the transaction id is assigned under the lock:
//! a transaction that wrote anything before its first event (and so already
//! has an id) is refused, rather than let it break the order silently. The
//! lock uses the two-key form `(int, int)`, a key space the streams' bigint
//! advisory locks never touch. Held from the INSERT to the end of the
//! transaction only; stream locks and version checks come before it. A
//! holder that sits idle in its transaction for 10 s (a hung client) is
//! ended by the server (`idle_in_transaction_session_timeout`, set for that
//! transaction only), so it cannot stop every append for long.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &str = r#"
CREATE FUNCTION events_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('eventfold.commit_order_held', true) IS DISTINCT FROM 'on' THEN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
      RAISE EXCEPTION 'events must be the first write of their transaction'
        USING HINT = 'the commit-order lock must be taken before the transaction id';
    END IF;
    PERFORM pg_advisory_xact_lock(1702258030, 1);
    PERFORM set_config('eventfold.commit_order_held', 'on', true);
    PERFORM set_config('idle_in_transaction_session_timeout', '10s', true);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER events_commit_order BEFORE INSERT ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_commit_order();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS events_commit_order ON events;
DROP FUNCTION IF EXISTS events_commit_order();
"#;

postgres_sql_migration!();
