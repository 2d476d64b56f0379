//! Appends of large events: `clients` concurrent appenders, each on its own
//! stream, one 2 KiB event per append, through the library's event store
//! (its group commit and its statements, no HTTP). A group of such appends
//! is larger than one round trip of parameters (`ROUND_TRIP_BYTES`), so
//! this is where cutting groups to fit shows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold::es::envelope::{EventMetadata, NewEvent, StreamKey};
use eventfold::es::store::{EventStore, StreamAppend};
use eventfold::infra::event_store::SeaEventStore;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::raw::RawRun;
use crate::report::Latencies;

/// Bytes of each event's payload.
pub(crate) const PAYLOAD_BYTES: usize = 2048;

pub(crate) async fn appends(
    database_url: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<RawRun> {
    let db = eventfold::infra::db::connect(database_url, 4).await?;
    let store = Arc::new(SeaEventStore::new(db.clone()));
    let filler = "x".repeat(PAYLOAD_BYTES);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (store, filler) = (store.clone(), filler.clone());
        tasks.spawn(async move {
            let stream = StreamKey::new("BenchLarge", Uuid::now_v7());
            let mut latencies = Latencies::default();
            let mut version = 0;
            while started.elapsed() < duration {
                let event = NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "Large".into(),
                    schema_version: 1,
                    payload: json!({ "filler": filler }),
                    metadata: EventMetadata::default(),
                };
                let append = StreamAppend {
                    stream: stream.clone(),
                    expected_version: version,
                    events: vec![event],
                };
                let sent = Instant::now();
                store.append(vec![append], None).await?;
                latencies.push(sent.elapsed());
                version += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let run = RawRun::of_clients(tasks, started).await?;
    db.close().await?;
    Ok(run)
}
