//! DDL for projection rebuilds on PostgreSQL, kept here so the schema has
//! one source. A rebuild migrates a shadow schema with the same migrations,
//! fills it, then swaps the projection's tables into `public` in one
//! transaction; the old tables go to a retired schema and are dropped.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr};

/// Schema the new tables are built in.
pub const SHADOW: &str = "eventfold_rebuild";
/// Schema the replaced tables are moved to before being dropped.
pub const RETIRED: &str = "eventfold_retired";

fn ident(name: &str) -> Result<&str, DbErr> {
    if !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(name)
    } else {
        Err(DbErr::Custom(format!("not a plain table name: {name:?}")))
    }
}

/// Creates empty shadow and retired schemas (dropping leftovers of a
/// rebuild that did not finish).
pub async fn prepare<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "DROP SCHEMA IF EXISTS {SHADOW} CASCADE; DROP SCHEMA IF EXISTS {RETIRED} CASCADE; \
         CREATE SCHEMA {SHADOW}; CREATE SCHEMA {RETIRED};"
    ))
    .await?;
    Ok(())
}

/// Moves `tables` from the shadow schema into `public`, retiring the
/// current ones. Run inside the swap transaction.
pub async fn swap<C: ConnectionTrait>(txn: &C, tables: &[&str]) -> Result<(), DbErr> {
    for table in tables {
        let t = ident(table)?;
        txn.execute_unprepared(&format!(
            "ALTER TABLE public.{t} SET SCHEMA {RETIRED}; ALTER TABLE {SHADOW}.{t} SET SCHEMA public;"
        ))
        .await?;
    }
    Ok(())
}

/// Drops what the swap left behind.
pub async fn clean_up<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "DROP SCHEMA IF EXISTS {SHADOW} CASCADE; DROP SCHEMA IF EXISTS {RETIRED} CASCADE;"
    ))
    .await?;
    Ok(())
}
