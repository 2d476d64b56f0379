//! The event log as a feed: the `events` query pages it in commit order;
//! the `events` subscription catches up from a position and goes on live
//! with no gap and no repeat, resumes where a consumer stopped, filters,
//! and holds no more than a page for a consumer that stops reading.

use std::time::Duration;

use sea_orm::{EntityTrait, QueryOrder, TransactionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{spawn_secured, token};
use crate::helpers::*;
use crate::subscriptions::WsClient;

const FOLLOW: &str = "subscription($after: String, $s: [String!], $e: [String!]) { \
    events(after: $after, streamTypes: $s, eventTypes: $e) { position eventId streamType eventType } }";
const PAGE: &str = "query($after: String, $first: Int, $s: [String!], $e: [String!]) { \
    events(after: $after, first: $first, streamTypes: $s, eventTypes: $e) { \
    edges { cursor node { position eventId } } pageInfo { hasNextPage } } }";

/// Every event id of the store in commit order.
async fn stored_in_commit_order(app: &TestApp) -> Vec<String> {
    use entity::events::{Column, Entity};
    let rows = Entity::find()
        .order_by_asc(Column::TxId)
        .order_by_asc(Column::Position)
        .all(&app.db)
        .await
        .expect("query");
    rows.iter().map(|m| m.event_id.simple().to_string()).collect()
}

fn simple(id: &Value) -> String {
    id.as_str().expect("an id").replace('-', "").to_lowercase()
}

/// Reads `count` events from a feed subscription: (event id, position).
async fn read_events(ws: &mut WsClient, count: usize) -> Vec<(String, String)> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let message = ws
            .next_within(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no event within 30 s after {} events", seen.len()));
        assert_eq!(message["type"], "next", "{message}");
        let event = &message["payload"]["data"]["events"];
        seen.push((simple(&event["eventId"]), event["position"].as_str().unwrap().to_owned()));
    }
    seen
}

