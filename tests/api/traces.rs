//! OpenTelemetry traces of the real binary, its roles in separate
//! processes (PostgreSQL + Redis), received by an OTLP/HTTP endpoint of
//! the test's own that decodes what the exporter sends (protobuf, or JSON
//! where a process is told `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use eventfold::app::Role;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::process::Server;
use crate::subscriptions::WsClient;

/// One received span, ids in lowercase hex.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
    attributes: HashMap<String, String>,
}

impl Got {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    fn links_to(&self, other: &Got) -> bool {
        self.links.iter().any(|(t, s)| *t == other.trace_id && *s == other.span_id)
    }

    fn child_of(&self, other: &Got) -> bool {
        self.trace_id == other.trace_id && self.parent == other.span_id
    }
}

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Got>>>,
    /// Export requests received, whatever their content.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Received {
    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// An OTLP/HTTP trace receiver on a free loopback port.
async fn receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

async fn export(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    received.requests.lock().unwrap().push(content_type.clone());
    let request = if content_type.starts_with("application/json") {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).ok()
    } else {
        ExportTraceServiceRequest::decode(body.as_ref()).ok()
    };
    let Some(request) = request else {
        return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain")], vec![]);
    };
    let mut spans = received.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| attributes(&r.attributes));
        let service = resource.and_then(|r| r.get("service.name").cloned()).unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Got {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
                links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                attributes: attributes(&span.attributes),
            });
        }
    }
    // An empty ExportTraceServiceResponse.
    let content_type = if content_type.starts_with("application/json") {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let body = if content_type == "application/json" { b"{}".to_vec() } else { vec![] };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// A GraphQL request to `addr`, with extra headers.
async fn post(addr: SocketAddr, query: &str, variables: Value, headers: &[(&str, &str)]) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .timeout(Duration::from_secs(20))
        .json(&json!({ "query": query, "variables": variables }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body: Value = request.send().await.expect("answers").json().await.expect("JSON");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

/// Opens an account through `addr` and waits until the read side shows it.
async fn open_and_project(addr: SocketAddr) -> String {
    let input = json!({ "owner": "Ada", "initialDeposit": "10", "overdraftLimit": "0" });
    let opened = post(addr, OPEN, json!({ "input": input }), &[]).await;
    let id = opened["openAccount"]["id"].as_str().unwrap().to_owned();
    let position = opened["openAccount"]["position"].as_str().unwrap().to_owned();
    let shown = eventually(Duration::from_secs(20), || async {
        let body: Value = reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .json(&json!({ "query": ACCOUNT, "variables": { "id": id, "p": position } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["account"]["version"] == 1
    })
    .await;
    assert!(shown, "the opened account reaches the read side");
    id
}

fn otel_env<'a>(endpoint: &'a str, service: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]
}

#[tokio::test]
async fn one_deposit_is_one_trace_from_the_request_to_the_subscriber_across_processes() {
    // An API in this process only to own the database and the prefix; the
    // traced roles are the real binary, one process each.
    let owner = spawn_app_with(|c| c.role = Role::Api).await;
    let redis = owner.redis.clone().unwrap();
    let (receiver_addr, received) = receiver().await;
    let endpoint = format!("http://{receiver_addr}");
    let mut api_env = otel_env(&endpoint, "eventfold-api");
    api_env.extend([
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,sqlx=warn,eventfold::es::command=debug"),
    ]);
    let api = Server::start_with(&owner.database_url, &redis, "api", &api_env);
    let mut relay_env = otel_env(&endpoint, "eventfold-relay");
    relay_env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"));
    let _relay = Server::start_with(&owner.database_url, &redis, "relay", &relay_env);
    let projector_env = otel_env(&endpoint, "eventfold-projector");
    let _projector = Server::start_with(&owner.database_url, &redis, "projector", &projector_env);
    api.ready().await;

    let id = open_and_project(api.addr).await;
    let mut ws = WsClient::connect_to(api.addr, false).await;
    let subscription = "subscription($id: UUID!) { accountUpdated(id: $id) { balance version } }";
    ws.subscribe("1", subscription, json!({ "id": id })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The client's own trace, which the server must continue.
    let trace_id = Uuid::new_v4().simple().to_string();
    let client_span = Uuid::new_v4().simple().to_string()[..16].to_owned();
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let input = json!({ "accountId": id, "amount": "5" });
    post(api.addr, DEPOSIT, json!({ "input": input }), &[("traceparent", &traceparent)]).await;
    let mut pushed = ws.next_data().await;
    if pushed["accountUpdated"]["version"] == 1 {
        pushed = ws.next_data().await;
    }
    assert_eq!(pushed["accountUpdated"]["version"], 2);

    let complete = eventually(Duration::from_secs(20), || async {
        let spans = received.spans();
        let in_trace =
            |name: &str| spans.iter().any(|s| s.trace_id == trace_id && s.name.starts_with(name));
        in_trace("POST /graphql")
            && in_trace("relay publish")
            && ["bank_account_summary", "audit_log"].iter().all(|p| {
                spans.iter().any(|s| s.trace_id == trace_id && s.attr("projection") == Some(p))
            })
            && in_trace("subscription push account")
    })
    .await;
    let spans = received.spans();
    let find = |what: &str, pick: &dyn Fn(&Got) -> bool| -> Got {
        spans.iter().find(|s| pick(s)).cloned().unwrap_or_else(|| {
            panic!("no {what} span in the trace; received: {:#?}", received.spans())
        })
    };
    assert!(complete, "every span of the trace arrived; received: {spans:#?}");

    // API process: request → operation → command → append.
    let http = find("http request", &|s| s.trace_id == trace_id && s.name == "POST /graphql");
    assert_eq!(http.service, "eventfold-api");
    assert_eq!(http.parent, client_span, "the incoming traceparent is continued");
    assert_eq!(http.attr("http.response.status_code"), Some("200"));
    let operation = find("graphql", &|s| s.child_of(&http));
    assert_eq!(operation.name, "mutation depositMoney");
    assert_eq!(operation.attr("graphql.operation.type"), Some("mutation"));
    let command = find("command", &|s| s.child_of(&operation) && s.name.starts_with("command"));
    assert_eq!(command.attr("stream_type"), Some("BankAccount"));
    assert_eq!(command.attr("stream_id"), Some(id.as_str()));
    assert_eq!(command.attr("outcome"), Some("ok"));
    assert_eq!(command.attr("retries"), Some("0"));
    let append = find("append", &|s| s.child_of(&command) && s.name == "append");
    assert_eq!(append.attr("events"), Some("1"));
    assert!(append.attr("group_size").is_some_and(|g| g.parse::<u64>().unwrap() >= 1));

    // The event carries the append span's context.
    let stored = owner
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT metadata::text FROM events WHERE stream_id = '{id}' AND version = 2"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    let metadata: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(metadata["traceparent"], format!("00-{trace_id}-{}-01", append.span_id));
    // Without an X-Correlation-Id header, the trace id names the transaction.
    assert_eq!(metadata["correlation_id"], trace_id.as_str());

    // Relay process (OTLP/JSON): the publish links to the append.
    let relay = find("relay publish", &|s| s.name == "relay publish" && s.links_to(&append));
    assert_eq!(relay.service, "eventfold-relay");
    assert!(relay.child_of(&append), "one mutation's batch continues its trace");

    // Projector process: each projection's apply links to the append.
    let apply = find("projector apply", &|s| {
        s.links_to(&append) && s.attr("projection") == Some("bank_account_summary")
    });
    assert_eq!(apply.service, "eventfold-projector");
    assert!(apply.child_of(&append));
    assert!(apply.attr("batch_size").is_some_and(|b| b.parse::<u64>().unwrap() >= 1));
    let audit =
        find("audit apply", &|s| s.links_to(&append) && s.attr("projection") == Some("audit_log"));
    assert_eq!(audit.service, "eventfold-projector");

    // Back in the API process: the push to the subscriber continues the apply.
    let push =
        find("subscription push", &|s| s.name == "subscription push account" && s.child_of(&apply));
    assert_eq!(push.service, "eventfold-api");
    assert_eq!(push.attr("id"), Some(id.as_str()));
    assert!(
        received.requests.lock().unwrap().iter().any(|c| c.starts_with("application/json")),
        "the relay exported OTLP/JSON"
    );

    // The API's JSON log line of the command names its trace and span.
    let log = std::fs::read_to_string(&api.log).unwrap();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "command handled" && l["trace_id"] == trace_id.as_str())
        .unwrap_or_else(|| panic!("a JSON log line of the command; log:\n{log}"));
    assert_eq!(line["span_id"], command.span_id.as_str());
    assert_eq!(line["level"], "DEBUG");
    owner.stop().await;
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_no_trace_context_is_stored() {
    let owner = spawn_app_with(|c| c.role = Role::Api).await;
    let redis = owner.redis.clone().unwrap();
    let (receiver_addr, received) = receiver().await;
    let endpoint = format!("http://{receiver_addr}");
    // Every other OTEL_* variable set, the endpoint not.
    let unset = [
        ("OTEL_SERVICE_NAME", "eventfold-off"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,sqlx=warn,eventfold::es::command=debug"),
    ];
    let server = Server::start_with(&owner.database_url, &redis, "all", &unset);
    server.ready().await;
    // The endpoint set, but the SDK disabled by the standard switch.
    let mut disabled_env = otel_env(&endpoint, "eventfold-disabled");
    disabled_env.push(("OTEL_SDK_DISABLED", "true"));
    let disabled = Server::start_with(&owner.database_url, &redis, "all", &disabled_env);
    disabled.ready().await;

    for addr in [server.addr, disabled.addr] {
        let id = open_and_project(addr).await;
        let input = json!({ "accountId": id, "amount": "5" });
        let traceparent = format!("00-{}-{}-01", Uuid::new_v4().simple(), "00f067aa0ba902b7");
        post(addr, DEPOSIT, json!({ "input": input }), &[("traceparent", &traceparent)]).await;
    }
    // Longer than the batch delay the exporters would have used.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(received.requests(), 0, "nothing was sent to the receiver");
    let with_context = owner
        .scalar_i64("SELECT COUNT(*) FROM events WHERE (metadata::jsonb) ? 'traceparent'")
        .await;
    assert_eq!(with_context, 0, "no traceparent is stored when traces are off");
    assert_eq!(owner.event_count().await, 4);
    let log = std::fs::read_to_string(&server.log).unwrap();
    let lines: Vec<Value> =
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    assert!(
        lines.iter().any(|l| l["message"] == "command handled"),
        "JSON lines are written; log:\n{log}"
    );
    assert!(lines.iter().all(|l| l.get("trace_id").is_none()), "no trace ids without traces");
    owner.stop().await;
}
