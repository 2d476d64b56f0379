//! Background work is supervised and readiness is honest: a Redis outage or
//! a projector that cannot start turns `/health/ready` to 503 with the
//! reason, nothing ends the process, and everything converges once the
//! cause is gone.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::convergence::assert_converged;
use crate::helpers::*;
use crate::load::{Load, accounts};
use crate::process::PrivateRedis;

/// Waits, bounded, until readiness answers `status` with a body for which
/// `body_ok` holds; fails with the last answer otherwise.
async fn readiness_becomes(app: &TestApp, status: u16, body_ok: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = app.readiness().await;
        if seen.0 == status && body_ok(&seen.1) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never answered {status} as expected; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(reason: &'static str) -> impl Fn(&Value) -> bool {
    move |body| {
        body["status"] == "unavailable"
            && body["reasons"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r.as_str().is_some_and(|r| r.contains(reason))))
    }
}

#[tokio::test]
async fn while_redis_is_stopped_readiness_names_it_and_afterwards_every_read_table_converges() {
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(|c| c.redis_url = Some(redis.url.clone())).await;
    readiness_becomes(&app, 200, |body| body["status"] == "ready").await;
    let ids = accounts(&app, 8).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(30).await;

    redis.pause();
    let paused = tokio::time::Instant::now();
    readiness_becomes(&app, 503, names("redis unreachable")).await;
    // Writes go on while the transport is stopped, for a few seconds.
    load.wait_for(load.done() + 30).await;
    tokio::time::sleep_until(paused + Duration::from_secs(4)).await;
    redis.resume();

    readiness_becomes(&app, 200, |body| body["status"] == "ready").await;
    assert!(load.stop().await >= 60);
    assert_converged(&app).await;
    // Every task is still there and stops cleanly.
    app.stop().await;
}

#[tokio::test]
async fn a_projector_that_cannot_start_is_restarted_and_catches_up_without_ending_the_process() {
    // The checkpoints table is away when the server starts: the first
    // checkpoint read of every projector fails.
    let app =
        spawn_in_process_after("ALTER TABLE projection_checkpoints RENAME TO checkpoints_away")
            .await;
    let (id, position) = open_account(&app, "Ada", "10", "0").await;
    // The runner retries by itself (`projection … failing`); were it to
    // give up, its supervisor would restart it (`projector … failing`).
    readiness_becomes(&app, 503, names("bank_account_summary failing")).await;

    app.db
        .execute_unprepared("ALTER TABLE checkpoints_away RENAME TO projection_checkpoints")
        .await
        .unwrap();
    readiness_becomes(&app, 200, |body| body["status"] == "ready").await;
    assert_eq!(account_at(&app, &id, &position).await["balance"], "10.00");
    assert_converged(&app).await;
    app.stop().await;
}
