//! Settings a deployment records once, in its write database
//! (`deployment_settings`): what every process must share and what can no
//! longer change once data depends on it.
//!
//! The partition count is one. Projector checkpoints are kept per
//! partition (`NAME#p`), each covering the streams of its partition; with
//! another count a stream moves to a partition whose checkpoint may be
//! past events of that stream nobody applied, and they would be skipped.

use entity::projection_checkpoints as checkpoints;
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
};

const TABLE: &str = "deployment_settings";
const PARTITIONS: &str = "partitions";

/// The partition counts a process falls back on.
#[derive(Debug, Clone, Copy)]
pub struct PartitionDefaults {
    /// For a new deployment.
    pub new: u32,
    /// For one that ran before the count was recorded and has partition
    /// checkpoints (the default of that time).
    pub before_recording: u32,
}

/// The number of partition streams this process must use: the count the
/// deployment recorded; else, for a deployment from before the record,
/// `configured` or the count of that time; else `configured` or the new
/// default. Records it when nothing was. A `configured` count that differs
/// from the recorded one (or that is too small for the deployment's
/// existing checkpoints) is refused with the reason.
pub async fn partition_count(
    db: &DatabaseConnection,
    configured: Option<u32>,
    defaults: PartitionDefaults,
) -> anyhow::Result<u32> {
    if let Some(recorded) = recorded(db).await? {
        return agreed(configured, recorded);
    }
    let count = match (configured, highest_partition(db).await?) {
        (Some(c), Some(highest)) if c <= highest => anyhow::bail!(
            "PARTITIONS={c}, but this deployment has checkpoints of partition {highest}: its \
             events were partitioned into more streams, and a smaller count would skip events. \
             Run with the count it was started with (it was {} unless PARTITIONS was set).",
            Ord::max(defaults.before_recording, highest + 1)
        ),
        (Some(c), _) => c,
        (None, Some(highest)) => Ord::max(defaults.before_recording, highest + 1),
        (None, None) => defaults.new,
    };
    let record = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns([Alias::new("name"), Alias::new("value")])
        .values_panic([PARTITIONS.into(), i64::from(count).into()])
        .on_conflict(OnConflict::column(Alias::new("name")).do_nothing().to_owned())
        .to_owned();
    db.execute(&record).await?;
    // Another process may have recorded its count first.
    agreed(configured, recorded(db).await?.unwrap_or(count))
}

fn agreed(configured: Option<u32>, recorded: u32) -> anyhow::Result<u32> {
    match configured {
        Some(c) if c != recorded => anyhow::bail!(
            "PARTITIONS={c}, but this deployment partitions its events into {recorded} streams \
             (recorded in its database when it first started with Redis): projector checkpoints \
             are kept per partition, and another count would skip events. Run with \
             PARTITIONS={recorded}, or leave it unset."
        ),
        _ => Ok(recorded),
    }
}

async fn recorded(db: &DatabaseConnection) -> anyhow::Result<Option<u32>> {
    let select = Query::select()
        .column(Alias::new("value"))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("name")).eq(PARTITIONS))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else { return Ok(None) };
    let value: i64 = row.try_get_by_index(0)?;
    Ok(Some(u32::try_from(value)?))
}

/// The highest partition number among the projector checkpoints
/// (`NAME#p`), if any.
async fn highest_partition(db: &DatabaseConnection) -> anyhow::Result<Option<u32>> {
    let names: Vec<String> = checkpoints::Entity::find()
        .select_only()
        .column(checkpoints::Column::Name)
        .filter(checkpoints::Column::Name.like("%#%"))
        .into_tuple()
        .all(db)
        .await?;
    Ok(names.iter().filter_map(|n| n.rsplit_once('#')?.1.parse::<u32>().ok()).max())
}
