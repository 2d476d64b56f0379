//! Customers: registration, email changes and the `customers_view` queries.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::customers_view as view;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::pagination::{connection, page_size};
use super::{ApiError, ops::MutationPayload};
use crate::app::Services;
use crate::domain::customer::{Customer as CustomerAggregate, CustomerCommand};
use crate::projections::customers;

/// A customer as `customers_view` shows it.
#[derive(SimpleObject, Clone)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    /// Null for customers registered before emails were collected.
    pub email: Option<String>,
    pub registered_at: DateTime<Utc>,
    /// The customer stream's version this row reflects.
    pub version: i64,
}

impl From<view::Model> for Customer {
    fn from(m: view::Model) -> Self {
        Customer {
            id: m.customer_id,
            name: m.name,
            email: m.email,
            registered_at: m.registered_at,
            version: m.version,
        }
    }
}

#[derive(InputObject)]
pub struct RegisterCustomerInput {
    pub name: String,
    pub email: String,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct ChangeCustomerEmailInput {
    pub customer_id: Uuid,
    pub email: String,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<i64>,
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Registers a customer. With a `commandId`, the customer id is derived
    /// from it, so a retried request registers the customer once.
    async fn register_customer(
        &self,
        ctx: &Context<'_>,
        input: RegisterCustomerInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = CustomerCommand::RegisterCustomer { name: input.name, email: input.email };
        let id = services.new_stream_id(input.command_id);
        services
            .execute::<CustomerAggregate>(id, command, input.command_id, input.expected_version)
            .await
    }

    async fn change_customer_email(
        &self,
        ctx: &Context<'_>,
        input: ChangeCustomerEmailInput,
    ) -> Result<MutationPayload> {
        let services = ctx.data::<Arc<Services>>()?;
        let command = CustomerCommand::ChangeCustomerEmail { email: input.email };
        services
            .execute::<CustomerAggregate>(
                input.customer_id,
                command,
                input.command_id,
                input.expected_version,
            )
            .await
    }
}

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// One customer, or null if no such customer exists.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        min_position: Option<String>,
    ) -> Result<Option<Customer>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[customers::NAME], min_position.as_deref()).await?;
        let row =
            view::Entity::find_by_id(id).one(&services.read_db).await.map_err(ApiError::from)?;
        Ok(row.map(Customer::from))
    }

    /// Customers in id order (ids are time-ordered UUIDs).
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Customer>> {
        let services = ctx.data::<Arc<Services>>()?;
        services.wait_for(&[customers::NAME], min_position.as_deref()).await?;
        let limit = page_size(first)?;
        let mut query = view::Entity::find().order_by_asc(view::Column::CustomerId);
        if let Some(after) = &after {
            query = query.filter(view::Column::CustomerId.gt(cursor(after)?));
        }
        let rows = query.limit(limit + 1).all(&services.read_db).await.map_err(ApiError::from)?;
        let rows =
            rows.into_iter().map(|m| (m.customer_id.to_string(), Customer::from(m))).collect();
        Ok(connection(rows, limit, after.is_some()))
    }
}

/// Parses an `after` cursor of the id-ordered lists.
pub(crate) fn cursor(after: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(after).map_err(|_| ApiError::validation("after is not a cursor from this list"))
}
