//! Customers: registration, email changes and the `customers_view` queries.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pagination::{connection, id_cursor, page_size};
use super::payload::{MutationPayload, options, payload};
use super::{ApiError, caller, read_after, services};
use crate::service::CustomerSummary;

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

impl From<CustomerSummary> for Customer {
    fn from(c: CustomerSummary) -> Self {
        Customer {
            id: c.id,
            name: c.name,
            email: c.email,
            registered_at: c.registered_at,
            version: c.version,
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
        let options = options(ctx, input.command_id, input.expected_version);
        payload(
            services(ctx)?.register_customer(caller(ctx)?, input.name, input.email, options).await,
        )
    }

    async fn change_customer_email(
        &self,
        ctx: &Context<'_>,
        input: ChangeCustomerEmailInput,
    ) -> Result<MutationPayload> {
        let options = options(ctx, input.command_id, input.expected_version);
        payload(
            services(ctx)?
                .change_customer_email(caller(ctx)?, input.customer_id, input.email, options)
                .await,
        )
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
        let customer =
            services(ctx)?.customer(caller(ctx)?, id, read_after(ctx, &min_position)).await;
        Ok(customer.map_err(ApiError::from)?.map(Customer::from))
    }

    /// Customers in id order (ids are time-ordered UUIDs).
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_position: Option<String>,
    ) -> Result<Connection<String, Customer>> {
        let (limit, cursor) = (page_size(first)?, id_cursor(after.as_deref())?);
        let page = services(ctx)?
            .customers(caller(ctx)?, cursor, limit, read_after(ctx, &min_position))
            .await;
        let page = page.map_err(ApiError::from)?;
        Ok(connection(page, after.is_some(), |c| (c.id.to_string(), Customer::from(c))))
    }
}
