//! Helpers for tests of code built on the kernel. Declared `#[cfg(test)]`:
//! none of it is compiled into the binary.

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::aggregate::DomainEvent;
use super::envelope::{Position, RecordedEvent, StreamKey};
use super::upcast::encode;

/// `payload` as the store would hand it back, stored as `event_type` at
/// `schema_version`, so decoding and upcasting are tested without a database.
pub fn recorded(event_type: &str, schema_version: i32, payload: Value) -> RecordedEvent {
    RecordedEvent {
        position: Position::START,
        event_id: Uuid::now_v7(),
        stream: StreamKey::new("Test", Uuid::now_v7()),
        version: 1,
        event_type: event_type.to_owned(),
        schema_version,
        payload,
        metadata: Value::Object(Default::default()),
        recorded_at: Utc::now(),
    }
}

/// `event` written the way the command executor writes it (see
/// [`encode`]) and read back.
pub fn stored<E: DomainEvent>(event: &E) -> RecordedEvent {
    let (event_type, payload) = encode(event).expect("a domain event encodes");
    recorded(&event_type, event.schema_version(), payload)
}
