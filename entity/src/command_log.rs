use sea_orm::entity::prelude::*;

/// The result of every command that carried a `commandId`, written in the
/// same transaction as its events.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "command_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub command_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub result: Json,
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
