use serde::{Deserialize, Serialize};

use crate::domain::money::Money;
use crate::es::aggregate::DomainEvent;

/// Facts about one bank account. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BankEvent {
    AccountOpened { owner: String, initial_deposit: Money, overdraft_limit: Money },
    MoneyDeposited { amount: Money },
    MoneyWithdrawn { amount: Money },
    CheckWritten { check_number: String, amount: Money },
}

impl DomainEvent for BankEvent {}
