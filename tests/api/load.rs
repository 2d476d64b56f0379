//! A bounded background load of deposits, for tests that break something
//! while writes flow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Deposits round-robin over `accounts` through `url` until `stop`.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub(crate) fn start(url: String, accounts: Vec<String>) -> Load {
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, d) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0usize;
            // Bounded: at most 5,000 requests whatever happens.
            while !s.load(Ordering::Relaxed) && i < 5_000 {
                let body = json!({ "query": DEPOSIT, "variables": { "input": { "accountId": accounts[i % accounts.len()], "amount": "1" } } });
                let sent =
                    client.post(&url).json(&body).timeout(Duration::from_secs(5)).send().await;
                if let Ok(r) = sent
                    && r.json::<Value>().await.is_ok_and(|v| v.get("errors").is_none())
                {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
        Load { stop, done, task }
    }

    /// Deposits that succeeded so far.
    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) async fn wait_for(&self, n: usize) {
        let reached = eventually(Duration::from_secs(30), || async {
            self.done.load(Ordering::Relaxed) >= n
        })
        .await;
        assert!(reached, "load did not reach {n} deposits");
    }

    pub(crate) async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.done.load(Ordering::Relaxed)
    }
}

/// Opens `n` accounts with 100 each.
pub(crate) async fn accounts(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(open_account(app, &format!("owner {i}"), "100", "0").await.0);
    }
    ids
}
