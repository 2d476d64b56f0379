//! Settings reach the parts they are documented for.

use std::time::Duration;

use crate::helpers::*;

/// Milliseconds left on a Redis key; negative when it has none.
async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.expect("PTTL")
}

#[tokio::test]
async fn lease_ttl_ms_sets_the_relay_lease_and_every_partition_lease() {
    let app = spawn_app_with(|c| c.lease_ttl_ms = 1_500).await;
    let redis = app.redis.clone().expect("the app uses Redis");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = [redis.lease_key("relay"), redis.lease_key("read_models:0")];
    let held = eventually(Duration::from_secs(10), || {
        let (mut conn, keys) = (conn.clone(), keys.clone());
        async move {
            for key in &keys {
                if pttl(&mut conn, key).await <= 0 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(held, "the relay and the partition leases are taken");
    // Sampled several times: a renewal never extends a lease past its TTL.
    for _ in 0..5 {
        for key in &keys {
            let left = pttl(&mut conn.clone(), key).await;
            assert!(left <= 1_500, "{key} has {left} ms left, more than LEASE_TTL_MS");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
