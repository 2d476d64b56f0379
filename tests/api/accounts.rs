//! The bank account flow over GraphQL, with every error code it can raise.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn the_bank_flow_updates_the_account_summary() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada Lovelace", "100", "50").await;

    let deposit =
        app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "25.50" } })).await.ok();
    assert_eq!(deposit["depositMoney"]["version"], 2);
    let withdraw =
        app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "40" } })).await.ok();
    assert_eq!(withdraw["withdrawMoney"]["version"], 3);
    let check = app
        .gql(
            CHECK,
            json!({ "input": { "accountId": id, "checkNumber": "1001", "amount": "130.5" } }),
        )
        .await
        .ok();
    assert_eq!(check["writeCheck"]["id"], id.as_str());
    assert_eq!(check["writeCheck"]["version"], 4);

    let position = check["writeCheck"]["position"].as_str().unwrap();
    let account = account_at(&app, &id, position).await;
    assert_eq!(account["owner"], "Ada Lovelace");
    // 100 + 25.50 - 40 - 130.50 = -45.00, within the 50 overdraft.
    assert_eq!(account["balance"], "-45.00");
    assert_eq!(account["overdraftLimit"], "50.00");
    assert_eq!(account["totalDeposits"], "125.50");
    assert_eq!(account["totalWithdrawals"], "170.50");
    assert_eq!(account["version"], 4);
    assert!(account["lastTransactionAt"].as_str().is_some());
    app.stop().await;
}

#[tokio::test]
async fn withdrawing_more_than_balance_plus_overdraft_is_rejected_and_appends_nothing() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "100", "50").await;
    let before = app.event_count().await;

    let res = app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "150.01" } })).await;
    assert_eq!(res.code(), Some("INSUFFICIENT_FUNDS"));
    let res = app
        .gql(CHECK, json!({ "input": { "accountId": id, "checkNumber": "9", "amount": "151" } }))
        .await;
    assert_eq!(res.code(), Some("INSUFFICIENT_FUNDS"));
    assert_eq!(app.event_count().await, before);

    // Exactly balance + overdraft is still allowed.
    app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "150" } })).await.ok();
    assert_eq!(app.event_count().await, before + 1);
    app.stop().await;
}

#[tokio::test]
async fn commands_on_an_unopened_account_are_invalid_state_and_append_nothing() {
    let app = spawn_app().await;
    let ghost = Uuid::now_v7().to_string();
    for (query, input) in [
        (DEPOSIT, json!({ "accountId": ghost, "amount": "1" })),
        (WITHDRAW, json!({ "accountId": ghost, "amount": "1" })),
        (CHECK, json!({ "accountId": ghost, "checkNumber": "1", "amount": "1" })),
    ] {
        let res = app.gql(query, json!({ "input": input })).await;
        assert_eq!(res.code(), Some("INVALID_STATE"), "{res:?}");
    }
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn invalid_amounts_and_texts_are_validation_errors_and_append_nothing() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "10", "0").await;
    let before = app.event_count().await;
    for amount in ["0", "-5", "0.001", "abc", "1000000000000000.01"] {
        let res = app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": amount } })).await;
        assert_eq!(res.code(), Some("VALIDATION_ERROR"), "amount {amount}: {res:?}");
    }
    let res = app.gql(OPEN, json!({ "input": { "owner": "   ", "initialDeposit": "1" } })).await;
    assert_eq!(res.code(), Some("VALIDATION_ERROR"));
    let res = app.gql(OPEN, json!({ "input": { "owner": "Bob", "initialDeposit": "-1" } })).await;
    assert_eq!(res.code(), Some("VALIDATION_ERROR"));
    let res =
        app.gql(DEPOSIT, json!({ "input": { "accountId": "not-a-uuid", "amount": "1" } })).await;
    assert_eq!(res.code(), Some("VALIDATION_ERROR"));
    let res = app
        .gql(CHECK, json!({ "input": { "accountId": id, "checkNumber": "", "amount": "1" } }))
        .await;
    assert_eq!(res.code(), Some("VALIDATION_ERROR"));
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn a_check_number_is_accepted_once_per_account() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "100", "0").await;
    let input = json!({ "input": { "accountId": id, "checkNumber": "77", "amount": "1" } });
    app.gql(CHECK, input.clone()).await.ok();
    let res = app.gql(CHECK, input).await;
    assert_eq!(res.code(), Some("INVALID_STATE"));
    app.stop().await;
}

