use sea_orm::entity::prelude::*;

/// An event a projection gave up on after repeated failures.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub projection: String,
    pub position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub event_type: String,
    /// The error's full text, for operators (never shown by the API).
    pub error: String,
    /// The failure's kind: `rejected`, `database`, `waiting`, …
    pub error_kind: String,
    /// The reference of the log line with the error (none for `waiting`).
    pub error_reference: Option<Uuid>,
    pub attempts: i32,
    pub parked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
