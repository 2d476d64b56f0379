use serde::{Deserialize, Serialize};

use super::events::CustomerEvent;
use crate::domain::input::{MAX_TEXT, trimmed_text};
use crate::es::aggregate::{Aggregate, Rejection, RejectionKind};

/// Longest email accepted (the SMTP path limit).
pub const MAX_EMAIL: usize = 254;

/// What a customer command may ask. Texts are raw input; `handle` checks them.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    RegisterCustomer { name: String, email: String },
    ChangeCustomerEmail { email: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// `INVALID_STATE`: a customer is registered once.
    #[error("customer is already registered")]
    AlreadyRegistered,
    /// `NOT_FOUND`: the customer was never registered.
    #[error("customer does not exist")]
    NotFound,
    /// `VALIDATION_ERROR`: the name is empty or longer than 200 characters.
    #[error("name must be between 1 and {MAX_TEXT} characters")]
    InvalidName,
    /// `VALIDATION_ERROR`: the email is not `local@domain.tld` within 254
    /// characters.
    #[error("email must look like name@example.com and have at most {MAX_EMAIL} characters")]
    InvalidEmail,
}

impl Rejection for CustomerError {
    fn kind(&self) -> RejectionKind {
        match self {
            CustomerError::AlreadyRegistered => RejectionKind::InvalidState,
            CustomerError::NotFound => RejectionKind::NotFound,
            CustomerError::InvalidName | CustomerError::InvalidEmail => RejectionKind::Validation,
        }
    }
}

/// The state a decision needs, and nothing more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub registered: bool,
    pub name: String,
    /// `None` for customers registered before emails were collected (v1).
    pub email: Option<String>,
}

/// Trims and lowercases an email, then checks a deliberately simple shape:
/// one `@`, a non-empty local part, a domain with a dot and no empty label,
/// no whitespace, at most [`MAX_EMAIL`] characters. Deliverability is the
/// mailer's business, not the aggregate's.
pub fn normalize_email(value: &str) -> Result<String, CustomerError> {
    let email = value.trim().to_lowercase();
    if email.is_empty() || email.chars().count() > MAX_EMAIL {
        return Err(CustomerError::InvalidEmail);
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CustomerError::InvalidEmail);
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(CustomerError::InvalidEmail);
    };
    let domain_ok = domain.contains('.') && domain.split('.').all(|label| !label.is_empty());
    if local.is_empty() || domain.contains('@') || !domain_ok {
        return Err(CustomerError::InvalidEmail);
    }
    Ok(email)
}

impl Aggregate for Customer {
    const STREAM_TYPE: &'static str = "Customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;

    fn command_name(command: &CustomerCommand) -> &'static str {
        match command {
            CustomerCommand::RegisterCustomer { .. } => "RegisterCustomer",
            CustomerCommand::ChangeCustomerEmail { .. } => "ChangeCustomerEmail",
        }
    }

    fn handle(&self, command: &CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        match command {
            CustomerCommand::RegisterCustomer { name, email } => {
                if self.registered {
                    return Err(CustomerError::AlreadyRegistered);
                }
                let name = trimmed_text(name, MAX_TEXT).ok_or(CustomerError::InvalidName)?;
                let email = normalize_email(email)?;
                Ok(vec![CustomerEvent::CustomerRegistered { name, email: Some(email) }])
            }
            CustomerCommand::ChangeCustomerEmail { email } => {
                if !self.registered {
                    return Err(CustomerError::NotFound);
                }
                let email = normalize_email(email)?;
                if self.email.as_deref() == Some(email.as_str()) {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::CustomerEmailChanged { email }])
            }
        }
    }

    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::CustomerRegistered { name, email } => {
                self.registered = true;
                self.name = name.clone();
                self.email = email.clone();
            }
            CustomerEvent::CustomerEmailChanged { email } => self.email = Some(email.clone()),
        }
    }
}
