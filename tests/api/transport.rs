//! The Redis Streams transport under failure: interleaved commits, crashes
//! of every process kind, a Redis restart, poison events, worker failover
//! and subscriptions across servers.

use std::time::Duration;

use eventfold::app::{self, Config, Role};
use sea_orm::{ActiveModelTrait, ConnectionTrait, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use crate::convergence::assert_converged;
use crate::helpers::*;
use crate::load::{Load, accounts};
use crate::process::{PrivateRedis, Server};
use crate::subscriptions::WsClient;

/// An API-only server in this process; relays and projectors run elsewhere.
async fn api_only() -> TestApp {
    spawn_app_with(|c| c.role = Role::Api).await
}

#[tokio::test]
async fn the_relay_never_skips_an_event_of_a_transaction_open_before_a_later_append() {
    let app = spawn_app().await;
    let writer = eventfold::infra::db::connect(&app.database_url, 2).await.unwrap();
    let slow = writer.begin().await.unwrap();
    let early_stream = Uuid::now_v7();
    raw_event("Probe", early_stream, "Early").insert(&slow).await.unwrap();
    // A later append waits for the earlier-numbered transaction to end...
    let opening = open_account(&app, "Ada", "1", "0");
    let meanwhile = async {
        let waiting =
            eventually(Duration::from_secs(10), || async { app.commit_order_waiters().await == 1 })
                .await;
        let applied = app.scalar_i64("SELECT count(*) FROM bank_account_summary_view").await;
        // ...and once the earlier one commits, both flow through Redis.
        slow.commit().await.unwrap();
        (waiting, applied)
    };
    let ((id, _), (waiting, applied)) = tokio::join!(opening, meanwhile);
    assert!(waiting, "the append waited for the open, earlier-numbered transaction");
    assert_eq!(applied, 0, "nothing was applied past the open transaction");
    let query = "query($t: String!, $id: UUID!) { streamEvents(streamType: $t, streamId: $id) { edges { node { eventType } } } }";
    let both = eventually(Duration::from_secs(20), || async {
        let probe = app.gql(query, json!({ "t": "Probe", "id": early_stream })).await.ok();
        let account = app.gql(ACCOUNT, json!({ "id": id })).await.ok();
        probe["streamEvents"]["edges"].as_array().is_some_and(|e| e.len() == 1)
            && !account["account"].is_null()
    })
    .await;
    assert!(both, "both events must arrive");
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn an_idle_transaction_in_another_database_does_not_hold_the_relay_back() {
    use futures::FutureExt as _;
    use sea_orm::sqlx::{self, Connection as _};

    let app = spawn_app().await;
    // Another database of the same server, a transaction with an id, idle.
    let mut idle = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut idle).await.unwrap();
    let checked = std::panic::AssertUnwindSafe(async {
        let xid: i64 =
            sqlx::query_scalar("SELECT txid_current()").fetch_one(&mut idle).await.unwrap();
        assert!(xid > 0, "the idle transaction holds a transaction id");
        // An event appended afterwards still reaches the projection.
        let (id, _) = open_account(&app, "Ada", "1", "0").await;
        eventually(Duration::from_secs(5), || async {
            !app.gql(ACCOUNT, json!({ "id": id })).await.ok()["account"].is_null()
        })
        .await
    })
    .catch_unwind()
    .await;
    // Always end the idle transaction, whatever happened above.
    let ended = sqlx::query("ROLLBACK").execute(&mut idle).await;
    let _ = idle.close().await;
    let arrived = checked.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    ended.unwrap();
    assert!(arrived, "the account reached its projection while a transaction stayed idle");
    app.stop().await;
}

#[tokio::test]
async fn killing_the_relay_mid_load_converges() {
    let app = api_only().await;
    let redis = app.redis.clone().unwrap();
    let _projector = Server::start(&app.database_url, &redis, "projector");
    let mut relay = Server::start(&app.database_url, &redis, "relay");
    let ids = accounts(&app, 8).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(40).await;
    relay.kill9();
    load.wait_for(80).await;
    let _relay = Server::start(&app.database_url, &redis, "relay");
    load.wait_for(120).await;
    assert!(load.stop().await >= 120);
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_standby_relay_takes_over_when_the_lease_holder_is_killed() {
    let app = api_only().await;
    let redis = app.redis.clone().unwrap();
    let _projector = Server::start(&app.database_url, &redis, "projector");
    let mut relays = [
        Server::start(&app.database_url, &redis, "relay"),
        Server::start(&app.database_url, &redis, "relay"),
    ];
    let ids = accounts(&app, 4).await;
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pids = [relays[0].pid(), relays[1].pid()];
    let mut holder = None;
    // Bounded: 200 tries, 100 ms apart. Owners are named host-pid-random.
    for _ in 0..200 {
        let owner: Option<String> =
            redis::cmd("GET").arg(redis.lease_key("relay")).query_async(&mut conn).await.unwrap();
        holder = owner.and_then(|o| pids.iter().position(|p| o.contains(&format!("-{p}-"))));
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = holder.is_some();
    assert!(found, "one relay holds the lease");
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(30).await;
    relays[holder.unwrap()].kill9();
    load.wait_for(90).await;
    load.stop().await;
    assert_converged(&app).await;
    let owner: Option<String> =
        redis::cmd("GET").arg(redis.lease_key("relay")).query_async(&mut conn).await.unwrap();
    let standby = relays[1 - holder.unwrap()].pid();
    assert!(
        owner.is_some_and(|o| o.contains(&format!("-{standby}-"))),
        "the standby holds the lease now"
    );
    app.stop().await;
}

#[tokio::test]
async fn killing_a_projector_mid_load_converges() {
    let app = api_only().await;
    let redis = app.redis.clone().unwrap();
    let _relay = Server::start(&app.database_url, &redis, "relay");
    let mut projector = Server::start(&app.database_url, &redis, "projector");
    let ids = accounts(&app, 8).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(40).await;
    projector.kill9();
    load.wait_for(80).await;
    let _projector = Server::start(&app.database_url, &redis, "projector");
    load.wait_for(120).await;
    load.stop().await;
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn killing_an_all_in_one_server_mid_load_converges() {
    let app = api_only().await;
    let redis = app.redis.clone().unwrap();
    let mut server = Server::start(&app.database_url, &redis, "all");
    server.ready().await;
    let ids = accounts(&app, 8).await;
    let load = Load::start(format!("http://{}/graphql", server.addr), ids);
    load.wait_for(60).await;
    server.kill9();
    let survived = load.stop().await;
    assert!(survived >= 60);
    let restarted = Server::start(&app.database_url, &redis, "all");
    restarted.ready().await;
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_redis_restart_mid_load_loses_nothing() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_app_with(|c| c.redis_url = Some(redis.url.clone())).await;
    let ids = accounts(&app, 8).await;
    let load = Load::start(app.url("/graphql"), ids);
    load.wait_for(40).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await;
    load.wait_for(100).await;
    load.stop().await;
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_poison_event_is_parked_after_bounded_retries_and_the_rest_flows() {
    let app = spawn_app().await;
    // A deposit to an account that was never opened: the summary projector
    // cannot apply it. (Only a raw insert can produce one.)
    let ghost = Uuid::now_v7();
    let poison_id = Uuid::now_v7();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, schema_version, payload, metadata, recorded_at) \
             VALUES ('{poison_id}', 'BankAccount', '{ghost}', 1, 'MoneyDeposited', 1, '{{\"amount\": \"5.00\"}}', '{{}}', now())"
        ))
        .await
        .unwrap();
    let (id, position) = open_account(&app, "Ada", "10", "0").await;
    let account = account_at(&app, &id, &position).await;
    assert_eq!(account["balance"], "10.00", "events after the poison still flow");
    let query = "{ projections { name lastError deadLetters { eventId attempts error } } }";
    let data = app.gql(query, json!({})).await.ok();
    let summary = data["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bank_account_summary")
        .unwrap()
        .clone();
    let letters = summary["deadLetters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{summary}");
    assert_eq!(letters[0]["eventId"], poison_id.to_string());
    assert_eq!(letters[0]["attempts"], 5);
    assert!(letters[0]["error"].as_str().unwrap().contains("before AccountOpened"));
    assert!(summary["lastError"].as_str().is_some());

    // An operator repairs the cause, then retries the parked event.
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO bank_account_summary_view VALUES ('{ghost}', 'repaired', 0, 0, 0, 0, now(), now(), 0, 0)"
        ))
        .await
        .unwrap();
    let redis = app.redis.clone().unwrap();
    // Awaited, not blocking: the server runs on this test's runtime, and a
    // batch it holds checkpoint locks for must be able to finish while the
    // retry waits for them.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["projections", "retry", "bank_account_summary"])
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_PREFIX", &redis.prefix)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let repaired = app.gql(ACCOUNT, json!({ "id": ghost })).await.ok();
    assert_eq!(repaired["account"]["balance"], "5.00");
    let data = app.gql(query, json!({})).await.ok();
    assert!(
        data["projections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["deadLetters"].as_array().unwrap().is_empty())
    );
    app.stop().await;
}

async fn lease_owners(
    redis: &eventfold::infra::redis::RedisSettings,
    projection: &str,
) -> Vec<Option<String>> {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut owners = Vec::new();
    for p in 0..redis.partitions {
        let owner: Option<String> = redis::cmd("GET")
            .arg(redis.lease_key(&format!("{projection}:{p}")))
            .query_async(&mut conn)
            .await
            .unwrap();
        owners.push(owner);
    }
    owners
}

#[tokio::test]
async fn two_projector_workers_split_the_partitions_and_one_takes_over_when_the_other_dies() {
    let app = api_only().await;
    let redis = app.redis.clone().unwrap();
    let _relay = Server::start(&app.database_url, &redis, "relay");
    let mut first = Server::start(&app.database_url, &redis, "projector");
    let _second = Server::start(&app.database_url, &redis, "projector");
    let split = eventually(Duration::from_secs(30), || async {
        let owners = lease_owners(&redis, "read_models").await;
        let mut distinct: Vec<_> = owners.iter().flatten().collect();
        distinct.sort();
        distinct.dedup();
        owners.iter().all(Option::is_some) && distinct.len() == 2
    })
    .await;
    assert!(
        split,
        "two workers share the partitions: {:?}",
        lease_owners(&redis, "read_models").await
    );
    let ids = accounts(&app, 8).await;
    first.kill9();
    let taken_over = eventually(Duration::from_secs(30), || async {
        let owners = lease_owners(&redis, "read_models").await;
        owners.iter().all(Option::is_some) && owners.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(taken_over, "the survivor owns every partition");
    for id in &ids {
        let res =
            app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
        let account = account_at(&app, id, res["depositMoney"]["position"].as_str().unwrap()).await;
        assert_eq!(account["balance"], "101.00");
    }
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_subscription_on_one_server_sees_a_mutation_made_through_another() {
    let writer = spawn_app().await;
    let mut config = Config {
        database_url: writer.database_url.clone(),
        listen: "127.0.0.1:0".into(),
        role: Role::Api,
        ..Config::embedded()
    };
    config.use_redis(writer.redis.clone().unwrap());
    let reader = app::start(config).await.unwrap();
    let (id, position) = open_account(&writer, "Ada", "1", "0").await;
    account_at(&writer, &id, &position).await;
    let mut ws = WsClient::connect_to(reader.addr.unwrap(), false).await;
    ws.subscribe(
        "1",
        "subscription($id: UUID!) { accountUpdated(id: $id) { balance version } }",
        json!({ "id": id }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "2" } })).await.ok();
    // The announcement of the opening may still be on its way (pub/sub
    // under load); the deposit's row follows it.
    let mut pushed = ws.next_data().await;
    if pushed["accountUpdated"]["version"] == 1 {
        pushed = ws.next_data().await;
    }
    assert_eq!(pushed["accountUpdated"]["balance"], "3.00");
    assert_eq!(pushed["accountUpdated"]["version"], 2);
    reader.stop().await;
    writer.stop().await;
}

#[tokio::test]
async fn the_in_process_transport_on_postgres_runs_the_bank_flow() {
    let app = spawn_app_in_process().await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    let res = app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "4" } })).await.ok();
    let account = account_at(&app, &id, res["withdrawMoney"]["position"].as_str().unwrap()).await;
    assert_eq!(account["balance"], "6.00");
    assert_converged(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn streams_are_trimmed_once_every_group_has_acknowledged() {
    let app = spawn_app().await;
    let redis = app.redis.clone().unwrap();
    let ids = accounts(&app, 8).await;
    for id in &ids {
        for _ in 0..20 {
            app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
        }
    }
    assert_converged(&app).await;
    // 168 events went through the four partitions (plus watermarks); the
    // relay trims every 5 s below what every consumer group acknowledged.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let trimmed = eventually(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        let keys: Vec<String> = (0..redis.partitions).map(|p| redis.stream_key(p)).collect();
        async move {
            let mut total = 0;
            for key in keys {
                let len: i64 = redis::cmd("XLEN").arg(key).query_async(&mut conn).await.unwrap();
                total += len;
            }
            total <= 8
        }
    })
    .await;
    let lens: Vec<i64> = {
        let mut lens = Vec::new();
        for p in 0..redis.partitions {
            lens.push(
                redis::cmd("XLEN").arg(redis.stream_key(p)).query_async(&mut conn).await.unwrap(),
            );
        }
        lens
    };
    assert!(trimmed, "streams still hold {lens:?} entries");
    app.stop().await;
}

