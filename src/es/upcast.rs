//! Upcasting: old stored event shapes are converted on read, one schema
//! version at a time, so the domain only ever sees the current shape.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::aggregate::DomainEvent;
use super::envelope::RecordedEvent;

type UpcastFn = Box<dyn Fn(Value) -> Value + Send + Sync>;

/// Registry of upcasters keyed by (event type, schema version they read).
#[derive(Default)]
pub struct Upcasters {
    steps: HashMap<(String, i32), UpcastFn>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type} v{schema_version}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub schema_version: i32,
    pub reason: String,
}

impl Upcasters {
    /// Registers the step that turns `event_type` at `from_version` into
    /// `from_version + 1`.
    pub fn register(
        &mut self,
        event_type: &str,
        from_version: i32,
        step: impl Fn(Value) -> Value + Send + Sync + 'static,
    ) -> &mut Self {
        self.steps.insert((event_type.to_owned(), from_version), Box::new(step));
        self
    }

    /// Brings a payload up to the newest version the registry knows.
    pub fn upcast(&self, event_type: &str, mut version: i32, mut payload: Value) -> (i32, Value) {
        while let Some(step) = self.steps.get(&(event_type.to_owned(), version)) {
            payload = step(payload);
            version += 1;
        }
        (version, payload)
    }

    /// Decodes a stored event into the domain's event type, upcasting first.
    pub fn decode<E: DomainEvent + DeserializeOwned>(
        &self,
        event: &RecordedEvent,
    ) -> Result<E, DecodeError> {
        let (version, payload) =
            self.upcast(&event.event_type, event.schema_version, event.payload.clone());
        let tagged = json!({ "type": event.event_type, "data": payload });
        let decoded: E = serde_json::from_value(tagged).map_err(|e| DecodeError {
            event_type: event.event_type.clone(),
            schema_version: version,
            reason: e.to_string(),
        })?;
        if decoded.schema_version() != version {
            return Err(DecodeError {
                event_type: event.event_type.clone(),
                schema_version: version,
                reason: format!("no upcaster to v{}", decoded.schema_version()),
            });
        }
        Ok(decoded)
    }
}

/// Splits a domain event into its stored type string and payload. Domain
/// events are serde enums tagged `type` with content `data`.
pub fn encode<E: DomainEvent>(event: &E) -> Result<(String, Value), serde_json::Error> {
    let value = serde_json::to_value(event)?;
    let payload = match value {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Object(Default::default())),
        other => other,
    };
    Ok((event.event_type().to_owned(), payload))
}
