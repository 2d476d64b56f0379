//! The pages the binary serves, in a real headless browser with no route
//! to any other host: GraphiQL at `/` and the console at `/console`.

use std::time::Duration;

use serde_json::json;

use crate::auth::{spawn_secured, token};
use crate::browser::Browser;
use crate::helpers::{DEPOSIT, account_at, open_account};
use crate::integrity::{dead_letters, park_a_stream, remove_fault};

const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Every page carries the CSP, which names no other origin.
#[tokio::test]
async fn pages_and_assets_carry_a_strict_content_security_policy() {
    let app = spawn_secured().await;
    for path in ["/", "/assets/graphiql.min.js", "/assets/LICENSE.graphiql"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("http"), "{path}: no other origin: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: no unsafe sources: {csp}");
    }
    let missing = app.client.get(app.url("/assets/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn graphiql_renders_offline_and_runs_a_query_with_the_token_from_its_header_editor() {
    let app = spawn_secured().await;
    let browser = Browser::start().await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser
        .until(
            PAGE_WAIT,
            "GraphiQL's editors",
            "return document.querySelector('.graphiql-query-editor .CodeMirror') !== null",
        )
        .await;
    // An admin-only query, with the admin's token typed into the header
    // editor: the result proves the header went with the request.
    let headers =
        json!({ "Authorization": format!("Bearer {}", token("admin", None)) }).to_string();
    browser
        .js(
            "const [query, headers] = arguments;
             document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(query);
             const tab = [...document.querySelectorAll('.graphiql-editor-tools button')]
               .find(b => b.textContent.trim() === 'Headers');
             if (tab && tab.getAttribute('aria-selected') !== 'true') tab.click();
             return true;",
            vec![json!("query Ops { projections { name status } }"), json!(headers)],
        )
        .await;
    browser
        .until(
            PAGE_WAIT,
            "the header editor",
            "const editor = [...document.querySelectorAll('.graphiql-editor-tool .graphiql-editor')]
               .find(e => !e.classList.contains('hidden') && e.querySelector('.CodeMirror'));
             return editor !== undefined;",
        )
        .await;
    browser
        .js(
            "const editor = [...document.querySelectorAll('.graphiql-editor-tool .graphiql-editor')]
               .find(e => !e.classList.contains('hidden') && e.querySelector('.CodeMirror'));
             editor.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0]);
             document.querySelector('.graphiql-execute-button').click();
             return true;",
            vec![json!(headers)],
        )
        .await;
    let result = browser
        .until(
            PAGE_WAIT,
            "the query's result",
            "const r = document.querySelector('.graphiql-response .CodeMirror');
             const text = r ? r.CodeMirror.getValue() : '';
             // GraphiQL notes the edited document's operation name a moment
             // after the edit: a run before that names the old operation.
             if (text.includes('Unknown operation')) {
               document.querySelector('.graphiql-execute-button').click();
             }
             return text.includes('bank_account_summary') ? text : '';",
        )
        .await;
    let result: serde_json::Value = serde_json::from_str(result.as_str().unwrap()).unwrap();
    assert!(result.get("errors").is_none(), "{result}");
    let origins = browser.resource_origins().await;
    let own = format!("http://{}", app.addr);
    assert!(origins.iter().all(|o| *o == own), "only the server's own origin: {origins:?}");
    browser.close().await;
    app.stop().await;
}

/// Clicks the element `selector` once it exists (and is enabled).
async fn click_when_ready(browser: &Browser, what: &str, selector: &str) {
    let script = format!(
        "const b = document.querySelector({selector:?}); if (!b || b.disabled) return false; b.click(); return true;"
    );
    browser.until(PAGE_WAIT, what, &script).await;
}

