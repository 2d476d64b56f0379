//! Customers: registration, email changes and `customers_view`.

use uuid::Uuid;

use super::{Caller, CommandOptions, MinPosition, Outcome, ServiceError, Services, new_stream_id};
use crate::domain::customer::{Customer, CustomerCommand};
use crate::read_models::Page;
use crate::read_models::customers::{self, query::CustomerSummary};

/// Another customer, as a customer sees it: absent.
fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!("customer {id} does not exist"))
}

impl Services {
    async fn customer_command(
        &self,
        caller: &Caller,
        id: Uuid,
        command: CustomerCommand,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        let ctx = options.context(caller)?;
        Ok(self.commands.execute::<Customer>(id, &command, &ctx).await?)
    }

    /// Registers a customer. A customer's token registers itself: the new
    /// customer's id is its `sub`. Staff register anyone: with a
    /// `commandId`, the customer id is derived from it, so a retried
    /// request registers the customer once.
    pub async fn register_customer(
        &self,
        caller: &Caller,
        name: String,
        email: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_signed_in()?;
        let id = match caller.customer() {
            Some(own) => own,
            None => {
                caller.require_staff()?;
                new_stream_id(options.command_id)
            }
        };
        let command = CustomerCommand::RegisterCustomer { name, email };
        self.customer_command(caller, id, command, options).await
    }

    /// Changes a customer's email: a customer its own, staff anyone's.
    pub async fn change_customer_email(
        &self,
        caller: &Caller,
        customer_id: Uuid,
        email: String,
        options: CommandOptions,
    ) -> Result<Outcome, ServiceError> {
        caller.require_signed_in()?;
        if !caller.may_see(Some(customer_id)) {
            return Err(not_found(customer_id));
        }
        let command = CustomerCommand::ChangeCustomerEmail { email };
        self.customer_command(caller, customer_id, command, options).await
    }

    /// One customer, or `None` if no such customer exists (or it is not
    /// the caller's).
    pub async fn customer(
        &self,
        caller: &Caller,
        id: Uuid,
        min_position: MinPosition<'_>,
    ) -> Result<Option<CustomerSummary>, ServiceError> {
        caller.require_signed_in()?;
        if !caller.may_see(Some(id)) {
            return Ok(None);
        }
        self.wait_for(&[customers::NAME], min_position).await?;
        Ok(customers::query::find(&self.read_db, id).await?)
    }

    /// Customers in id order (ids are time-ordered UUIDs); a customer sees
    /// only itself.
    pub async fn customers(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        limit: u64,
        min_position: MinPosition<'_>,
    ) -> Result<Page<CustomerSummary>, ServiceError> {
        caller.require_signed_in()?;
        self.wait_for(&[customers::NAME], min_position).await?;
        Ok(customers::query::page(&self.read_db, after, limit, caller.customer()).await?)
    }
}
