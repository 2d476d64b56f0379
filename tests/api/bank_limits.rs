//! Limits both sides can hold: the write side refuses what the read models
//! could not represent, so no event is ever parked for a number too large.

use futures::future::join_all;
use serde_json::json;

use crate::convergence::assert_converged;
use crate::helpers::*;

/// The largest amount of one operation, and the largest balance or total.
const MAX_AMOUNT: &str = "1000000000000000";
const MAX_TOTAL: &str = "10000000000000000";

#[tokio::test]
async fn deposits_past_the_balance_limit_are_refused_and_the_read_model_holds_the_rest() {
    let app = spawn_app().await;
    let (id, _) = open_account(&app, "Ada", "0", "0").await;
    let deposits = join_all((0..100).map(|_| {
        let (app, id) = (&app, id.clone());
        async move {
            app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": MAX_AMOUNT } })).await
        }
    }))
    .await;
    let (accepted, refused): (Vec<_>, Vec<_>) =
        deposits.into_iter().partition(|d| d.errors.is_empty());
    assert_eq!(accepted.len(), 10, "ten deposits reach the limit exactly");
    for refusal in &refused {
        assert_eq!(refusal.code(), Some("VALIDATION_ERROR"), "{refusal:?}");
        let message = refusal.errors[0]["message"].as_str().unwrap();
        assert!(message.contains("balance") && message.contains(MAX_TOTAL), "{message}");
    }
    assert_eq!(app.event_count().await, 11, "refused deposits appended nothing");

    // The read side took every accepted event: nothing parked, and it
    // equals a fold of the stored events.
    assert_converged(&app).await;
    let projections = app.gql("{ projections { name deadLetters { eventId } } }", json!({})).await;
    for projection in projections.ok()["projections"].as_array().unwrap() {
        assert_eq!(projection["deadLetters"], json!([]), "{projection}");
    }
    let last = accepted.iter().map(|d| d.data["depositMoney"]["version"].as_i64().unwrap()).max();
    assert_eq!(last, Some(11));
    let account = app.gql(ACCOUNT, json!({ "id": id })).await.ok()["account"].clone();
    let expected = format!("{MAX_TOTAL}.00");
    assert_eq!(
        (
            account["balance"].as_str(),
            account["totalDeposits"].as_str(),
            account["version"].as_i64()
        ),
        (Some(expected.as_str()), Some(expected.as_str()), Some(11))
    );
    app.stop().await;
}
