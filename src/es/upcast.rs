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
        // A unit variant is stored with the empty payload `{}` and has no
        // content to deserialize.
        let unit = payload.as_object().is_some_and(|fields| fields.is_empty());
        let tagged = json!({ "type": event.event_type, "data": payload });
        let decoded = serde_json::from_value::<E>(tagged).or_else(|e| {
            if unit {
                serde_json::from_value::<E>(json!({ "type": event.event_type })).map_err(|_| e)
            } else {
                Err(e)
            }
        });
        let decoded = decoded.map_err(|e| DecodeError {
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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    use super::*;
    use crate::es::envelope::{Position, StreamKey};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Probe {
        Unit,
        Fields { n: u32 },
    }

    impl DomainEvent for Probe {
        fn event_type(&self) -> &'static str {
            match self {
                Probe::Unit => "Unit",
                Probe::Fields { .. } => "Fields",
            }
        }
    }

    fn stored(event: &Probe) -> RecordedEvent {
        let (event_type, payload) = encode(event).unwrap();
        RecordedEvent {
            position: Position::START,
            event_id: Uuid::now_v7(),
            stream: StreamKey::new("Probe", Uuid::now_v7()),
            version: 1,
            event_type,
            schema_version: 1,
            payload,
            metadata: json!({}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn unit_and_struct_variants_round_trip_through_the_stored_shape() {
        for event in [Probe::Unit, Probe::Fields { n: 3 }] {
            let decoded: Probe = Upcasters::default().decode(&stored(&event)).unwrap();
            assert_eq!(decoded, event);
        }
    }
}
