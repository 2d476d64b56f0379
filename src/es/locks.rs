//! In-process locks per stream: commands on one stream queue up inside a
//! process instead of racing each other to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::envelope::StreamKey;

/// One async mutex per stream, created on demand and dropped when unused.
#[derive(Default)]
pub(crate) struct StreamLocks {
    map: Mutex<HashMap<StreamKey, Weak<tokio::sync::Mutex<()>>>>,
}

impl StreamLocks {
    pub(crate) async fn lock(&self, stream: &StreamKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1024 {
                map.retain(|_, weak| weak.strong_count() > 0);
            }
            match map.get(stream).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(stream.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}
