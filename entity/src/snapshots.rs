use sea_orm::entity::prelude::*;

/// The latest snapshot of one stream's aggregate state.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "snapshots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub stream_type: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub stream_id: Uuid,
    pub version: i64,
    pub state_version: i32,
    pub state: Json,
    pub taken_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