/// The text of the element `selector` once it contains `expected`.
async fn text_with(browser: &Browser, what: &str, selector: &str, expected: &str) -> String {
    let script = format!(
        "const e = document.querySelector({selector:?}); const t = e ? e.innerText : ''; return t.includes({expected:?}) ? t : '';"
    );
    browser.until(PAGE_WAIT, what, &script).await.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_console_lists_a_stream_shows_its_events_and_tails_a_new_one_live() {
    let app = spawn_secured().await;
    let (id, position) = open_account(&app, "Ada Lovelace", "10", "0").await;
    account_at(&app, &id, &position).await;
    let browser = Browser::start().await;
    browser.client.goto(&app.url("/console")).await.unwrap();
    // Signed in through the page's token field.
    browser
        .js(
            "document.getElementById('token').value = arguments[0];
             document.querySelector('#token-form button').click(); return true;",
            vec![json!(token("admin", None))],
        )
        .await;
    text_with(&browser, "the stream types", "#types", "BankAccount").await;
    // Find the stream by its id, open it, see its event's payload.
    browser
        .js(
            "document.getElementById('find-id').value = arguments[0];
             document.querySelector('#find-form button').click(); return true;",
            vec![json!(id)],
        )
        .await;
    let open = format!("#streams button[aria-label='Open BankAccount {id}']");
    click_when_ready(&browser, "the found stream", &open).await;
    let events = text_with(&browser, "the stream's events", "#events", "AccountOpened").await;
    assert!(events.contains("Ada Lovelace"), "the payload is shown: {events}");
    // The state folded at version 1.
    click_when_ready(&browser, "the fold button", "#state-form button").await;
    text_with(&browser, "the folded state", "#state", "\"balance\": \"10.00\"").await;
    // An event appended after the page loaded arrives in the live tail.
    let deposit = json!({ "input": { "accountId": id, "amount": "2.50" } });
    app.gql(DEPOSIT, deposit).await.ok();
    let tail = text_with(&browser, "the live tail", "#tail", "MoneyDeposited").await;
    assert!(tail.contains(&id), "{tail}");
    text_with(&browser, "the projections", "#projections", "bank_account_summary").await;
    let partitions = "[data-partitions='bank_account_summary']";
    text_with(&browser, "the partition checkpoints", partitions, "partition 3: ").await;
    let origins = browser.resource_origins().await;
    let own = format!("http://{}", app.addr);
    assert!(origins.iter().all(|o| *o == own), "only the server's own origin: {origins:?}");
    // The README's picture of the console, from this very run.
    let png = browser.client.screenshot().await.unwrap();
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png"), png)
        .unwrap();
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_console_retries_a_dead_letter_once_its_cause_is_fixed() {
    let (app, id, _) = park_a_stream().await;
    remove_fault(&app).await;
    let browser = Browser::start().await;
    browser.client.goto(&app.url("/console")).await.unwrap();
    let letters = "[data-dead-letters='bank_account_summary']";
    text_with(&browser, "the dead letters", letters, "MoneyDeposited").await;
    click_when_ready(&browser, "the retry button", "[data-retry='bank_account_summary']").await;
    text_with(&browser, "the retry's report", "#status", "2 applied").await;
    browser
        .until(
            PAGE_WAIT,
            "the dead letters to disappear",
            &format!("return document.querySelector({letters:?}) === null"),
        )
        .await;
    assert!(dead_letters(&app, "bank_account_summary").await.is_empty());
    let row = app.gql("query($id: UUID!) { account(id: $id) { balance } }", json!({ "id": id }));
    assert_eq!(row.await.ok()["account"]["balance"], "13.34");
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn graphiql_subscribes_over_the_websocket_with_the_token_from_its_header_editor() {
    let app = spawn_secured().await;
    let (id, position) = open_account(&app, "Grace", "10", "0").await;
    account_at(&app, &id, &position).await;
    let browser = Browser::start().await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser
        .until(
            PAGE_WAIT,
            "GraphiQL's header editor",
            "const tab = [...document.querySelectorAll('.graphiql-editor-tools button')]
               .find(b => b.textContent.trim() === 'Headers');
             if (tab && tab.getAttribute('aria-selected') !== 'true') tab.click();
             return [...document.querySelectorAll('.graphiql-editor-tool .graphiql-editor')]
               .some(e => !e.classList.contains('hidden') && e.querySelector('.CodeMirror'));",
        )
        .await;
    // accountUpdated needs a signed-in caller: without the header in
    // connection_init the server would refuse it.
    let headers =
        json!({ "Authorization": format!("Bearer {}", token("clerk", None)) }).to_string();
    let subscription =
        format!("subscription Follow {{ accountUpdated(id: \"{id}\") {{ balance }} }}");
    browser
        .js(
            "const [query, headers] = arguments;
             document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(query);
             const editor = [...document.querySelectorAll('.graphiql-editor-tool .graphiql-editor')]
               .find(e => !e.classList.contains('hidden') && e.querySelector('.CodeMirror'));
             editor.querySelector('.CodeMirror').CodeMirror.setValue(headers);
             return true;",
            vec![json!(subscription), json!(headers)],
        )
        .await;
    // Runs it (again, should GraphiQL still name the old operation) until
    // the subscription is live, then deposits until the new balance shows.
    let response = "const r = document.querySelector('.graphiql-response .CodeMirror');
                    return r ? r.CodeMirror.getValue() : '';";
    let deadline = tokio::time::Instant::now() + PAGE_WAIT;
    loop {
        let shown = browser.js(response, vec![]).await;
        let shown = shown.as_str().unwrap_or_default().to_owned();
        if shown.contains("12.00") {
            break;
        }
        assert!(
            !shown.contains("UNAUTHENTICATED"),
            "the header went with connection_init: {shown}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no update arrived; GraphiQL shows {shown}"
        );
        let running = browser
            .js(
                "const b = document.querySelector('.graphiql-execute-button');
                 return (b.getAttribute('aria-label') || '').startsWith('Stop');",
                vec![],
            )
            .await;
        if running != json!(true) {
            browser
                .js(
                    "document.querySelector('.graphiql-execute-button').click(); return true;",
                    vec![],
                )
                .await;
        } else {
            let deposit = json!({ "input": { "accountId": id, "amount": "2" } });
            let done = app.gql(DEPOSIT, deposit).await.ok();
            let position = done["depositMoney"]["position"].as_str().unwrap().to_owned();
            account_at(&app, &id, &position).await;
            // Next deposits would raise the balance past 12.00: stop here
            // and let the update arrive.
            text_with(&browser, "the pushed balance", ".graphiql-response", "12.00").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    browser.close().await;
    app.stop().await;
}
