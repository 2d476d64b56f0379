//! The pages the binary serves, in a real headless browser with no route
//! to any other host: GraphiQL at `/` and the console at `/console`.

use std::time::Duration;

use serde_json::json;

use crate::auth::{spawn_secured, token};
use crate::browser::Browser;

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
