//! The embedded default (SQLite + in-process transport) runs the same flow.

use serde_json::json;

use crate::helpers::*;
use crate::subscriptions::WsClient;

#[tokio::test]
async fn the_bank_flow_works_on_the_embedded_sqlite_default() {
    let app = spawn_embedded().await;
    let (id, position) = open_account(&app, "Ada", "100", "20").await;
    account_at(&app, &id, &position).await;
    let mut ws = WsClient::connect(&app, false).await;
    ws.subscribe(
        "s",
        "subscription($id: UUID!) { accountUpdated(id: $id) { balance } }",
        json!({ "id": id }),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "5" } })).await.ok();
    assert_eq!(ws.next_data().await["accountUpdated"]["balance"], "105.00");
    let res = app.gql(WITHDRAW, json!({ "input": { "accountId": id, "amount": "126" } })).await;
    assert_eq!(res.code(), Some("INSUFFICIENT_FUNDS"));
    let check = app
        .gql(CHECK, json!({ "input": { "accountId": id, "checkNumber": "1", "amount": "125" } }))
        .await
        .ok();
    let account = account_at(&app, &id, check["writeCheck"]["position"].as_str().unwrap()).await;
    assert_eq!(account["balance"], "-20.00");
    assert_eq!(account["totalWithdrawals"], "125.00");
    assert_eq!(app.event_count().await, 3);
    let stale = app
        .gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": 1 } }))
        .await;
    assert_eq!(stale.code(), Some("CONCURRENCY_CONFLICT"));
    app.stop().await;
}
