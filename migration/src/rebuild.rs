//! DDL for projection rebuilds on PostgreSQL, kept here so the schema has
//! one source. A rebuild migrates a shadow schema with the same migrations,
//! fills it, then swaps the projection's tables into `public` in one
//! transaction; the old tables go to a retired schema and are dropped.
//!
//! Each projection has shadow and retired schemas of its own, so rebuilds of
//! two different projections run side by side without dropping each other's
//! tables. Two rebuilds of the same projection must not run at once: the
//! caller holds that projection's rebuild lock around everything here.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr};

/// Longest identifier PostgreSQL keeps; a longer one is silently cut, and
/// two cut names could collide.
const MAX_IDENT: usize = 63;

fn ident(name: &str) -> Result<&str, DbErr> {
    if !name.is_empty()
        && name.len() <= MAX_IDENT
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(name)
    } else {
        Err(DbErr::Custom(format!("not a plain identifier: {name:?}")))
    }
}

/// The schemas one projection's rebuild works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildSchemas {
    /// Where the new tables are built.
    pub shadow: String,
    /// Where the replaced tables go before being dropped.
    pub retired: String,
}

impl RebuildSchemas {
    /// The schemas of `projection`'s rebuild.
    pub fn of(projection: &str) -> Result<Self, DbErr> {
        let schemas = RebuildSchemas {
            shadow: format!("eventfold_rebuild_{projection}"),
            retired: format!("eventfold_retired_{projection}"),
        };
        ident(&schemas.shadow)?;
        ident(&schemas.retired)?;
        Ok(schemas)
    }
}

/// Creates empty shadow and retired schemas (dropping the leftovers of a
/// rebuild of the same projection that did not finish).
pub async fn prepare<C: ConnectionTrait>(db: &C, schemas: &RebuildSchemas) -> Result<(), DbErr> {
    let RebuildSchemas { shadow, retired } = schemas;
    db.execute_unprepared(&format!(
        "DROP SCHEMA IF EXISTS {shadow} CASCADE; DROP SCHEMA IF EXISTS {retired} CASCADE; \
         CREATE SCHEMA {shadow}; CREATE SCHEMA {retired};"
    ))
    .await?;
    Ok(())
}

/// Creates `tables` in the shadow schema, empty, each exactly like its
/// live twin in `public` (columns, defaults, identity, constraints,
/// indexes): the live schema is the migrated one, since every process
/// migrates on start. Much cheaper than migrating the whole read schema
/// into the shadow, which made the set-up dominate a small rebuild.
pub async fn create_shadow_tables<C: ConnectionTrait>(
    db: &C,
    schemas: &RebuildSchemas,
    tables: &[&str],
) -> Result<(), DbErr> {
    let shadow = &schemas.shadow;
    let mut sql = String::new();
    for table in tables {
        let t = ident(table)?;
        sql.push_str(&format!("CREATE TABLE {shadow}.{t} (LIKE public.{t} INCLUDING ALL);"));
    }
    db.execute_unprepared(&sql).await?;
    Ok(())
}

/// Moves `tables` from the shadow schema into `public`, retiring the
/// current ones. Run inside the swap transaction.
pub async fn swap<C: ConnectionTrait>(
    txn: &C,
    schemas: &RebuildSchemas,
    tables: &[&str],
) -> Result<(), DbErr> {
    let RebuildSchemas { shadow, retired } = schemas;
    for table in tables {
        let t = ident(table)?;
        txn.execute_unprepared(&format!(
            "ALTER TABLE public.{t} SET SCHEMA {retired}; ALTER TABLE {shadow}.{t} SET SCHEMA public;"
        ))
        .await?;
    }
    Ok(())
}

/// Drops what the swap left behind.
pub async fn clean_up<C: ConnectionTrait>(db: &C, schemas: &RebuildSchemas) -> Result<(), DbErr> {
    let RebuildSchemas { shadow, retired } = schemas;
    db.execute_unprepared(&format!(
        "DROP SCHEMA IF EXISTS {shadow} CASCADE; DROP SCHEMA IF EXISTS {retired} CASCADE;"
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_projection_rebuilds_in_schemas_of_its_own() {
        let a = RebuildSchemas::of("bank_account_summary").unwrap();
        let b = RebuildSchemas::of("account_balance_history").unwrap();
        assert_ne!(a.shadow, b.shadow);
        assert_ne!(a.retired, b.retired);
        assert_ne!(a.shadow, a.retired);
    }

    #[test]
    fn a_name_postgres_would_cut_or_quote_is_refused() {
        assert!(RebuildSchemas::of(&"x".repeat(50)).is_err());
        assert!(RebuildSchemas::of("Robert'); DROP TABLE events; --").is_err());
    }
}
