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

/// Splits a domain event into its stored type string and payload.
///
/// Domain events are serde enums tagged `type` with content `data`, and the
/// tag is the stored type: [`Upcasters::decode`] rebuilds the same
/// `{"type", "data"}` shape, so what is written is exactly what is read. An
/// event serialized in any other shape (untagged, externally or internally
/// tagged) is an error rather than a row that could never be decoded.
pub fn encode<E: DomainEvent>(event: &E) -> Result<(String, Value), serde_json::Error> {
    let not_tagged = || {
        <serde_json::Error as serde::ser::Error>::custom(
            "a domain event must serialize as {\"type\": string, \"data\"?: payload}",
        )
    };
    let Value::Object(mut map) = serde_json::to_value(event)? else {
        return Err(not_tagged());
    };
    let Some(Value::String(event_type)) = map.remove("type") else {
        return Err(not_tagged());
    };
    // A unit variant has no `data`; it is stored as the empty payload `{}`.
    let payload = map.remove("data").unwrap_or_else(|| Value::Object(Default::default()));
    if !map.is_empty() {
        return Err(not_tagged());
    }
    Ok((event_type, payload))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::es::testing::stored;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Probe {
        Unit,
        Fields { n: u32 },
    }

    impl DomainEvent for Probe {}

    #[test]
    fn unit_and_struct_variants_round_trip_through_the_stored_shape() {
        for (event, name) in [(Probe::Unit, "Unit"), (Probe::Fields { n: 3 }, "Fields")] {
            let stored = stored(&event);
            assert_eq!(stored.event_type, name);
            let decoded: Probe = Upcasters::default().decode(&stored).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    enum ExternallyTagged {
        Fields { n: u32 },
    }

    impl DomainEvent for ExternallyTagged {}

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum InternallyTagged {
        Fields { n: u32 },
    }

    impl DomainEvent for InternallyTagged {}

    #[test]
    fn an_event_not_tagged_type_and_data_is_refused_rather_than_stored() {
        assert!(encode(&ExternallyTagged::Fields { n: 3 }).is_err());
        assert!(encode(&InternallyTagged::Fields { n: 3 }).is_err());
    }
}
