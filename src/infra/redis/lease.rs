//! An expiring lease on a Redis key: whoever holds it owns the work it
//! names (a partition, the relay). Holders renew well before expiry; a dead
//! holder's lease lapses and another takes over.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

#[derive(Clone)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    pub ttl: Duration,
}

impl Lease {
    pub async fn acquire(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.owner)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async(conn)
            .await?;
        Ok(set.is_some())
    }

    /// Extends the lease; false when it was lost.
    pub async fn renew(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(&self.key)
            .arg(&self.owner)
            .arg(self.ttl.as_millis() as u64)
            .query_async(conn)
            .await?;
        Ok(renewed == 1)
    }

    pub async fn release(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let _: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&self.key)
            .arg(&self.owner)
            .query_async(conn)
            .await?;
        Ok(())
    }
}