/// `writers` tasks, each appending `per_writer` events in small
/// transactions of its own, over a pool of their own: another process as
/// far as the server can tell.
async fn write_concurrently(database_url: &str, writers: usize, per_writer: usize) {
    let db = eventfold::infra::db::connect(database_url, writers as u32).await.expect("pool");
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut written = 0;
                let mut round = 0;
                while written < per_writer {
                    let n = (1 + (w + round) % 4).min(per_writer - written);
                    let txn = db.begin().await.expect("begin");
                    let rows = (0..n).map(|_| raw_event("Feed", Uuid::now_v7(), "Ticked"));
                    entity::events::Entity::insert_many(rows)
                        .exec_without_returning(&txn)
                        .await
                        .expect("insert");
                    txn.commit().await.expect("commit");
                    written += n;
                    round += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
}

/// Pages the whole log through the `events` query.
async fn page_everything(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = app.gql(PAGE, json!({ "after": after, "first": 100 })).await.ok();
        let connection = &data["events"];
        for edge in connection["edges"].as_array().unwrap() {
            ids.push(simple(&edge["node"]["eventId"]));
            after = edge["cursor"].as_str().map(str::to_owned);
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
    }
}

#[tokio::test]
async fn a_consumer_from_position_zero_sees_every_event_once_in_commit_order_and_resumes_exactly() {
    let app = spawn_app().await;
    const TOTAL: usize = 10_000;
    // Some history before the consumer comes, the rest while it reads.
    write_concurrently(&app.database_url, 4, 250).await;
    let mut ws = WsClient::connect(&app, false).await;
    ws.subscribe("1", FOLLOW, json!({ "after": "0" })).await;
    let url = app.database_url.clone();
    let writing = tokio::spawn(async move { write_concurrently(&url, 18, 500).await });
    let mut seen = read_events(&mut ws, 4000).await;
    // Disconnect mid-way, then resume from the last position received.
    drop(ws);
    let last = seen.last().unwrap().1.clone();
    let mut ws = WsClient::connect(&app, false).await;
    ws.subscribe("2", FOLLOW, json!({ "after": last })).await;
    writing.await.unwrap();
    seen.extend(read_events(&mut ws, TOTAL - 4000).await);
    assert!(ws.next_within(Duration::from_millis(500)).await.is_none(), "an event too many");

    let ids: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
    let stored = stored_in_commit_order(&app).await;
    assert_eq!(stored.len(), TOTAL);
    assert!(ids == stored, "the feed differs from the store's commit order");
    assert_eq!(page_everything(&app).await, stored, "the query pages the same sequence");
    app.stop().await;
}

#[tokio::test]
async fn events_written_through_one_server_reach_a_follower_of_another() {
    let app = spawn_app().await;
    let (twin, twin_url) = api_twin(&app).await;
    let mut ws = WsClient::connect(&app, false).await;
    ws.subscribe("1", FOLLOW, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut expected = Vec::new();
    for i in 0..20 {
        let input = json!({ "input": { "owner": format!("o{i}"), "initialDeposit": "1", "overdraftLimit": "0" } });
        let response: Value = app
            .client
            .post(&twin_url)
            .json(&json!({ "query": OPEN, "variables": input }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        expected.push(response["data"]["openAccount"]["position"].as_str().unwrap().to_owned());
    }
    let seen: Vec<String> = read_events(&mut ws, 20).await.into_iter().map(|(_, p)| p).collect();
    assert_eq!(seen, expected);
    drop(ws);
    twin.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_embedded_default_follows_the_log_across_the_seam_and_filters() {
    let app = spawn_embedded().await;
    let (account, _) = open_account(&app, "Ada", "10", "0").await;
    let mut ws = WsClient::connect(&app, false).await;
    ws.subscribe("1", FOLLOW, json!({ "after": "0" })).await;
    let mut deposits = WsClient::connect(&app, false).await;
    deposits.subscribe("1", FOLLOW, json!({ "after": "0", "e": ["MoneyDeposited"] })).await;
    let mut none = WsClient::connect(&app, false).await;
    none.subscribe("1", FOLLOW, json!({ "after": "0", "s": ["Order"] })).await;
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, account) = (app.client.clone(), app.url("/graphql"), account.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    let input = json!({ "input": { "accountId": account, "amount": "1" } });
                    let body = json!({ "query": DEPOSIT, "variables": input });
                    let response = client.post(&url).json(&body).send().await.unwrap();
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let all = read_events(&mut ws, 201).await;
    let stored = stored_in_commit_order(&app).await;
    assert_eq!(all.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), stored);
    let only = read_events(&mut deposits, 200).await;
    assert_eq!(only.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), stored[1..].to_vec());
    assert!(none.next_within(Duration::from_millis(300)).await.is_none(), "no order events");
    let data = app.gql(PAGE, json!({ "first": 5, "e": ["AccountOpened"] })).await.ok();
    assert_eq!(data["events"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(data["events"]["pageInfo"]["hasNextPage"], false);
    app.stop().await;
}

#[tokio::test]
async fn only_clerks_and_admins_follow_the_feed() {
    let app = spawn_secured().await;
    let customer = token("customer", Some(Uuid::now_v7().to_string()));
    let clerk = token("clerk", Some("clerk-1".into()));
    for (bearer, code) in [(None, "UNAUTHENTICATED"), (Some(&customer), "FORBIDDEN")] {
        let (_, gql) = gql_as(&app, bearer.map(String::as_str), PAGE, json!({})).await;
        assert_eq!(gql.code(), Some(code), "{:?}", gql.errors);
        let mut ws = WsClient::upgrade(app.addr, false, None).await.unwrap();
        let init = match bearer {
            Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        ws.init(init).await;
        ws.subscribe("1", FOLLOW, json!({ "after": "0" })).await;
        let message = ws.next_message().await;
        let errors = if message["type"] == "error" {
            &message["payload"]
        } else {
            &message["payload"]["errors"]
        };
        assert_eq!(errors[0]["extensions"]["code"], code, "{message}");
    }
    let (_, gql) = gql_as(&app, Some(&clerk), PAGE, json!({})).await;
    assert!(gql.errors.is_empty(), "{:?}", gql.errors);
    let (_, gql) = gql_as(&app, Some(&clerk), PAGE, json!({ "after": "no" })).await;
    assert_eq!(gql.code(), Some("VALIDATION_ERROR"));
    app.stop().await;
}

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
    kib * 1024
}

/// The bound a stuck consumer may cost the server: its page (200 events
/// here of ~4 KiB) and the socket's buffers, with room for allocator noise;
/// far below the 80 MiB of payloads it leaves unread.
const STUCK_CONSUMER_BOUND: u64 = 32 * 1024 * 1024;

#[tokio::test]
async fn a_consumer_that_stops_reading_does_not_grow_the_servers_memory() {
    let path = std::env::temp_dir().join(format!("eventfold-feed-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let binary = env!("CARGO_BIN_EXE_eventfold");
    let migrated = tokio::process::Command::new(binary)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    // 20,000 events of ~4 KiB each.
    let db = eventfold::infra::db::connect(&url, 1).await.unwrap();
    let padding = "x".repeat(4096);
    for _ in 0..40 {
        let rows = (0..500).map(|_| {
            let mut row = raw_event("Feed", Uuid::now_v7(), "Padded");
            row.payload = sea_orm::ActiveValue::Set(json!({ "pad": padding }));
            row
        });
        entity::events::Entity::insert_many(rows).exec_without_returning(&db).await.unwrap();
    }
    db.close().await.ok();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The API role alone: no projector's work mixes into the measurement.
    let mut server = tokio::process::Command::new(binary)
        .args(["serve", "--role", "api"])
        .env("DATABASE_URL", &url)
        .env("LISTEN_ADDR", addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = server.id().unwrap();
    let client = reqwest::Client::new();
    let live = eventually(Duration::from_secs(30), || async {
        client.get(format!("http://{addr}/health/live")).send().await.is_ok()
    })
    .await;
    assert!(live, "the server did not start");

    let mut ws = WsClient::connect_to(addr, false).await;
    let before = rss_bytes(pid);
    ws.subscribe("1", FOLLOW, json!({ "after": "0" })).await;
    // The feed flows: the first events arrive. Then the client stops reading.
    read_events(&mut ws, 10).await;
    let mut peak = rss_bytes(pid);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_bytes(pid));
    }
    let growth = peak.saturating_sub(before);
    assert!(
        growth < STUCK_CONSUMER_BOUND,
        "the server grew by {} MiB for a consumer that stopped reading",
        growth / (1024 * 1024)
    );
    // It still serves the consumer once it reads again.
    read_events(&mut ws, 1000).await;
    eprintln!("stuck consumer: server RSS {} MiB, grew {} KiB", before >> 20, growth >> 10);
    server.kill().await.ok();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
