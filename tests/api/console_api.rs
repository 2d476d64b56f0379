//! The admin API behind the console: stream types and streams, an
//! aggregate's state at any version, retrying dead letters and rebuilding
//! with progress; clerks read, only admins act.

use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::{spawn_secured, token};
use crate::helpers::{DEPOSIT, account_at, eventually, gql_as, open_account};
use crate::integrity::{dead_letters, park_a_stream, remove_fault};
use crate::subscriptions::WsClient;

const STATE: &str = "query($t: String!, $id: UUID!, $v: Int) { aggregateState(streamType: $t, streamId: $id, version: $v) { version state } }";

#[tokio::test]
async fn aggregate_state_is_the_state_after_the_first_n_events_folded_from_the_store() {
    let app = spawn_secured().await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    for amount in ["5", "2.50"] {
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": amount } })).await.ok();
    }
    let clerk = token("clerk", Some("bob".into()));
    let at = |v: Option<i64>| json!({ "t": "BankAccount", "id": id, "v": v });
    let (_, two) = gql_as(&app, Some(&clerk), STATE, at(Some(2))).await;
    let two = two.ok()["aggregateState"].clone();
    assert_eq!(two["version"], 2, "{two}");
    assert_eq!(two["state"]["balance"], "15.00", "after two events: {two}");
    let (_, latest) = gql_as(&app, Some(&clerk), STATE, at(None)).await;
    let latest = latest.ok()["aggregateState"].clone();
    assert_eq!(latest["version"], 3);
    assert_eq!(latest["state"]["balance"], "17.50", "{latest}");
    // A stream with no events is null; bad input is refused.
    let (_, none) = gql_as(
        &app,
        Some(&clerk),
        STATE,
        json!({ "t": "BankAccount", "id": uuid::Uuid::now_v7() }),
    )
    .await;
    assert_eq!(none.ok()["aggregateState"], Value::Null);
    for vars in [at(Some(0)), json!({ "t": "Nothing", "id": id })] {
        let (_, res) = gql_as(&app, Some(&clerk), STATE, vars).await;
        assert_eq!(res.code(), Some("VALIDATION_ERROR"), "{:?}", res.errors);
    }
    app.stop().await;
}