#[tokio::test]
async fn a_stale_expected_version_is_a_concurrency_conflict_and_appends_nothing() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "100", "0").await;
    let ok = app
        .gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": 1 } }))
        .await
        .ok();
    assert_eq!(ok["depositMoney"]["version"], 2);
    let before = app.event_count().await;
    let stale = app
        .gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": 1 } }))
        .await;
    assert_eq!(stale.code(), Some("CONCURRENCY_CONFLICT"));
    assert_eq!(app.event_count().await, before);
    let negative = app
        .gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": -1 } }))
        .await;
    assert_eq!(negative.code(), Some("VALIDATION_ERROR"));
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_command_id_returns_the_first_result_and_appends_nothing() {
    let app = spawn_app().await;
    let command_id = Uuid::now_v7().to_string();
    let input =
        json!({ "input": { "owner": "Ada", "initialDeposit": "5", "commandId": command_id } });
    let first = app.gql(OPEN, input.clone()).await.ok();
    let again = app.gql(OPEN, input).await.ok();
    assert_eq!(first, again);
    assert_eq!(app.event_count().await, 1);

    // The same id for a different command is refused, not silently merged.
    let (other, _) = open_account(&app, "Bob", "1", "0").await;
    let res = app
        .gql(
            DEPOSIT,
            json!({ "input": { "accountId": other, "amount": "1", "commandId": command_id } }),
        )
        .await;
    assert_eq!(res.code(), Some("VALIDATION_ERROR"));
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn min_position_makes_a_query_see_its_own_write() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "0", "0").await;
    for i in 1..=20 {
        let res =
            app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1" } })).await.ok();
        let position = res["depositMoney"]["position"].as_str().unwrap();
        let account = account_at(&app, &id, position).await;
        assert_eq!(account["balance"], format!("{i}.00"), "after deposit {i}");
    }
    let bad = app.gql(ACCOUNT, json!({ "id": id, "p": "not-a-position" })).await;
    assert_eq!(bad.code(), Some("VALIDATION_ERROR"));
    app.stop().await;
}

#[tokio::test]
async fn accounts_are_listed_as_a_relay_connection() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut last = String::new();
    for i in 0..5 {
        let (id, position) = open_account(&app, &format!("owner {i}"), "1", "0").await;
        ids.push(id);
        last = position;
    }
    ids.sort();
    let query = "query($first: Int, $after: String, $p: String) { accounts(first: $first, after: $after, minPosition: $p) { edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let page1 = app.gql(query, json!({ "first": 2, "p": last })).await.ok();
    let edges = page1["accounts"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["id"], ids[0].as_str());
    assert_eq!(page1["accounts"]["pageInfo"]["hasNextPage"], true);
    let cursor = page1["accounts"]["pageInfo"]["endCursor"].clone();
    let page2 = app.gql(query, json!({ "first": 3, "after": cursor })).await.ok();
    let edges = page2["accounts"]["edges"].as_array().unwrap();
    let got: Vec<_> = edges.iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, ids[2..].to_vec());
    assert_eq!(page2["accounts"]["pageInfo"]["hasNextPage"], false);
    for first in [0, 101, -1] {
        let res = app.gql(query, json!({ "first": first })).await;
        assert_eq!(res.code(), Some("VALIDATION_ERROR"), "first = {first}");
    }
    app.stop().await;
}

#[tokio::test]
async fn account_balance_at_answers_for_points_in_time() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "100", "0").await;
    app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "10" } })).await.ok();
    let last =
        app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "30" } })).await.ok();
    let position = last["withdrawMoney"]["position"].as_str().unwrap();

    let history = app
        .gql(
            "query($id: UUID!, $p: String) { streamEvents(streamType: \"BankAccount\", streamId: $id, minPosition: $p) { edges { node { recordedAt } } } }",
            json!({ "id": id, "p": position }),
        )
        .await
        .ok();
    let times: Vec<String> = history["streamEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["recordedAt"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(times.len(), 3);
    let query = "query($id: UUID!, $at: DateTime!, $p: String) { accountBalanceAt(id: $id, at: $at, minPosition: $p) }";
    let expected = ["100.00", "110.00", "80.00"];
    for (time, balance) in times.iter().zip(expected) {
        let res = app.gql(query, json!({ "id": id, "at": time, "p": position })).await.ok();
        assert_eq!(res["accountBalanceAt"], balance, "at {time}");
    }
    let before =
        app.gql(query, json!({ "id": id, "at": "2000-01-01T00:00:00Z", "p": position })).await.ok();
    assert!(before["accountBalanceAt"].is_null());
    let unknown =
        app.gql(query, json!({ "id": Uuid::now_v7(), "at": "2030-01-01T00:00:00Z" })).await;
    assert_eq!(unknown.code(), Some("NOT_FOUND"));
    app.stop().await;
}

