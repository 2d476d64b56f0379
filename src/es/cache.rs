//! Hot aggregates kept in memory between commands, versioned: an append
//! made from a cached state still carries the cached version as its
//! expectation, so a state made stale by another process is caught by the
//! store (conflict → evict → reload), never silently used.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::envelope::{Position, StreamKey};

struct Entry {
    version: i64,
    last_position: Option<Position>,
    state: Arc<dyn Any + Send + Sync>,
}

pub(crate) struct AggregateCache {
    entries: Mutex<HashMap<StreamKey, Entry>>,
    capacity: usize,
}

impl AggregateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        AggregateCache { entries: Mutex::new(HashMap::new()), capacity }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get<A: Clone + Send + Sync + 'static>(
        &self,
        stream: &StreamKey,
    ) -> Option<(A, i64, Option<Position>)> {
        let entries = self.entries();
        let entry = entries.get(stream)?;
        let state = entry.state.downcast_ref::<A>()?.clone();
        Some((state, entry.version, entry.last_position))
    }

    pub(crate) fn put<A: Send + Sync + 'static>(
        &self,
        stream: &StreamKey,
        state: A,
        version: i64,
        last_position: Option<Position>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(stream) {
            // Crude but bounded: start over rather than track recency.
            entries.clear();
        }
        entries.insert(stream.clone(), Entry { version, last_position, state: Arc::new(state) });
    }

    pub(crate) fn evict(&self, stream: &StreamKey) {
        self.entries().remove(stream);
    }
}
