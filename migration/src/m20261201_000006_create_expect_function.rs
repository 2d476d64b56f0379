//! PostgreSQL only: `eventfold_expect(ok, what)`, true when `ok` is,
//! otherwise an error (SQLSTATE `EF001`, "eventfold: expected …") that
//! rolls back the statement calling it. A projection group commits a live
//! batch as one statement with no transaction around it; this is how that
//! statement refuses itself, whole, when the checkpoints it locks are not
//! where the group last left them or when an event was not applied.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &str = r#"
CREATE FUNCTION eventfold_expect(ok boolean, what text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION 'eventfold: expected %', what USING ERRCODE = 'EF001';
  END IF;
  RETURN true;
END $$;
"#;

const DOWN: &str = "DROP FUNCTION IF EXISTS eventfold_expect(boolean, text);";

postgres_sql_migration!();