#[tokio::test]
async fn stream_events_show_the_audit_history_with_metadata() {
    let app = spawn_app().await;
    let command_id = Uuid::now_v7().to_string();
    let open = app
        .gql(
            OPEN,
            json!({ "input": { "owner": "Ada", "initialDeposit": "1", "commandId": command_id } }),
        )
        .await
        .ok();
    let id = open["openAccount"]["id"].as_str().unwrap();
    let dep = app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "2" } })).await.ok();
    let position = dep["depositMoney"]["position"].as_str().unwrap();
    let query = "query($id: UUID!, $p: String, $after: String) { streamEvents(streamType: \"BankAccount\", streamId: $id, first: 1, after: $after, minPosition: $p) { edges { cursor node { position version eventType schemaVersion payload metadata } } pageInfo { hasNextPage endCursor } } }";
    let page = app.gql(query, json!({ "id": id, "p": position })).await.ok();
    let node = &page["streamEvents"]["edges"][0]["node"];
    assert_eq!(node["eventType"], "AccountOpened");
    assert_eq!(node["version"], 1);
    assert_eq!(node["payload"]["owner"], "Ada");
    assert_eq!(node["metadata"]["command_id"], command_id.as_str());
    assert_eq!(node["position"], open["openAccount"]["position"]);
    assert_eq!(page["streamEvents"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["streamEvents"]["pageInfo"]["endCursor"].clone();
    let next = app.gql(query, json!({ "id": id, "after": cursor })).await.ok();
    let node = &next["streamEvents"]["edges"][0]["node"];
    assert_eq!(node["eventType"], "MoneyDeposited");
    assert_eq!(node["payload"]["amount"], "2.00");
    assert_eq!(node["position"], position);
    app.stop().await;
}

#[tokio::test]
async fn projections_report_their_checkpoint_and_lag() {
    let app = spawn_app().await;
    let (_, position) = open_account(&app, "Ada", "1", "0").await;
    let ok = eventually(std::time::Duration::from_secs(10), || async {
        let data = app
            .gql(
                "{ projections { name position lag status lastError deadLetters { eventId } } }",
                json!({}),
            )
            .await
            .ok();
        let list = data["projections"].as_array().unwrap().clone();
        list.len() == 7
            && list.iter().all(|p| {
                p["position"] == position.as_str()
                    && p["lag"] == 0
                    && p["status"] == "RUNNING"
                    && p["deadLetters"].as_array().is_some_and(|d| d.is_empty())
            })
    })
    .await;
    assert!(ok, "projections did not all reach {position}");
    app.stop().await;
}

#[tokio::test]
async fn internal_errors_do_not_leak_sql() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "1", "0").await;
    sea_orm::ConnectionTrait::execute_unprepared(&app.db, "DROP TABLE bank_account_summary_view")
        .await
        .unwrap();
    let res = app.gql(ACCOUNT, json!({ "id": id })).await;
    assert_eq!(res.code(), Some("INTERNAL"));
    let message = res.errors[0]["message"].as_str().unwrap().to_lowercase();
    for leak in ["select", "bank_account_summary_view", "relation", "postgres", "sqlx"] {
        assert!(!message.contains(leak), "leaked {leak:?} in {message:?}");
    }
}

#[tokio::test]
async fn a_min_position_the_projections_never_reach_times_out_with_a_clear_code() {
    let app = spawn_app_with(|c| c.min_position_timeout_ms = 300).await;
    let (id, _) = open_account(&app, "Ada", "1", "0").await;
    let started = std::time::Instant::now();
    let res = app.gql(ACCOUNT, json!({ "id": id, "p": "999999999.999999999" })).await;
    assert_eq!(res.code(), Some("TIMEOUT"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the wait is bounded");
    app.stop().await;
}
