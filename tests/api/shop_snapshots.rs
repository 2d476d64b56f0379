//! Snapshots of a 10,000-event stream: the same state with and without
//! them, only the tail read after one, and a stale one ignored.

use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use eventfold::domain::money::Money;
use eventfold::domain::product::{Product, ProductCommand, ProductEvent};
use eventfold::es::aggregate::{Aggregate, DomainEvent, given};
use eventfold::es::command::{CommandContext, CommandExecutor, CommandSettings};
use eventfold::es::envelope::{EventMetadata, NewEvent, StreamKey};
use eventfold::es::store::{EventStore, Snapshot, StreamAppend};
use eventfold::es::upcast::encode;
use eventfold::infra::event_store::SeaEventStore;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::helpers::*;

fn history(len: usize) -> Vec<ProductEvent> {
    let price = Money::positive(Decimal::from_str("2.50").unwrap(), "price").unwrap();
    let mut events = vec![ProductEvent::ProductRegistered { name: "Bolt".into(), price }];
    events.extend((1..len).map(|i| ProductEvent::StockIncreased {
        amount: 1 + (i % 3) as u32,
        reason: format!("delivery {i}"),
    }));
    events
}

/// Appends `events` to a new product stream, 500 per append.
async fn write_stream(store: &dyn EventStore, id: Uuid, events: &[ProductEvent]) -> StreamKey {
    let stream = StreamKey::new(Product::STREAM_TYPE, id);
    let metadata = EventMetadata::default();
    for (batch, chunk) in events.chunks(500).enumerate() {
        let events = chunk
            .iter()
            .map(|event| {
                let (event_type, payload) = encode(event).unwrap();
                NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type,
                    schema_version: event.schema_version(),
                    payload,
                    metadata: metadata.clone(),
                }
            })
            .collect();
        let append =
            StreamAppend { stream: stream.clone(), expected_version: (batch * 500) as i64, events };
        store.append(vec![append], None).await.unwrap();
    }
    stream
}

async fn setup() -> (TestApp, Arc<dyn EventStore>) {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let db = eventfold::infra::db::connect(&app.database_url, 4).await.unwrap();
    (app, Arc::new(SeaEventStore::new(db)))
}

fn executor(store: &Arc<dyn EventStore>, snapshot_every: i64) -> CommandExecutor {
    let upcasters = Arc::new(eventfold::domain::upcasters());
    let settings = CommandSettings { snapshot_every, ..Default::default() };
    CommandExecutor::new(store.clone(), upcasters, settings)
}

fn snapshot_of(state: &Product, version: i64, state_version: i32) -> Snapshot {
    Snapshot {
        version,
        state_version,
        state: serde_json::to_value(state).unwrap(),
        taken_at: Utc::now(),
    }
}

#[tokio::test]
async fn a_ten_thousand_event_stream_loads_the_same_with_a_snapshot_reading_only_the_tail() {
    let (app, store) = setup().await;
    let events = history(10_000);
    let id = Uuid::now_v7();
    let stream = write_stream(store.as_ref(), id, &events).await;
    let loader = executor(&store, 0);

    let full = loader.load::<Product>(id).await.unwrap();
    assert_eq!(full.version, 10_000);
    assert_eq!(full.state, given::<Product>(&events));
    assert!(store.load_snapshot(&stream).await.unwrap().is_none());

    // A marked snapshot at 9,990 proves where folding starts: the name comes
    // from it, and only the ten later events are added on top.
    let mut marked = given::<Product>(&events[..9_990]);
    marked.name = "from the snapshot".into();
    store
        .save_snapshot(&stream, snapshot_of(&marked, 9_990, Product::STATE_VERSION))
        .await
        .unwrap();
    assert_eq!(store.load_stream(&stream, 9_990).await.unwrap().len(), 10);
    let tail = loader.load::<Product>(id).await.unwrap();
    assert_eq!(tail.state.name, "from the snapshot");
    assert_eq!(tail.state.available, full.state.available);
    assert_eq!(tail.version, 10_000);

    // An honest snapshot gives exactly the state of the full fold.
    let honest = given::<Product>(&events[..9_995]);
    store
        .save_snapshot(&stream, snapshot_of(&honest, 9_995, Product::STATE_VERSION))
        .await
        .unwrap();
    let with_snapshot = loader.load::<Product>(id).await.unwrap();
    assert_eq!(with_snapshot.state, full.state);
    assert_eq!(with_snapshot.version, full.version);

    // The executor takes snapshots itself when a command crosses a boundary.
    let command = ProductCommand::IncreaseStock { amount: 5, reason: "restock".into() };
    let outcome = executor(&store, 1)
        .execute::<Product>(id, &command, &CommandContext::default())
        .await
        .unwrap();
    assert_eq!(outcome.version, 10_001);
    let taken = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!((taken.version, taken.state_version), (10_001, Product::STATE_VERSION));
    let after = loader.load::<Product>(id).await.unwrap();
    assert_eq!(after.state.available, full.state.available + 5);
    assert!(after.last_position.is_none(), "nothing after the snapshot was read");
    app.stop().await;
}

#[tokio::test]
async fn a_snapshot_of_another_state_version_is_ignored() {
    let (app, store) = setup().await;
    let events = history(120);
    let id = Uuid::now_v7();
    let stream = write_stream(store.as_ref(), id, &events).await;
    let loader = executor(&store, 0);
    let full = loader.load::<Product>(id).await.unwrap();

    // Readable as a Product, but written under another state version.
    let mut stale = given::<Product>(&events[..100]);
    stale.name = "stale".into();
    stale.available = 0;
    let snapshot = snapshot_of(&stale, 100, Product::STATE_VERSION + 1);
    store.save_snapshot(&stream, snapshot).await.unwrap();
    let loaded = loader.load::<Product>(id).await.unwrap();
    assert_eq!(loaded.state, full.state);
    assert_eq!(loaded.version, 120);

    // An unreadable state under the current version is ignored too.
    let garbage = Snapshot {
        version: 110,
        state_version: Product::STATE_VERSION,
        state: serde_json::json!({ "not": "a product" }),
        taken_at: Utc::now(),
    };
    store.save_snapshot(&stream, garbage).await.unwrap();
    assert_eq!(loader.load::<Product>(id).await.unwrap().state, full.state);
    app.stop().await;
}