#[tokio::test]
async fn stream_types_and_streams_list_what_the_log_holds() {
    let app = spawn_secured().await;
    let (a, _) = open_account(&app, "Ada", "10", "0").await;
    let (b, position) = open_account(&app, "Grace", "10", "0").await;
    app.gql(DEPOSIT, json!({ "input": { "accountId": a, "amount": "1" } })).await.ok();
    account_at(&app, &b, &position).await;
    let types = "{ streamTypes { streamType streams events } }";
    let found = eventually(Duration::from_secs(10), || async {
        let data = app.gql(types, json!({})).await.ok();
        data["streamTypes"] == json!([{ "streamType": "BankAccount", "streams": 2, "events": 3 }])
    })
    .await;
    assert!(found, "{:?}", app.gql(types, json!({})).await);
    let by_id = "query($id: UUID) { streams(streamId: $id) { edges { node { streamType streamId version } } } }";
    let data = app.gql(by_id, json!({ "id": a })).await.ok();
    assert_eq!(
        data["streams"]["edges"],
        json!([{ "node": { "streamType": "BankAccount", "streamId": a, "version": 2 } }])
    );
    let page = "query($after: String) { streams(streamType: \"BankAccount\", first: 1, after: $after) { edges { cursor node { streamId } } pageInfo { hasNextPage } } }";
    let first = app.gql(page, json!({})).await.ok();
    assert_eq!(first["streams"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["streams"]["edges"][0]["cursor"].clone();
    let second = app.gql(page, json!({ "after": cursor })).await.ok();
    assert_eq!(second["streams"]["pageInfo"]["hasNextPage"], false);
    let mut ids = [
        first["streams"]["edges"][0]["node"]["streamId"].clone(),
        second["streams"]["edges"][0]["node"]["streamId"].clone(),
    ];
    ids.sort_by_key(|v| v.to_string());
    let mut want = [json!(a), json!(b)];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(ids, want);
    app.stop().await;
}

/// (operation, variables) of every console operation, and whether a clerk
/// may run it.
fn console_operations(id: &str) -> Vec<(&'static str, Value, bool)> {
    vec![
        ("{ streamTypes { streamType } }", json!({}), true),
        ("{ streams { edges { cursor } } }", json!({}), true),
        (STATE, json!({ "t": "BankAccount", "id": id }), true),
        ("{ rebuildStatus(name: \"audit_log\") { phase } }", json!({}), true),
        (
            "mutation { retryDeadLetters(projection: \"bank_account_summary\") { applied } }",
            json!({}),
            false,
        ),
        ("mutation { rebuildProjection(name: \"audit_log\") { phase } }", json!({}), false),
    ]
}

#[tokio::test]
async fn clerks_read_the_console_but_only_admins_retry_or_rebuild_and_others_are_refused() {
    let app = spawn_secured().await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    let clerk = token("clerk", Some("bob".into()));
    let customer = token("customer", Some(uuid::Uuid::now_v7().to_string()));
    for (query, vars, clerk_may) in console_operations(&id) {
        let (_, anonymous) = gql_as(&app, None, query, vars.clone()).await;
        assert_eq!(anonymous.code(), Some("UNAUTHENTICATED"), "{query}");
        let (_, res) = gql_as(&app, Some(&customer), query, vars.clone()).await;
        assert_eq!(res.code(), Some("FORBIDDEN"), "{query}");
        let (_, res) = gql_as(&app, Some(&clerk), query, vars.clone()).await;
        if clerk_may {
            assert!(res.errors.is_empty(), "{query}: {:?}", res.errors);
        } else {
            assert_eq!(res.code(), Some("FORBIDDEN"), "{query}");
        }
    }
    // A refused rebuild started nothing.
    let (_, status) =
        gql_as(&app, Some(&clerk), "{ rebuildStatus(name: \"audit_log\") { phase } }", json!({}))
            .await;
    assert_eq!(status.ok()["rebuildStatus"], Value::Null);
    let (_, res) = gql_as(
        &app,
        Some(&token("admin", None)),
        "mutation { rebuildProjection(name: \"nothing\") { phase } }",
        json!({}),
    )
    .await;
    assert_eq!(res.code(), Some("NOT_FOUND"), "{:?}", res.errors);
    app.stop().await;
}

#[tokio::test]
async fn retry_dead_letters_applies_the_parked_events_once_their_cause_is_fixed() {
    let (mut app, id, _) = park_a_stream().await;
    app.token = Some(token("admin", None));
    remove_fault(&app).await;
    let retry = "mutation { retryDeadLetters(projection: \"bank_account_summary\") { applied failed waiting } }";
    let report = app.gql(retry, json!({})).await.ok();
    assert_eq!(report["retryDeadLetters"], json!({ "applied": 2, "failed": 0, "waiting": 0 }));
    assert!(dead_letters(&app, "bank_account_summary").await.is_empty());
    let row =
        app.gql("query($id: UUID!) { account(id: $id) { balance } }", json!({ "id": id })).await;
    assert_eq!(row.ok()["account"]["balance"], "13.34");
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_runs_in_the_background_and_reports_its_progress_until_done() {
    let app = spawn_secured().await;
    for owner in ["Ada", "Grace", "Edsger"] {
        open_account(&app, owner, "10", "0").await;
    }
    // The log's reader sees them once the audit log itself has them.
    let counted = eventually(Duration::from_secs(20), || async {
        let data = app.gql("{ streamTypes { events } }", json!({})).await.ok();
        data["streamTypes"][0]["events"] == 3
    })
    .await;
    assert!(counted, "the audit log shows the three events");
    let start = "mutation { rebuildProjection(name: \"audit_log\") { projection phase } }";
    let started = app.gql(start, json!({})).await.ok();
    assert_eq!(started["rebuildProjection"]["projection"], "audit_log");
    let status = "{ rebuildStatus(name: \"audit_log\") { phase applied total finishedAt } }";
    let done = eventually(Duration::from_secs(30), || async {
        app.gql(status, json!({})).await.ok()["rebuildStatus"]["phase"] == "DONE"
    })
    .await;
    let last = app.gql(status, json!({})).await.ok();
    assert!(done, "{last}");
    assert_eq!(last["rebuildStatus"]["applied"], 3, "{last}");
    assert!(last["rebuildStatus"]["finishedAt"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn rebuild_progress_streams_the_rebuild_to_a_clerk_until_it_is_done_then_completes() {
    let app = spawn_secured().await;
    for owner in ["Ada", "Grace"] {
        open_account(&app, owner, "10", "0").await;
    }
    let counted = eventually(Duration::from_secs(20), || async {
        let data = app.gql("{ streamTypes { events } }", json!({})).await.ok();
        data["streamTypes"][0]["events"] == 2
    })
    .await;
    assert!(counted, "the audit log shows both events");
    let mut ws = WsClient::upgrade(app.addr, false, None).await.unwrap();
    let clerk = format!("Bearer {}", token("clerk", Some("bob".into())));
    ws.init(json!({ "Authorization": clerk })).await;
    let start = "mutation { rebuildProjection(name: \"audit_log\") { phase } }";
    app.gql(start, json!({})).await.ok();
    let follow = "subscription { rebuildProgress(name: \"audit_log\") { phase applied total } }";
    ws.subscribe("1", follow, json!({})).await;
    let mut seen = Vec::new();
    loop {
        let message = ws.next_message().await;
        match message["type"].as_str() {
            Some("next") => seen.push(message["payload"]["data"]["rebuildProgress"].clone()),
            Some("complete") => break,
            _ => panic!("unexpected {message}"),
        }
    }
    let last = seen.last().expect("at least one progress report");
    assert_eq!(last["phase"], "DONE", "{seen:?}");
    assert_eq!(last["applied"], 2, "{seen:?}");
    assert!(seen[..seen.len() - 1].iter().all(|p| p["phase"] == "RUNNING"), "{seen:?}");
    app.stop().await;
}
