//! Races: many clients on one account, and one command id sent at once.

use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn fifty_concurrent_deposits_end_with_the_exact_balance() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "0", "0").await;
    let results =
        join_all((0..50).map(|i| {
            let amount = format!("{}.01", i + 1);
            let app = &app;
            let id = id.clone();
            async move {
                app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": amount } })).await
            }
        }))
        .await;
    let mut versions: Vec<i64> =
        results.into_iter().map(|r| r.ok()["depositMoney"]["version"].as_i64().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, (2..=51).collect::<Vec<_>>(), "each deposit got its own version");
    assert_eq!(app.event_count().await, 51);
    let last =
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "0.01" } })).await.ok();
    let account = account_at(&app, &id, last["depositMoney"]["position"].as_str().unwrap()).await;
    // sum(1..=50) + 50 * 0.01 + 0.01
    assert_eq!(account["balance"], "1275.51");
    assert_eq!(account["version"], 52);
    app.stop().await;
}

#[tokio::test]
async fn two_servers_racing_on_one_account_lose_nothing() {
    // Two processes' worth of executors over one database: the in-process
    // stream lock cannot help, so the store's version check and retries must.
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "0", "0").await;
    let (other, other_url) = api_twin(&app).await;
    let results = join_all((0..40).map(|i| {
        let (app, id, other_url) = (&app, id.clone(), other_url.clone());
        async move {
            let body = json!({ "query": DEPOSIT, "variables": { "input": { "accountId": id, "amount": "1" } } });
            let url = if i % 2 == 0 { app.url("/graphql") } else { other_url };
            let res: serde_json::Value =
                app.client.post(url).json(&body).send().await.unwrap().json().await.unwrap();
            res
        }
    }))
    .await;
    for res in &results {
        assert!(res.get("errors").is_none(), "{res}");
    }
    assert_eq!(app.event_count().await, 41);
    let last = app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
    let account = account_at(&app, &id, last["depositMoney"]["position"].as_str().unwrap()).await;
    assert_eq!(account["balance"], "41.00");
    other.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_command_id_sent_concurrently_appends_once() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "0", "0").await;
    let command_id = Uuid::now_v7().to_string();
    let results = join_all((0..10).map(|_| {
        let (app, id, command_id) = (&app, id.clone(), command_id.clone());
        async move {
            app.gql(
                DEPOSIT,
                json!({ "input": { "accountId": id, "amount": "7", "commandId": command_id } }),
            )
            .await
            .ok()
        }
    }))
    .await;
    assert!(results.windows(2).all(|w| w[0] == w[1]), "every caller sees the first result");
    assert_eq!(results[0]["depositMoney"]["version"], 2);
    assert_eq!(app.event_count().await, 2);

    // Concurrent "create" with one command id opens one account.
    let open_id = Uuid::now_v7().to_string();
    let opened = join_all((0..10).map(|_| {
        let (app, open_id) = (&app, open_id.clone());
        async move {
            app.gql(
                OPEN,
                json!({ "input": { "owner": "Bob", "initialDeposit": "1", "commandId": open_id } }),
            )
            .await
            .ok()
        }
    }))
    .await;
    assert!(opened.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.event_count().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_state_cached_by_one_server_never_rejects_what_another_made_possible() {
    let app = spawn_app().await;
    let (other, other_url) = api_twin(&app).await;
    // This server caches the account at balance 0, version 1...
    let (id, _) = open_account(&app, "Ada", "0", "0").await;
    // ...the other one deposits behind its back...
    let body =
        json!({ "query": DEPOSIT, "variables": { "input": { "accountId": id, "amount": "100" } } });
    let res: serde_json::Value =
        app.client.post(&other_url).json(&body).send().await.unwrap().json().await.unwrap();
    assert!(res.get("errors").is_none(), "{res}");
    // ...so a withdrawal here must not be refused from the stale state.
    let ok = app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "60" } })).await.ok();
    assert_eq!(ok["withdrawMoney"]["version"], 3);
    // A pinned version that matches the stale cache is a conflict, and the
    // cached deposit path still appends at the right version.
    let body =
        json!({ "query": DEPOSIT, "variables": { "input": { "accountId": id, "amount": "1" } } });
    let _: serde_json::Value =
        app.client.post(&other_url).json(&body).send().await.unwrap().json().await.unwrap();
    let stale = app
        .gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": 3 } }))
        .await;
    assert_eq!(stale.code(), Some("CONCURRENCY_CONFLICT"));
    let fresh = app
        .gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": 4 } }))
        .await
        .ok();
    assert_eq!(fresh["depositMoney"]["version"], 5);
    other.stop().await;
    app.stop().await;
}
