//! The registry of every upcaster the domain needs: each stored event shape
//! that changed is brought up to date here, one schema version at a time.

use crate::domain::customer::upcast_customer_registered_v1;
use crate::es::upcast::Upcasters;

pub fn upcasters() -> Upcasters {
    let mut upcasters = Upcasters::default();
    // v1 had no email; v2 records it as unknown.
    upcasters.register("CustomerRegistered", 1, upcast_customer_registered_v1);
    upcasters
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    use crate::domain::customer::CustomerEvent;
    use crate::es::envelope::{Position, RecordedEvent, StreamKey};

    #[test]
    fn a_stored_v1_customer_registered_decodes_as_v2_with_an_unknown_email() {
        let stored = RecordedEvent {
            position: Position::START,
            event_id: Uuid::now_v7(),
            stream: StreamKey::new("Customer", Uuid::now_v7()),
            version: 1,
            event_type: "CustomerRegistered".into(),
            schema_version: 1,
            payload: json!({ "name": "Ada" }),
            metadata: json!({}),
            recorded_at: Utc::now(),
        };
        let event: CustomerEvent = super::upcasters().decode(&stored).unwrap();
        assert_eq!(event, CustomerEvent::CustomerRegistered { name: "Ada".into(), email: None });
    }
}
