use sea_orm::entity::prelude::*;

/// How far one projection has applied the event log, in commit order.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "projection_checkpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub tx_id: i64,
    pub position: i64,
    pub updated_at: DateTimeUtc,
    /// The epoch of the partition lease this checkpoint was last written
    /// under (0 without leases): a lower epoch is a fenced-off worker.
    pub lease_epoch: i64,
    /// Whether the projection may have parked events: set by every
    /// transaction that parks one (under this row's lock), cleared by a
    /// projector that finds none left. While it is clear a batch needs no
    /// look for parked streams.
    pub parked: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
