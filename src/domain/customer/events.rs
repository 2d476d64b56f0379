use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::es::aggregate::DomainEvent;

/// Facts about one customer. The serde tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CustomerEvent {
    /// Schema version 2. Version 1 carried only `name`; its email is unknown
    /// (`None`), never invented. `#[serde(default)]` keeps a v1 payload that
    /// skipped the upcaster readable too.
    CustomerRegistered {
        name: String,
        #[serde(default)]
        email: Option<String>,
    },
    CustomerEmailChanged {
        email: String,
    },
}

impl DomainEvent for CustomerEvent {
    fn schema_version(&self) -> i32 {
        match self {
            CustomerEvent::CustomerRegistered { .. } => 2,
            CustomerEvent::CustomerEmailChanged { .. } => 1,
        }
    }
}

/// Upcasts a stored v1 `CustomerRegistered` payload (`{"name"}`) to v2
/// (`{"name", "email": null}`).
///
/// Accepts either the bare payload or the tagged `{"type", "data"}` shape the
/// event serializes to. A payload that already has `email` is returned
/// unchanged, so upcasting twice is harmless; anything that is not an object
/// is returned as is for the deserializer to reject.
pub fn upcast_customer_registered_v1(mut payload: Value) -> Value {
    let tagged = payload.get("type").and_then(Value::as_str) == Some("CustomerRegistered")
        && payload.get("data").is_some_and(Value::is_object);
    let fields = if tagged { payload.get_mut("data") } else { Some(&mut payload) };
    if let Some(Value::Object(fields)) = fields {
        fields.entry("email").or_insert(Value::Null);
    }
    payload
}
