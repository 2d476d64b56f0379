//! How far each partition consumer has delivered, kept in Redis.
//!
//! A watermark tells a partition consumer that every event up to a
//! position has been published; once it has applied what came before it,
//! the partition is "at" that position even if none of those events were
//! its own. Writing that to the read database for every partition of every
//! projection after every relay batch would cost more than the events
//! themselves, so it goes to a Redis key instead (and to the database only
//! now and then). `minPosition` takes, per partition, the later of the two.
//!
//! Waiters are not told by reading those keys again and again: every
//! checkpoint commit of a projector is also announced on the progress
//! channel (see [`share`]), and each process posts what it hears to its
//! [`ProgressBoard`].

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, Notify, mpsc, watch};

use super::{RedisSettings, pubsub};
use crate::es::envelope::Position;
use crate::infra::projection_runtime::ProgressBoard;

pub struct RedisProgress {
    pub settings: RedisSettings,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisProgress {
    pub fn new(settings: RedisSettings) -> anyhow::Result<Self> {
        let client = settings.client()?;
        Ok(RedisProgress { settings, client, conn: Mutex::new(None) })
    }

    /// The delivered position of each key; `None` where unknown or when
    /// Redis cannot be reached (callers then rely on the database alone).
    pub async fn get(&self, keys: &[String]) -> Vec<Option<Position>> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = super::connection(&self.client).await.ok();
        }
        let Some(conn) = guard.as_mut() else { return vec![None; keys.len()] };
        let values: redis::RedisResult<Vec<Option<String>>> =
            redis::cmd("MGET").arg(keys).query_async(conn).await;
        match values {
            Ok(values) => values.into_iter().map(|v| v.and_then(|v| v.parse().ok())).collect(),
            Err(_) => {
                *guard = None;
                vec![None; keys.len()]
            }
        }
    }
}

/// Records that several partition consumers (the members of a group, of
/// one partition) have applied everything up to `position`, in one command.
pub async fn record_all(
    conn: &mut MultiplexedConnection,
    keys: &[String],
    position: Position,
) -> redis::RedisResult<()> {
    let value = position.to_string();
    let mut set = redis::cmd("MSET");
    for key in keys {
        set.arg(key).arg(&value);
    }
    set.query_async(conn).await
}

/// Shares checkpoint progress between processes over the progress channel,
/// until `shutdown`. With `publish`, this process's own commits (posted to
/// `board`) are announced, coalesced per key; with `heard`, what other
/// processes announce is posted to `board`, and `heard` is notified after
/// every (re)subscription, since announcements made meanwhile were missed.
pub fn share(
    settings: &RedisSettings,
    board: Arc<ProgressBoard>,
    publish: bool,
    heard: Option<Arc<Notify>>,
    shutdown: watch::Receiver<bool>,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(settings.url.as_str())?;
    let channel = settings.progress_channel();
    if publish {
        let (outbox, pending) = mpsc::unbounded_channel();
        board.publish_to(outbox);
        let (client, channel) = (client.clone(), channel.clone());
        tokio::spawn(pubsub::publish_all(client, channel, pending, encode, shutdown.clone()));
    }
    if let Some(resync) = heard {
        let post = move |message: String| {
            for (key, position) in decode(&message) {
                board.advance(key, position);
            }
        };
        let subscribed = move || resync.notify_one();
        tokio::spawn(pubsub::follow(client, channel, shutdown, subscribed, post));
    }
    Ok(())
}

/// One line `key position` per key, the latest position of each.
fn encode(commits: Vec<(String, Position)>) -> Option<String> {
    let mut latest: HashMap<String, Position> = HashMap::new();
    for (key, position) in commits {
        let at = latest.entry(key).or_default();
        *at = (*at).max(position);
    }
    let lines: Vec<String> = latest.into_iter().map(|(k, p)| format!("{k} {p}")).collect();
    Some(lines.join("\n"))
}

fn decode(message: &str) -> impl Iterator<Item = (&str, Position)> {
    message.lines().filter_map(|line| {
        let (key, position) = line.rsplit_once(' ')?;
        Some((key, position.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_carry_the_latest_position_of_each_key() {
        let at = |pos| Position { tx: 7, pos };
        let commits =
            vec![("a#0".to_owned(), at(3)), ("a#1".to_owned(), at(1)), ("a#0".to_owned(), at(5))];
        let message = encode(commits).unwrap();
        let mut heard: Vec<_> = decode(&message).collect();
        heard.sort();
        assert_eq!(heard, vec![("a#0", at(5)), ("a#1", at(1))]);
        assert_eq!(
            decode("garbage\nb 1.2").collect::<Vec<_>>(),
            vec![("b", Position { tx: 1, pos: 2 })]
        );
    }
}
