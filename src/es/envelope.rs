//! Events as stored: the envelope around a domain event's payload.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an event sits in the log, in commit order.
///
/// `tx` is the id of the transaction that wrote the event (0 where the store
/// has a single writer) and `pos` its global position. Ordering by `(tx, pos)`
/// is the order in which readers are guaranteed to see events without gaps:
/// a sequence number alone is not commit-ordered. On the wire it is an opaque
/// string `"tx.pos"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub tx: i64,
    pub pos: i64,
}

impl Position {
    pub const START: Position = Position { tx: 0, pos: 0 };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tx, self.pos)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a position: expected the opaque string returned by a mutation")]
pub struct BadPosition;

impl FromStr for Position {
    type Err = BadPosition;
    fn from_str(s: &str) -> Result<Self, BadPosition> {
        let (tx, pos) = s.split_once('.').ok_or(BadPosition)?;
        let tx = tx.parse().map_err(|_| BadPosition)?;
        let pos = pos.parse().map_err(|_| BadPosition)?;
        if tx < 0 || pos < 0 {
            return Err(BadPosition);
        }
        Ok(Position { tx, pos })
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Identifies one event stream: the aggregate type and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamKey {
    pub stream_type: String,
    pub stream_id: Uuid,
}

impl StreamKey {
    pub fn new(stream_type: &str, stream_id: Uuid) -> Self {
        StreamKey { stream_type: stream_type.to_owned(), stream_id }
    }
}

/// The business transaction an event belongs to: every event a request
/// caused, directly or through process managers, carries the same one.
///
/// A client may choose it (the `X-Correlation-Id` header), so it is text:
/// 1 to [`CorrelationId::MAX_LEN`] printable ASCII characters, no spaces.
/// Values read back from the store are taken as they were stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "a correlation id is 1 to {} printable ASCII characters without spaces",
    CorrelationId::MAX_LEN
)]
pub struct BadCorrelationId;

impl CorrelationId {
    pub const MAX_LEN: usize = 128;

    /// A new correlation id (a UUIDv7).
    pub fn new() -> Self {
        CorrelationId(Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        CorrelationId::new()
    }
}

impl FromStr for CorrelationId {
    type Err = BadCorrelationId;
    fn from_str(s: &str) -> Result<Self, BadCorrelationId> {
        let printable = s.bytes().all(|b| b.is_ascii_graphic());
        if s.is_empty() || s.len() > Self::MAX_LEN || !printable {
            return Err(BadCorrelationId);
        }
        Ok(CorrelationId(s.to_owned()))
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who and what caused an event: stored beside every payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// Shared by every event of one business transaction.
    pub correlation_id: CorrelationId,
    /// What caused the command that recorded the event: the event a
    /// process manager reacted to, or the client's `commandId` for a
    /// command from the API (none when the client gave none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// Set when the stream travels in another stream's partition (see
    /// [`crate::es::aggregate::Aggregate::partition_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<Uuid>,
    /// The W3C trace context of the span that appended the event, when
    /// traces are exported: the relay and the projectors link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Who issued the command that recorded an event: a role (`admin`,
/// `clerk`, `customer`, `anonymous`, or `process` for a process manager)
/// and the subject, when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredActor")]
pub struct Actor {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// The shapes an actor was stored in: a bare name in early events (a
/// process manager's), a role and subject since.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredActor {
    Full {
        role: String,
        #[serde(default)]
        sub: Option<String>,
    },
    Name(String),
}

impl From<StoredActor> for Actor {
    fn from(stored: StoredActor) -> Self {
        match stored {
            StoredActor::Full { role, sub } => Actor { role, sub },
            StoredActor::Name(name) => Actor { role: "process".into(), sub: Some(name) },
        }
    }
}

impl EventMetadata {
    /// This metadata for events of stream `id` whose partition key is `key`.
    pub fn for_partition(&self, id: Uuid, key: Uuid) -> EventMetadata {
        EventMetadata { partition_key: (key != id).then_some(key), ..self.clone() }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event as read back from the store (and as carried by a transport).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: Position,
    pub event_id: Uuid,
    pub stream: StreamKey,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_sequence() {
        let early_tx_late_seq = Position { tx: 5, pos: 9 };
        let late_tx_early_seq = Position { tx: 6, pos: 8 };
        assert!(early_tx_late_seq < late_tx_early_seq);
    }

    #[test]
    fn an_actor_reads_from_its_stored_shapes() {
        let old: EventMetadata = serde_json::from_value(serde_json::json!({
            "correlation_id": Uuid::nil(), "actor": "shipping_process"
        }))
        .unwrap();
        let actor = Actor { role: "process".into(), sub: Some("shipping_process".into()) };
        assert_eq!(old.actor, Some(actor));
        let new = Actor { role: "clerk".into(), sub: Some("bob".into()) };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json, serde_json::json!({ "role": "clerk", "sub": "bob" }));
        assert_eq!(serde_json::from_value::<Actor>(json).unwrap(), new);
    }

    #[test]
    fn a_correlation_id_is_short_printable_text() {
        assert!("req-42/abc".parse::<CorrelationId>().is_ok());
        let too_long = "x".repeat(CorrelationId::MAX_LEN + 1);
        for bad in ["", "a b", "tab\t", "é", too_long.as_str()] {
            assert!(bad.parse::<CorrelationId>().is_err(), "{bad:?}");
        }
        let stored = serde_json::json!({ "correlation_id": "order-7" });
        let metadata: EventMetadata = serde_json::from_value(stored).unwrap();
        assert_eq!(metadata.correlation_id.as_str(), "order-7");
    }

    #[test]
    fn positions_round_trip_through_their_string_form() {
        let p = Position { tx: 123, pos: 45 };
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        for bad in ["", "1", "a.b", "1.", "-1.2", "1.2.3"] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
