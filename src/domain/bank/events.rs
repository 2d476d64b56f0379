use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::money::Money;
use crate::es::aggregate::DomainEvent;

/// Facts about one bank account. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BankEvent {
    /// Schema version 2: `customer_id`, the owning customer, if any.
    /// Version 1 had none; it is upcast to an account no customer owns.
    AccountOpened {
        owner: String,
        initial_deposit: Money,
        overdraft_limit: Money,
        #[serde(default)]
        customer_id: Option<Uuid>,
    },
    MoneyDeposited {
        amount: Money,
    },
    MoneyWithdrawn {
        amount: Money,
    },
    CheckWritten {
        check_number: String,
        amount: Money,
    },
}

impl DomainEvent for BankEvent {
    fn schema_version(&self) -> i32 {
        match self {
            BankEvent::AccountOpened { .. } => 2,
            _ => 1,
        }
    }
}

/// Upcasts a stored v1 `AccountOpened` payload (no owner customer) to v2
/// (`"customer_id": null`). An object that already has the field is
/// returned unchanged; anything else is left for the deserializer to reject.
pub fn upcast_account_opened_v1(mut payload: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        fields.entry("customer_id").or_insert(Value::Null);
    }
    payload
}
