//! Helpers for tests of code built on the kernel. Declared `#[cfg(test)]`:
//! none of it is compiled into the binary.
//!
//! - [`AggregateTest`]: given a history, when a command, then the events or
//!   the rejection: an aggregate's rules tested as sentences, with no store.
//! - [`recorded`], [`stored`]: events as the store hands them back, for
//!   decoding and upcasting tests.

use std::fmt::Debug;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::aggregate::{self, Aggregate, DomainEvent, Rejection, RejectionKind};
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

/// An aggregate test as a sentence: `given` a history, `when` a command,
/// `then_*` the decision. `when` runs `handle` on the folded history as the
/// command executor does after a load, so a rule is tested without a store,
/// and a failed expectation prints history, command and decision rather than
/// a bare `unwrap` panic.
pub struct AggregateTest<A: Aggregate> {
    given: Vec<A::Event>,
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// The aggregate whose stream holds `events` ([`aggregate::given`]).
    pub fn given(events: &[A::Event]) -> Self {
        AggregateTest { given: events.to_vec(), state: aggregate::given(events) }
    }

    /// A stream that does not exist yet.
    pub fn given_no_events() -> Self {
        Self::given(&[])
    }

    /// The state after the given events, for checks on the fold itself.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides `command`. Borrows, so one history can face several commands.
    pub fn when<'a>(&'a self, command: &'a A::Command) -> Outcome<'a, A> {
        Outcome { test: self, command, result: self.state.handle(command) }
    }
}

/// What [`AggregateTest::when`] decided. Each `then_*` panics when its
/// expectation fails and returns the outcome, so expectations chain.
pub struct Outcome<'a, A: Aggregate> {
    test: &'a AggregateTest<A>,
    command: &'a A::Command,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Outcome<'_, A>
where
    A::Command: Debug,
    A::Event: Debug + PartialEq,
    A::Error: PartialEq,
{
    /// Accepted, deciding exactly `expected` in order (`&[]`: a no-op).
    #[track_caller]
    pub fn then_expect_events(self, expected: &[A::Event]) -> Self {
        assert_eq!(self.accepted(), expected, "unexpected events\n{}", self.context());
        self
    }

    /// Accepted, whatever it decided.
    #[track_caller]
    pub fn then_expect_accepted(self) -> Self {
        self.accepted();
        self
    }

    /// Rejected with exactly `expected`.
    #[track_caller]
    pub fn then_expect_rejection(self, expected: A::Error) -> Self {
        assert_eq!(self.rejected(), &expected, "unexpected rejection\n{}", self.context());
        self
    }

    /// Rejected with an error of the family `expected`: what the API reports.
    #[track_caller]
    pub fn then_expect_rejection_kind(self, expected: RejectionKind) -> Self
    where
        A::Error: Rejection,
    {
        let kind = self.rejected().kind();
        assert_eq!(kind, expected, "unexpected rejection kind\n{}", self.context());
        self
    }

    /// Accepted; `check` sees the state the stream loads as once the
    /// decision is appended.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        let mut state = self.test.state.clone();
        self.accepted().iter().for_each(|event| state.apply(event));
        check(&state);
        self
    }

    /// Accepted; the decided events, for a check no `then_*` expresses.
    #[track_caller]
    pub fn events(self) -> Vec<A::Event> {
        self.accepted().to_vec()
    }

    #[track_caller]
    fn accepted(&self) -> &[A::Event] {
        match &self.result {
            Ok(events) => events,
            Err(_) => panic!("expected the command to be accepted\n{}", self.context()),
        }
    }

    #[track_caller]
    fn rejected(&self) -> &A::Error {
        match &self.result {
            Err(error) => error,
            Ok(_) => panic!("expected the command to be rejected\n{}", self.context()),
        }
    }

    fn context(&self) -> String {
        let (given, command, result) = (&self.test.given, self.command, &self.result);
        format!("given: {given:?}\nwhen: {command:?}\ndecided: {result:?}")
    }
}
