//! Reading `customers_view`.

use chrono::{DateTime, Utc};
use entity::customers_view as view;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::read_models::{Page, page_by_key};

/// A customer as the view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary {
    pub id: Uuid,
    pub name: String,
    /// `None` for customers registered before emails were collected.
    pub email: Option<String>,
    pub registered_at: DateTime<Utc>,
    /// The customer stream's version this row reflects.
    pub version: i64,
}

impl From<view::Model> for CustomerSummary {
    fn from(m: view::Model) -> Self {
        CustomerSummary {
            id: m.customer_id,
            name: m.name,
            email: m.email,
            registered_at: m.registered_at,
            version: m.version,
        }
    }
}

/// One customer, if it exists.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<CustomerSummary>, DbErr> {
    Ok(view::Entity::find_by_id(id).one(db).await?.map(CustomerSummary::from))
}

/// Customers in id order (ids are time-ordered UUIDs), after `after`;
/// with `only`, just that customer.
pub async fn page(
    db: &DatabaseConnection,
    after: Option<Uuid>,
    limit: u64,
    only: Option<Uuid>,
) -> Result<Page<CustomerSummary>, DbErr> {
    let page =
        page_by_key::<view::Entity>(db, view::Column::CustomerId, after, limit, |q| match only {
            Some(id) => q.filter(view::Column::CustomerId.eq(id)),
            None => q,
        })
        .await?;
    page.try_map(|m| Ok(CustomerSummary::from(m)))
}