#[tokio::test]
async fn projections_report_the_checkpoint_of_every_partition() {
    let app = spawn_app().await;
    let partitions = app.redis.as_ref().unwrap().partitions as usize;
    // Accounts enough to reach several partitions.
    for n in 0..8 {
        open_account(&app, &format!("P{n}"), "1", "0").await;
    }
    assert_converged(&app).await;
    let query = "{ projections { name position partitions { partition position } } }";
    let data = app.gql(query, json!({})).await.ok();
    let summary = data["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bank_account_summary")
        .expect("bank_account_summary is reported")
        .clone();
    let parts = summary["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), partitions, "one checkpoint per partition: {summary}");
    let position = |v: &serde_json::Value| -> (i64, i64) {
        let (tx, pos) = v.as_str().unwrap().split_once('.').unwrap();
        (tx.parse().unwrap(), pos.parse().unwrap())
    };
    for (n, part) in parts.iter().enumerate() {
        assert_eq!(part["partition"], n as i64);
    }
    let lowest = parts.iter().map(|p| position(&p["position"])).min().unwrap();
    assert_eq!(lowest, position(&summary["position"]), "the checkpoint is the lowest partition's");
    assert!(
        parts.iter().any(|p| position(&p["position"]) > (0, 0)),
        "partitions that applied events show their own positions: {summary}"
    );
    app.stop().await;
}

/// The newest entry of each partition stream: its id and its field names.
async fn newest_entries(
    conn: &mut redis::aio::MultiplexedConnection,
    redis: &eventfold::infra::redis::RedisSettings,
) -> Vec<(String, Vec<String>)> {
    let mut newest = Vec::new();
    for p in 0..redis.partitions {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(redis.stream_key(p))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .unwrap();
        let entry = reply.ids.into_iter().next().expect("the partition has an entry");
        let mut fields: Vec<String> = entry.map.keys().cloned().collect();
        fields.sort();
        newest.push((entry.id, fields));
    }
    newest
}

/// The relay's checkpoint commits without waiting for the disk, so a
/// crash of PostgreSQL may move it back while the relay, idle, has nothing
/// new to save (`pg_crash` makes such a crash). Every 5 s of idleness it
/// saves it again and sends every partition a watermark, so a consumer
/// that must catch up learns how far without waiting for the next event.
#[tokio::test]
async fn an_idle_relay_saves_its_checkpoint_again_and_repeats_a_watermark_on_every_partition() {
    let app = spawn_app().await;
    let redis = app.redis.clone().unwrap();
    let (id, position) = open_account(&app, "Ada", "1", "0").await;
    account_at(&app, &id, &position).await;
    let newest = "SELECT count(*) FROM projection_checkpoints WHERE name = '__relay' \
                  AND (tx_id, position) = (SELECT tx_id, position FROM events ORDER BY position DESC LIMIT 1)";
    let saved = eventually(Duration::from_secs(10), || async { app.scalar_i64(newest).await == 1 });
    assert!(saved.await, "the relay saved its checkpoint at the event");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let before = newest_entries(&mut conn, &redis).await;
    // What a crash that lost the relay's last saves leaves.
    app.db
        .execute_unprepared(
            "UPDATE projection_checkpoints SET tx_id = 0, position = 0 WHERE name = '__relay'",
        )
        .await
        .unwrap();
    let restored =
        eventually(Duration::from_secs(15), || async { app.scalar_i64(newest).await == 1 });
    assert!(restored.await, "the idle relay saves its checkpoint again");
    // The watermarks go out right after the save commits: wait for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut after = newest_entries(&mut conn, &redis).await;
    while before.iter().zip(&after).any(|(b, a)| b.0 == a.0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = newest_entries(&mut conn, &redis).await;
    }
    for ((id_before, _), (id_after, fields)) in before.iter().zip(&after) {
        assert_ne!(id_before, id_after, "a new entry on every partition");
        assert_eq!(fields, &["p", "w"], "a watermark alone: {after:?}");
    }
    assert_eq!(app.event_count().await, 1, "no event was appended meanwhile");
    app.stop().await;
}
