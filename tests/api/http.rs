//! GraphQL over HTTP: content negotiation, status codes, GET rules, and the
//! other HTTP endpoints.

use serde_json::{Value, json};

use crate::helpers::*;

async fn post(app: &TestApp, accept: Option<&str>, body: &str) -> (u16, String, Value) {
    let mut request =
        app.client.post(app.url("/graphql")).header("content-type", "application/json");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn responses_follow_the_accept_header() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let query = json!({ "query": "{ accounts { pageInfo { hasNextPage } } }" }).to_string();
    let (status, ct, body) = post(&app, Some("application/graphql-response+json"), &query).await;
    assert_eq!((status, ct.starts_with("application/graphql-response+json")), (200, true));
    assert_eq!(body["data"]["accounts"]["pageInfo"]["hasNextPage"], false);
    let (status, ct, _) = post(&app, Some("application/json"), &query).await;
    assert_eq!((status, ct.starts_with("application/json")), (200, true));
    let (status, ct, _) = post(&app, Some("*/*"), &query).await;
    assert_eq!((status, ct.starts_with("application/graphql-response+json")), (200, true));
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("accept", "text/html")
        .body(query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 406);
    app.stop().await;
}

#[tokio::test]
async fn invalid_documents_are_4xx_under_graphql_response_json_and_200_under_json() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    for document in ["{ accounts {", "{ noSuchField }"] {
        let body = json!({ "query": document }).to_string();
        let (status, _, json) = post(&app, Some("application/graphql-response+json"), &body).await;
        assert_eq!(status, 400, "{document}");
        assert_eq!(json["errors"][0]["extensions"]["code"], "VALIDATION_ERROR");
        assert!(json.get("data").is_none_or(Value::is_null));
        let (status, _, _) = post(&app, Some("application/json"), &body).await;
        assert_eq!(status, 200, "{document}");
    }
    let (status, _, _) = post(&app, Some("application/graphql-response+json"), "not json").await;
    assert_eq!(status, 400);
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{ accounts { edges { cursor } } }")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    app.stop().await;
}

#[tokio::test]
async fn get_runs_queries_and_refuses_mutations() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query Q($n: Int) { accounts(first: $n) { edges { cursor } } }"),
            ("variables", "{\"n\": 3}"),
        ])
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["data"]["accounts"]["edges"].is_array(), "{body}");

    let mutation =
        "mutation { openAccount(input: { owner: \"Eve\", initialDeposit: \"1\" }) { id } }";
    let response =
        app.client.get(app.url("/graphql")).query(&[("query", mutation)]).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(app.event_count().await, 0, "a mutation sent by GET must not run");
    app.stop().await;
}

#[tokio::test]
async fn graphiql_and_health_endpoints_answer() {
    let app = spawn_app_with(|c| c.role = eventfold::app::Role::Api).await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("graphiql") || html.contains("GraphiQL"), "GraphiQL page expected");
    // The page's own script points subscriptions at the WebSocket endpoint.
    let script = app.client.get(app.url("/assets/graphiql-page.js")).send().await.unwrap();
    assert!(script.text().await.unwrap().contains("/graphql/ws"));
    let live = app.client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(app.readiness().await, (200, json!({ "status": "ready" })));
    app.stop().await;
}

#[tokio::test]
async fn metrics_report_each_projection_in_prometheus_text() {
    let app = spawn_app().await;
    let (id, position) = open_account(&app, "Ada", "1", "0").await;
    account_at(&app, &id, &position).await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let body = res.text().await.unwrap();
    assert!(body.contains("# TYPE eventfold_projection_lag gauge"), "{body}");
    assert!(
        body.contains("eventfold_projection_lag{projection=\"bank_account_summary\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("eventfold_projection_dead_letters{projection=\"audit_log\"} 0"),
        "{body}"
    );
    app.stop().await;
}
