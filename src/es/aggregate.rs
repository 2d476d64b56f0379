//! The aggregate contract: pure decision (`handle`) and pure bookkeeping
//! (`apply`). Aggregates never perform I/O; anything external they need is
//! looked up by the caller and carried inside the command.

use serde::{Serialize, de::DeserializeOwned};

/// An event as the domain defines it: a past-tense fact with a stable type
/// string and a schema version. Stored type strings are never renamed; an old
/// shape is upcast on read (see [`crate::es::upcast`]).
///
/// The type string has one declaration: the implementor is a serde enum
/// tagged `#[serde(tag = "type", content = "data")]`, and the variant's tag is
/// what [`encode`](crate::es::upcast::encode) stores in the `event_type`
/// column and what decoding matches on, so the two cannot drift apart.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The version of this event's payload shape, stored beside it.
    fn schema_version(&self) -> i32 {
        1
    }
}

/// A consistency boundary rebuilt by folding its events.
///
/// Invariant: `apply` must accept every event `handle` ever produced, past or
/// present, and must never fail: events are facts that already happened.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The `stream_type` under which this aggregate's events are stored.
    const STREAM_TYPE: &'static str;
    /// Version of the serialized state; a snapshot written with another
    /// version is ignored and the state is rebuilt from events.
    const STATE_VERSION: i32 = 1;

    /// Cloned into the stream's queue, where the holder of the stream's
    /// lock may decide it in a batch with others.
    type Command: Clone + Send + Sync + 'static;
    type Event: DomainEvent;
    type Error: std::error::Error + Rejection + Send + Sync + 'static;

    /// Checks the business rules against the current state and decides which
    /// events the command produces. An empty vector means "nothing to do".
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The command's name, for metrics (`DepositMoney`); by default the
    /// stream type.
    fn command_name(command: &Self::Command) -> &'static str {
        let _ = command;
        Self::STREAM_TYPE
    }

    /// The id whose partition this stream's events travel in, given the
    /// state after the events. A stream whose read model must see it in
    /// order with another stream (a shipment with its order) names that
    /// stream's id; by default every stream is its own key.
    fn partition_key(&self, id: uuid::Uuid) -> uuid::Uuid {
        id
    }
}

/// How a domain rule rejection maps onto the public API. Each domain error
/// type states which family it belongs to; adapters turn the family into an
/// error code without knowing the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// Input is malformed or out of range (`VALIDATION_ERROR`).
    Validation,
    /// The aggregate is not in a state that allows the command (`INVALID_STATE`).
    InvalidState,
    /// A referenced entity does not exist (`NOT_FOUND`).
    NotFound,
    /// Not enough money (`INSUFFICIENT_FUNDS`).
    InsufficientFunds,
    /// Not enough stock (`INSUFFICIENT_STOCK`).
    InsufficientStock,
}

/// Implemented by every domain error so the API can classify it.
pub trait Rejection {
    fn kind(&self) -> RejectionKind;
}

/// The state of a stream holding `events`, folded from the default state as
/// a load without a snapshot does. Aggregate tests build their histories on
/// it (`es::testing::AggregateTest`).
pub fn given<A: Aggregate>(events: &[A::Event]) -> A {
    let mut state = A::default();
    for event in events {
        state.apply(event);
    }
    state
}
