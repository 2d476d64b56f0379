//! Settings reach the parts they are documented for.

use std::time::Duration;

use eventfold::app::{self, Config, Role, defaults};
use sea_orm::ConnectionTrait;

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

/// A `Config` for another process of `app`'s deployment, with `partitions`.
fn deployment_config(app: &TestApp, partitions: Option<u32>) -> Config {
    let mut config = Config {
        database_url: app.database_url.clone(),
        listen: "127.0.0.1:0".into(),
        role: Role::Api,
        ..Config::embedded()
    };
    config.use_redis(app.redis.clone().expect("the app uses Redis"));
    config.partitions = partitions;
    config
}

/// The partition count `app::build` settles on for `partitions`, or why it
/// refused to start.
async fn partitions_of(app: &TestApp, partitions: Option<u32>) -> Result<u32, String> {
    match app::build(&deployment_config(app, partitions)).await {
        Ok(built) => {
            let _ = built.shutdown.send(true);
            Ok(built.redis.expect("with Redis").partitions)
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The partition count belongs to the deployment: its first start with
/// Redis records it, a later start without `PARTITIONS` keeps it, and a
/// start with another count is refused with the reason (checkpoints are
/// kept per partition: another count would skip events).
#[tokio::test]
async fn a_deployment_keeps_the_partition_count_it_started_with_and_refuses_another() {
    let app = spawn_app_with(|c| c.partitions = None).await;
    let recorded =
        app.scalar_i64("SELECT value FROM deployment_settings WHERE name = 'partitions'").await;
    assert_eq!(recorded, i64::from(defaults::PARTITIONS), "a new deployment records the default");
    assert_eq!(partitions_of(&app, None).await, Ok(defaults::PARTITIONS));
    assert_eq!(partitions_of(&app, Some(defaults::PARTITIONS)).await, Ok(defaults::PARTITIONS));
    let other = defaults::PARTITIONS + 2;
    let refused = partitions_of(&app, Some(other)).await.expect_err("another count is refused");
    assert!(
        refused.contains(&format!("PARTITIONS={other}"))
            && refused.contains(&format!("into {} streams", defaults::PARTITIONS)),
        "{refused}"
    );
    app.stop().await;
}

/// A deployment from before the count was recorded keeps the count its
/// checkpoints were written with (the default of that time), and a count
/// its checkpoints show to be too small is refused.
#[tokio::test]
async fn a_deployment_from_before_the_record_keeps_the_count_of_its_checkpoints() {
    let app = spawn_app_with(|c| c.partitions = None).await;
    // As it was: checkpoints of four partitions, no record.
    app.db
        .execute_unprepared(
            "DELETE FROM deployment_settings; \
             INSERT INTO projection_checkpoints (name, tx_id, position, updated_at, lease_epoch) \
             VALUES ('audit_log#3', 0, 0, now(), 0) ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
    let refused = partitions_of(&app, Some(2)).await.expect_err("too few partitions");
    assert!(refused.contains("checkpoints of partition 3"), "{refused}");
    assert_eq!(partitions_of(&app, None).await, Ok(defaults::PARTITIONS_BEFORE_RECORDING));
    let recorded =
        app.scalar_i64("SELECT value FROM deployment_settings WHERE name = 'partitions'").await;
    assert_eq!(recorded, i64::from(defaults::PARTITIONS_BEFORE_RECORDING));
    app.stop().await;
}
