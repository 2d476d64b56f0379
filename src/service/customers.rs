//! Customers: registration, email changes and `customers_view`.

use uuid::Uuid;

use super::{CommandOptions, Outcome, ServiceError, Services, new_stream_id};
use crate::domain::customer::{Customer, CustomerCommand};
use crate::read_models::Page;
use crate::read_models::customers::{self, query::CustomerSummary};

impl Services {
    async fn customer_command(
        &self,
        id: Uuid,
        command: CustomerCommand,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context()?;
        Ok(self.commands.execute::<Customer>(id, &command, &ctx).await?)
    }

    /// Registers a customer. With a `commandId`, the customer id is derived
    /// from it, so a retried request registers the customer once.
    pub async fn register_customer(
        &self,
        name: String,
        email: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = CustomerCommand::RegisterCustomer { name, email };
        self.customer_command(new_stream_id(options.command_id), command, options).await
    }

    pub async fn change_customer_email(
        &self,
        customer_id: Uuid,
        email: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let command = CustomerCommand::ChangeCustomerEmail { email };
        self.customer_command(customer_id, command, options).await
    }

    /// One customer, or `None` if no such customer exists.
    pub async fn customer(
        &self,
        id: Uuid,
        min_position: Option<&str>,
    ) -> Result<Option<CustomerSummary>, ServiceError> {
        self.wait_for(&[customers::NAME], min_position).await?;
        Ok(customers::query::find(&self.read_db, id).await?)
    }

    /// Customers in id order (ids are time-ordered UUIDs).
    pub async fn customers(
        &self,
        after: Option<Uuid>,
        limit: u64,
        min_position: Option<&str>,
    ) -> Result<Page<CustomerSummary>, ServiceError> {
        self.wait_for(&[customers::NAME], min_position).await?;
        Ok(customers::query::page(&self.read_db, after, limit).await?)
    }
}
