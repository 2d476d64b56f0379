//! How far each checkpoint key is, as far as this process knows, and the
//! read-your-writes waiters parked until a key gets far enough.
//!
//! Facts arrive by push: the appliers of this process report every commit,
//! projectors elsewhere are heard through the transport (Redis pub/sub), and
//! a shared refresh reads the stored checkpoints now and then (see
//! `read_your_writes`). A waiter costs nothing while nothing moves: it is
//! parked on the one key that still holds it back, ordered by the position
//! it needs, and woken only when that key reaches it. A checkpoint only
//! moves forward, so the board keeps the highest position heard per key.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::es::envelope::Position;

/// Known positions per checkpoint key, and the waiters on them.
#[derive(Default)]
pub struct ProgressBoard {
    inner: Mutex<Inner>,
    /// Held once more by every waiter whose future is alive.
    waiters: Arc<()>,
    /// Where this process's own progress goes for other processes to hear.
    outbox: OnceLock<mpsc::UnboundedSender<(String, Position)>>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, Key>,
    next_id: u64,
    /// Entries parked over all keys, abandoned ones included until pruned.
    parked: usize,
    /// Prune abandoned entries once `parked` passes this.
    prune_at: usize,
}

#[derive(Default)]
struct Key {
    at: Position,
    /// Waiters this key holds back, by the position they need.
    waiting: BTreeMap<(Position, u64), Waiter>,
}

struct Waiter {
    keys: Arc<[String]>,
    wake: oneshot::Sender<()>,
}

/// Abandoned entries are pruned when their number passes this (and twice
/// the live ones), so cancelled waits never accumulate.
const MIN_PRUNE_AT: usize = 1024;

impl ProgressBoard {
    /// Records that this process committed checkpoint `key` at `position`:
    /// wakes local waiters and passes it on to other processes.
    pub fn committed(&self, key: &str, position: Position) {
        self.advance(key, position);
        if let Some(outbox) = self.outbox.get() {
            let _ = outbox.send((key.to_owned(), position));
        }
    }

    /// Sends this process's own progress to `outbox` from now on.
    pub fn publish_to(&self, outbox: mpsc::UnboundedSender<(String, Position)>) {
        let _ = self.outbox.set(outbox);
    }

    /// Records that checkpoint `key` is at `position` (a lower position than
    /// known is ignored) and wakes the waiters that were held back only by it.
    pub fn advance(&self, key: &str, position: Position) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Inner { keys, parked, .. } = &mut *inner;
        let entry = match keys.get_mut(key) {
            Some(entry) => entry,
            None => keys.entry(key.to_owned()).or_default(),
        };
        if position <= entry.at {
            return;
        }
        entry.at = position;
        // Everything at or below `position` is released from this key.
        let still = entry.waiting.split_off(&(position, u64::MAX));
        let released = std::mem::replace(&mut entry.waiting, still);
        for ((needed, id), waiter) in released {
            *parked -= 1;
            match blocking_key(keys, &waiter.keys, needed) {
                Some(other) => {
                    let other = keys.entry(other).or_default();
                    other.waiting.insert((needed, id), waiter);
                    *parked += 1;
                }
                None => {
                    let _ = waiter.wake.send(());
                }
            }
        }
    }

    /// The position known for `key` (the start when nothing was heard).
    pub fn position(&self, key: &str) -> Position {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.keys.get(key).map(|k| k.at).unwrap_or_default()
    }

    /// Resolves once every key of `keys` is known at or past `position`.
    /// Dropping the future abandons the wait.
    pub fn reached(
        &self,
        keys: Vec<String>,
        position: Position,
    ) -> impl Future<Output = ()> + Send + 'static {
        let parked = self.park(keys.into(), position);
        let guard = parked.is_some().then(|| self.waiters.clone());
        async move {
            let _guard = guard;
            if let Some(woken) = parked
                && woken.await.is_err()
            {
                // The board is gone (shutdown): never reached.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Parks a waiter on the first key that holds it back, if any.
    fn park(&self, keys: Arc<[String]>, position: Position) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let blocking = blocking_key(&inner.keys, &keys, position)?;
        if inner.parked >= inner.prune_at.max(MIN_PRUNE_AT) {
            inner.prune();
        }
        let (wake, woken) = oneshot::channel();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.parked += 1;
        let key = inner.keys.entry(blocking).or_default();
        key.waiting.insert((position, id), Waiter { keys, wake });
        Some(woken)
    }

    /// Waiters whose future is alive.
    pub fn waiting(&self) -> usize {
        Arc::strong_count(&self.waiters) - 1
    }
}

impl Inner {
    /// Drops the entries of abandoned waits.
    fn prune(&mut self) {
        let mut parked = 0;
        for key in self.keys.values_mut() {
            key.waiting.retain(|_, w| !w.wake.is_closed());
            parked += key.waiting.len();
        }
        self.parked = parked;
        self.prune_at = parked * 2;
    }
}

/// The first of `keys` known below `position`.
fn blocking_key(
    known: &HashMap<String, Key>,
    keys: &[String],
    position: Position,
) -> Option<String> {
    keys.iter().find(|k| known.get(k.as_str()).is_none_or(|k| k.at < position)).cloned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(pos: i64) -> Position {
        Position { tx: 1, pos }
    }

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn done(future: impl Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), future).await.is_ok()
    }

    #[tokio::test]
    async fn a_waiter_is_woken_once_every_key_is_far_enough() {
        let board = ProgressBoard::default();
        board.advance("p#0", at(5));
        assert!(done(board.reached(keys(&["p#0"]), at(5))).await, "already there");
        let wait = tokio::spawn(board.reached(keys(&["p#0", "p#1"]), at(7)));
        tokio::task::yield_now().await;
        assert_eq!(board.waiting(), 1);
        board.advance("p#1", at(9));
        board.advance("p#0", at(6));
        assert!(!wait.is_finished());
        board.advance("p#0", at(7));
        assert!(done(async { wait.await.unwrap() }).await);
        assert_eq!(board.waiting(), 0);
    }

    #[tokio::test]
    async fn positions_only_move_forward() {
        let board = ProgressBoard::default();
        board.advance("p", at(9));
        board.advance("p", at(3));
        assert_eq!(board.position("p"), at(9));
    }

    #[tokio::test]
    async fn abandoned_waits_are_pruned() {
        let board = ProgressBoard::default();
        for _ in 0..5 * MIN_PRUNE_AT {
            drop(board.reached(keys(&["p"]), at(100)));
        }
        let parked = board.inner.lock().unwrap().parked;
        assert!(parked <= MIN_PRUNE_AT + 1, "{parked} entries kept");
        assert_eq!(board.waiting(), 0);
    }

    #[tokio::test]
    async fn own_progress_is_passed_on_and_heard_progress_is_not() {
        let board = ProgressBoard::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        board.publish_to(tx);
        board.committed("p", at(1));
        board.advance("q", at(2));
        assert_eq!(rx.try_recv().ok(), Some(("p".to_owned(), at(1))));
        assert!(rx.try_recv().is_err());
    }
}
