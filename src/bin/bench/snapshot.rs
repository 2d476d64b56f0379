//! Load time of a 10,000-event bank account stream through the library's
//! event store and command executor, without and with a snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::Utc;
use eventfold::domain::bank::{BankAccount, BankEvent};
use eventfold::domain::money::Money;
use eventfold::es::aggregate::{Aggregate, DomainEvent};
use eventfold::es::command::{CommandExecutor, CommandSettings};
use eventfold::es::envelope::{EventMetadata, NewEvent, StreamKey};
use eventfold::es::store::{EventStore, Snapshot, StreamAppend};
use eventfold::es::upcast::encode;
use eventfold::infra::event_store::SeaEventStore;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Events in the stream.
pub(crate) const EVENTS: i64 = 10_000;
/// The snapshot sits this many events before the head: half of the default
/// snapshot interval (50), the average tail a loader reads after it.
const TAIL: i64 = 25;

pub(crate) struct SnapshotLoad {
    pub(crate) without_ms: f64,
    pub(crate) with_ms: f64,
    pub(crate) runs: usize,
}

fn event(e: &BankEvent) -> anyhow::Result<NewEvent> {
    let (event_type, payload) = encode(e)?;
    Ok(NewEvent {
        event_id: Uuid::now_v7(),
        event_type,
        schema_version: e.schema_version(),
        payload,
        metadata: EventMetadata::default(),
    })
}

/// Appends events up to `to` (version), in batches of 500 per transaction.
async fn append_until(
    store: &dyn EventStore,
    stream: &StreamKey,
    from: i64,
    to: i64,
) -> anyhow::Result<()> {
    let deposit = BankEvent::MoneyDeposited { amount: Money::positive(Decimal::ONE, "amount")? };
    let mut version = from;
    while version < to {
        let n = (to - version).min(500);
        let mut events = Vec::with_capacity(n as usize);
        for v in version + 1..=version + n {
            events.push(event(&if v == 1 {
                BankEvent::AccountOpened {
                    owner: "snapshot bench".into(),
                    initial_deposit: Money::ZERO,
                    overdraft_limit: Money::ZERO,
                    customer_id: None,
                }
            } else {
                deposit.clone()
            })?);
        }
        let append = StreamAppend { stream: stream.clone(), expected_version: version, events };
        store.append(vec![append], None).await?;
        version += n;
    }
    Ok(())
}

/// Median wall time of `runs` loads, checking each gives `expected`.
async fn median_load(
    executor: &CommandExecutor,
    id: Uuid,
    runs: usize,
    expected: Option<&BankAccount>,
) -> anyhow::Result<(f64, BankAccount)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = BankAccount::default();
    for _ in 0..runs {
        let started = Instant::now();
        let loaded = executor.load::<BankAccount>(id).await?;
        times.push(started.elapsed());
        ensure!(loaded.version == EVENTS, "loaded version {} instead of {EVENTS}", loaded.version);
        if let Some(expected) = expected {
            ensure!(&loaded.state == expected, "snapshot load differs from a full replay");
        }
        last = loaded.state;
    }
    times.sort();
    let median: Duration = times[times.len() / 2];
    Ok((median.as_secs_f64() * 1000.0, last))
}

pub(crate) async fn measure(database_url: &str, runs: usize) -> anyhow::Result<SnapshotLoad> {
    let db = eventfold::infra::db::connect(database_url, 4).await?;
    let store: Arc<dyn EventStore> = Arc::new(SeaEventStore::new(db.clone()));
    let settings = CommandSettings { snapshot_every: 0, ..Default::default() };
    let executor =
        CommandExecutor::new(store.clone(), Arc::new(eventfold::domain::upcasters()), settings);
    let id = Uuid::now_v7();
    let stream = StreamKey::new(BankAccount::STREAM_TYPE, id);

    append_until(store.as_ref(), &stream, 0, EVENTS - TAIL).await?;
    let at_snapshot = executor.load::<BankAccount>(id).await?;
    ensure!(at_snapshot.version == EVENTS - TAIL, "stream not written as planned");
    append_until(store.as_ref(), &stream, EVENTS - TAIL, EVENTS).await?;
    ensure!(store.load_snapshot(&stream).await?.is_none(), "unexpected snapshot");

    let (without_ms, full) = median_load(&executor, id, runs, None).await?;
    let state = serde_json::to_value(&at_snapshot.state).context("snapshot state")?;
    let snapshot = Snapshot {
        version: at_snapshot.version,
        state_version: BankAccount::STATE_VERSION,
        state,
        taken_at: Utc::now(),
    };
    store.save_snapshot(&stream, snapshot).await?;
    let (with_ms, _) = median_load(&executor, id, runs, Some(&full)).await?;
    db.close().await?;
    Ok(SnapshotLoad { without_ms, with_ms, runs })
}
