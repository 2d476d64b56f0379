//! Observability and shutdown on the real binary: `/metrics` parsed as
//! Prometheus text before and after a known workload, JSON logs that carry
//! an internal error's reference, and SIGTERM: draining, no acknowledged
//! mutation lost, exit 0 within the timeout despite stuck clients, leases
//! handed over at once.
//!
//! The servers are processes of their own, so their counters count only
//! this test's work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventfold::app::Role;
use futures::StreamExt as _;
use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::process::{Server, free_port};
use crate::subscriptions::WsClient;

const OPEN_NAMED: &str = "mutation Open($input: OpenAccountInput!) { openAccount(input: $input) { id version position } }";
const DEPOSIT_NAMED: &str = "mutation Deposit($input: DepositMoneyInput!) { depositMoney(input: $input) { id version position } }";
const ACCOUNT_NAMED: &str = "query Account($id: UUID!, $p: String) { account(id: $id, minPosition: $p) { balance version } }";

/// The samples of one scrape, and the declared type of each family.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4); every sample must belong
    /// to a family declared once with `# TYPE`.
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape { samples: Vec::new(), types: BTreeMap::new() };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                let again = scrape.types.insert(name.to_owned(), kind.to_owned());
                assert!(again.is_none(), "family {name} declared twice");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) =
                line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample without value: {line}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed: {line}"));
                    (name, parse_labels(rest))
                }
                None => (series, BTreeMap::new()),
            };
            scrape.samples.push((name.to_owned(), labels, value));
        }
        for (name, _, _) in &scrape.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|f| scrape.types.get(*f).is_some_and(|k| k == "histogram"))
                .unwrap_or(name);
            assert!(scrape.types.contains_key(family), "{name} has no # TYPE");
        }
        scrape
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for (n, l, v) in &self.samples {
            if n == name && labels.iter().all(|(k, want)| l.get(*k).is_some_and(|x| x == want)) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// [`Scrape::sum`], which must exist.
    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels).unwrap_or_else(|| panic!("{name} {labels:?} is missing"))
    }

    fn kind(&self, name: &str) -> &str {
        self.types.get(name).map_or("", String::as_str)
    }
}

/// `a="x",b="y\"z"` as a map (escapes `\\`, `\"`, `\n`).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_owned();
        if name.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} is quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("a closing quote") {
                '\\' => match chars.next().expect("an escaped character") {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name, value);
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(response.status().as_u16(), 200);
    Scrape::parse(&response.text().await.expect("a body"))
}

/// A GraphQL request to the server at `addr`: the response body.
async fn post(addr: SocketAddr, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("a JSON body")
}

/// Deposits 1 on account `id` through the server at `addr`; it must succeed.
async fn deposit_one(addr: SocketAddr, id: &str) {
    let input = json!({ "input": { "accountId": id, "amount": "1" } });
    let done = post(addr, DEPOSIT_NAMED, input).await;
    assert!(done["data"]["depositMoney"]["position"].is_string(), "{done}");
}

/// The position's global part (`tx.pos` → `pos`).
fn pos(position: &str) -> f64 {
    position.rsplit('.').next().and_then(|p| p.parse().ok()).expect("a position")
}

/// The database and Redis prefix the processes share (an API in this
/// process holds them, and drops them at the end).
async fn shared() -> TestApp {
    spawn_app_with(|c| c.role = Role::Api).await
}

fn server(app: &TestApp, role: &str, env: &[(&str, &str)]) -> Server {
    Server::start_with(&app.database_url, app.redis.as_ref().expect("redis"), role, env)
}

#[tokio::test]
async fn every_metric_is_present_and_moves_the_right_way_after_a_known_workload() {
    const N: usize = 5;
    let app = shared().await;
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let metrics: SocketAddr = metrics_listen.parse().unwrap();
    let server = server(&app, "all", &[("METRICS_LISTEN", &metrics_listen)]);
    server.ready().await;
    let addr = server.addr;
    let opened = post(
        addr,
        OPEN_NAMED,
        json!({ "input": { "owner": "Ada", "initialDeposit": "10", "overdraftLimit": "0" } }),
    )
    .await;
    let id = opened["data"]["openAccount"]["id"].as_str().unwrap_or_else(|| panic!("{opened}"));
    let id = id.to_owned();
    let position = opened["data"]["openAccount"]["position"].as_str().unwrap().to_owned();
    let seen = post(addr, ACCOUNT_NAMED, json!({ "id": id, "p": position })).await;
    assert_eq!(seen["data"]["account"]["balance"], "10.00", "{seen}");

    let before = scrape(metrics).await;
    let mut last = String::new();
    for _ in 0..N {
        let done =
            post(addr, DEPOSIT_NAMED, json!({ "input": { "accountId": id, "amount": "1" } })).await;
        let position = done["data"]["depositMoney"]["position"].as_str();
        last = position.unwrap_or_else(|| panic!("{done}")).to_owned();
    }
    let refused =
        post(addr, WITHDRAW, json!({ "input": { "accountId": id, "amount": "1000" } })).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "INSUFFICIENT_FUNDS", "{refused}");
    let pinned = json!({ "input": { "accountId": id, "amount": "1", "expectedVersion": 1 } });
    let conflict = post(addr, DEPOSIT_NAMED, pinned).await;
    assert_eq!(conflict["errors"][0]["extensions"]["code"], "CONCURRENCY_CONFLICT", "{conflict}");
    let seen = post(addr, ACCOUNT_NAMED, json!({ "id": id, "p": last })).await;
    assert_eq!(seen["data"]["account"]["balance"], "15.00", "{seen}");
    let summary = [("projection", "bank_account_summary")];
    let caught_up = eventually(Duration::from_secs(20), || async {
        let now = scrape(metrics).await;
        now.get("eventfold_projection_position", &summary) >= pos(&last)
            && now.get("eventfold_projection_lag", &summary) == 0.0
    })
    .await;
    assert!(caught_up, "bank_account_summary reaches {last} with no lag");
    let after = scrape(metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.get(name, labels) - before.sum(name, labels).unwrap_or(0.0)
    };

    // HTTP: the deposits, the refusal, the conflict and the query.
    let posts = [("route", "/graphql"), ("method", "POST")];
    assert_eq!(after.kind("eventfold_http_requests_total"), "counter");
    assert_eq!(
        delta("eventfold_http_requests_total", &[posts[0], posts[1], ("status", "2xx")]),
        (N + 3) as f64
    );
    assert_eq!(after.kind("eventfold_http_request_duration_seconds"), "histogram");
    assert_eq!(delta("eventfold_http_request_duration_seconds_count", &posts), (N + 3) as f64);
    // GraphQL operations by name, type and outcome.
    let deposit = [("operation", "Deposit"), ("type", "mutation")];
    let ops = "eventfold_graphql_operations_total";
    assert_eq!(delta(ops, &[deposit[0], deposit[1], ("outcome", "ok")]), N as f64);
    assert_eq!(delta(ops, &[deposit[0], ("outcome", "CONCURRENCY_CONFLICT")]), 1.0);
    let anonymous =
        [("operation", "anonymous"), ("type", "mutation"), ("outcome", "INSUFFICIENT_FUNDS")];
    assert_eq!(delta(ops, &anonymous), 1.0);
    assert_eq!(delta(ops, &[("operation", "Account"), ("type", "query"), ("outcome", "ok")]), 1.0);
    assert_eq!(
        delta("eventfold_graphql_operation_duration_seconds_count", &deposit),
        (N + 1) as f64
    );
    // Each document's text is parsed once: the deposit's and the
    // withdrawal's here (the account query's was, before), not N + 3 times.
    assert_eq!(after.kind("eventfold_graphql_documents_parsed_total"), "counter");
    assert_eq!(delta("eventfold_graphql_documents_parsed_total", &[]), 2.0);
    // Commands by type and outcome; conflicts and retries are counted.
    let commands = "eventfold_commands_total";
    let bank = ("aggregate", "BankAccount");
    assert_eq!(delta(commands, &[bank, ("command", "DepositMoney"), ("outcome", "ok")]), N as f64);
    assert_eq!(delta(commands, &[bank, ("command", "DepositMoney"), ("outcome", "conflict")]), 1.0);
    let funds = [bank, ("command", "WithdrawMoney"), ("outcome", "insufficient_funds")];
    assert_eq!(delta(commands, &funds), 1.0);
    // Store races (and so retries) need two processes: see
    // `two_servers_racing_on_one_account_count_their_lost_races_as_retries`.
    assert_eq!(after.kind("eventfold_command_conflicts_total"), "counter");
    assert_eq!(after.kind("eventfold_command_retries_total"), "counter");
    // Appends: one per deposit, in groups.
    assert!(delta("eventfold_append_duration_seconds_count", &[]) >= N as f64);
    assert!(delta("eventfold_append_group_size_sum", &[]) >= N as f64);
    assert!(delta("eventfold_append_group_size_count", &[]) >= 1.0);
    // The relay published them and is not behind.
    assert!(delta("eventfold_relay_published_events_total", &[]) >= N as f64);
    assert!(after.get("eventfold_relay_position", &[]) >= pos(&last));
    assert_eq!(after.get("eventfold_relay_lag_events", &[]), 0.0);
    let relay_waited = after.get("eventfold_relay_lag_seconds", &[]);
    assert!((0.0..5.0).contains(&relay_waited), "the last batch waited {relay_waited} s");
    // The projection applied them: batches, apply time, no lag, nothing parked.
    assert!(delta("eventfold_projection_batch_size_sum", &summary) >= N as f64);
    assert!(delta("eventfold_projection_apply_duration_seconds_count", &summary) >= 1.0);
    // After the group's first commit, live batches go in one statement.
    let group = [("group", "read_models")];
    assert!(delta("eventfold_projection_one_statement_commits_total", &group) >= 1.0);
    assert_eq!(after.kind("eventfold_projection_one_statement_commits_total"), "counter");
    // Where the lag goes: each event's age when received and when applied.
    assert!(delta("eventfold_projection_receive_age_seconds_count", &summary) >= N as f64);
    assert!(delta("eventfold_projection_applied_age_seconds_count", &summary) >= N as f64);
    assert!(
        after.get("eventfold_projection_position", &summary)
            > before.get("eventfold_projection_position", &summary)
    );
    assert_eq!(after.get("eventfold_projection_lag_seconds", &summary), 0.0);
    assert_eq!(after.get("eventfold_projection_dead_letters", &summary), 0.0);
    assert_eq!(after.get("eventfold_projection_transient_failures_total", &summary), 0.0);
    assert_eq!(after.kind("eventfold_projection_transient_failures_total"), "counter");
    // Read-your-writes and the database pools.
    assert_eq!(after.get("eventfold_min_position_waiting", &[]), 0.0);
    assert_eq!(after.kind("eventfold_min_position_refreshes_total"), "counter");
    let events_pool = ("pool", "events");
    let open = after.get("eventfold_db_pool_connections", &[events_pool]);
    assert!((1.0..=16.0).contains(&open), "the events pool holds {open} connections");
    assert_eq!(after.get("eventfold_db_pool_max_connections", &[events_pool]), 16.0);
    // Every checkout was timed; nobody waits once the work is done (the
    // waiting count itself: `a_pool_too_small_for_its_load_shows_who_waits_for_it`).
    assert_eq!(after.kind("eventfold_db_pool_acquire_seconds"), "histogram");
    assert!(delta("eventfold_db_pool_acquire_seconds_count", &[]) >= (N + 3) as f64);
    assert_eq!(after.get("eventfold_db_pool_waiting", &[]), 0.0);

    // WebSockets: a connection and its subscription show, then go.
    assert_eq!(after.get("eventfold_websocket_connections", &[]), 0.0);
    let mut ws = WsClient::connect_to(addr, false).await;
    let updates = "subscription($id: UUID!) { accountUpdated(id: $id) { balance } }";
    ws.subscribe("1", updates, json!({ "id": id })).await;
    let open = eventually(Duration::from_secs(10), || async {
        let now = scrape(metrics).await;
        now.get("eventfold_websocket_connections", &[]) == 1.0
            && now.get("eventfold_subscriptions_active", &[]) == 1.0
    })
    .await;
    assert!(open, "one connection with one subscription shows");
    post(addr, DEPOSIT_NAMED, json!({ "input": { "accountId": id, "amount": "1" } })).await;
    assert_eq!(ws.next_data().await["accountUpdated"]["balance"], "16.00");
    let started = [("type", "subscription"), ("outcome", "ok")];
    let counted = eventually(Duration::from_secs(10), || async {
        scrape(metrics).await.sum(ops, &started) == Some(1.0)
    })
    .await;
    assert!(counted, "the subscription is counted at its first event");
    ws.socket.close(None).await.expect("closed");
    drop(ws);
    let closed = eventually(Duration::from_secs(10), || async {
        let now = scrape(metrics).await;
        now.get("eventfold_websocket_connections", &[]) == 0.0
            && now.get("eventfold_subscriptions_active", &[]) == 0.0
    })
    .await;
    assert!(closed, "the closed connection and its subscription are gone");
    app.stop().await;
}

#[tokio::test]
async fn two_servers_racing_on_one_account_count_their_lost_races_as_retries() {
    const CLIENTS: usize = 8;
    const EACH: usize = 10;
    let app = shared().await;
    let listens: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let servers: Vec<Server> =
        listens.iter().map(|l| server(&app, "api", &[("METRICS_LISTEN", l)])).collect();
    for s in &servers {
        s.ready().await;
    }
    let metrics: Vec<SocketAddr> = listens.iter().map(|l| l.parse().unwrap()).collect();
    let input =
        json!({ "input": { "owner": "Race", "initialDeposit": "0", "overdraftLimit": "0" } });
    let opened = post(servers[0].addr, OPEN_NAMED, input).await;
    let id = opened["data"]["openAccount"]["id"].as_str().unwrap_or_else(|| panic!("{opened}"));
    let id = id.to_owned();
    let total = |name: &'static str| {
        let metrics = metrics.clone();
        async move {
            let mut sum = 0.0;
            for m in metrics {
                sum += scrape(m).await.sum(name, &[]).unwrap_or(0.0);
            }
            sum
        }
    };
    let (conflicts, retries) = (
        total("eventfold_command_conflicts_total").await,
        total("eventfold_command_retries_total").await,
    );
    // Each process decides on the version it loaded; the other process's
    // append in between makes the store refuse it, and the command runs again.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (addr, id) = (servers[n % 2].addr, id.clone());
            tokio::spawn(async move {
                for _ in 0..EACH {
                    deposit_one(addr, &id).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let stored = app
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM events WHERE stream_id = '{id}' AND event_type = 'MoneyDeposited'"
        ))
        .await;
    assert_eq!(stored, (CLIENTS * EACH) as i64, "every acknowledged deposit is stored once");
    let lost = total("eventfold_command_conflicts_total").await - conflicts;
    let again = total("eventfold_command_retries_total").await - retries;
    assert!(lost > 0.0, "two processes racing on one stream lose races");
    assert!(again > 0.0, "a lost race is run again");
}

#[tokio::test]
async fn a_pool_too_small_for_its_load_shows_who_waits_for_it() {
    const CLIENTS: usize = 4;
    const EACH: usize = 5;
    let app = shared().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let metrics: SocketAddr = listen.parse().unwrap();
    // One connection for all: the clients' reads, loads and appends queue
    // for it, and so do the scrape's own reads.
    let env = [("METRICS_LISTEN", listen.as_str()), ("DATABASE_POOL_SIZE", "1")];
    let server = server(&app, "api", &env);
    server.ready().await;
    let addr = server.addr;
    let mut ids = Vec::new();
    for _ in 0..CLIENTS {
        let input =
            json!({ "input": { "owner": "Queue", "initialDeposit": "1", "overdraftLimit": "0" } });
        let opened = post(addr, OPEN_NAMED, input).await;
        let id = opened["data"]["openAccount"]["id"].as_str().map(str::to_owned);
        ids.push(id.unwrap_or_else(|| panic!("{opened}")));
    }
    let before = scrape(metrics).await;
    assert_eq!(before.kind("eventfold_db_pool_waiting"), "gauge");
    assert_eq!(before.get("eventfold_db_pool_waiting", &[]), 0.0);
    assert_eq!(before.get("eventfold_scrape_states_read", &[]), 1.0);
    assert!(before.sum("eventfold_projection_lag", &[]).is_some(), "the states were read");
    // A read of the account view holds the one connection until this lock
    // goes: whatever else needs the database queues in the pool meanwhile.
    let blocker = app.db.begin().await.unwrap();
    blocker
        .execute_unprepared("LOCK TABLE bank_account_summary_view IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let clients: Vec<_> = ids
        .into_iter()
        .map(|id| {
            tokio::spawn(async move {
                for _ in 0..EACH {
                    deposit_one(addr, &id).await;
                    // A read checks a connection out each time (no cache).
                    let seen = post(addr, ACCOUNT_NAMED, json!({ "id": id })).await;
                    assert!(seen["errors"].is_null(), "{seen}");
                }
            })
        })
        .collect();
    // The scrape cannot read the projections' states either; it answers
    // without them once it has waited for them long enough. Bounded well
    // under the pool's 10 s checkout timeout, which would fail the clients.
    let mut starved = scrape(metrics).await;
    for _ in 0..2 {
        if starved.get("eventfold_db_pool_waiting", &[]) >= 1.0 {
            break;
        }
        starved = scrape(metrics).await;
    }
    blocker.commit().await.unwrap();
    let waiting = starved.get("eventfold_db_pool_waiting", &[]);
    assert!(waiting >= 1.0, "tasks queue for the one connection (seen {waiting})");
    assert_eq!(starved.get("eventfold_scrape_states_read", &[]), 0.0);
    assert_eq!(starved.sum("eventfold_projection_lag", &[]), None, "no state it could not read");
    assert_eq!(starved.get("eventfold_db_pool_connections", &[("state", "in_use")]), 1.0);
    assert_eq!(starved.get("eventfold_db_pool_max_connections", &[]), 1.0);
    for client in clients {
        client.await.unwrap();
    }
    let after = scrape(metrics).await;
    assert_eq!(after.get("eventfold_db_pool_waiting", &[]), 0.0, "every waiter was served");
    assert_eq!(after.get("eventfold_scrape_states_read", &[]), 1.0);
    assert!(after.sum("eventfold_projection_lag", &[]).is_some(), "the states are back");
    let checkouts = after.get("eventfold_db_pool_acquire_seconds_count", &[])
        - before.get("eventfold_db_pool_acquire_seconds_count", &[]);
    // At least one per append (loads may come from the cache).
    let appends = after.get("eventfold_append_group_size_count", &[])
        - before.sum("eventfold_append_group_size_count", &[]).unwrap_or(0.0);
    assert!(appends >= 1.0);
    assert!(checkouts >= appends, "{checkouts} checkouts for {appends} append groups");
    let waited = after.get("eventfold_db_pool_acquire_seconds_sum", &[])
        - before.get("eventfold_db_pool_acquire_seconds_sum", &[]);
    assert!(waited >= 1.0, "the checkouts waited behind the lock ({waited} s in all)");
    app.stop().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_an_internal_error_logs_its_reference() {
    let app = shared().await;
    let server = server(&app, "all", &[("LOG_FORMAT", "json")]);
    server.ready().await;
    let opened = post(
        server.addr,
        OPEN,
        json!({ "input": { "owner": "Ada", "initialDeposit": "1", "overdraftLimit": "0" } }),
    )
    .await;
    let id = opened["data"]["openAccount"]["id"].as_str().unwrap_or_else(|| panic!("{opened}"));
    sea_orm::ConnectionTrait::execute_unprepared(&app.db, "DROP TABLE bank_account_summary_view")
        .await
        .unwrap();
    let failed = post(server.addr, ACCOUNT, json!({ "id": id })).await;
    assert_eq!(failed["errors"][0]["extensions"]["code"], "INTERNAL", "{failed}");
    let message = failed["errors"][0]["message"].as_str().unwrap();
    let reference = message
        .split("reference ")
        .nth(1)
        .map(|r| r.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no reference in {message:?}"))
        .to_owned();
    let logged = eventually(Duration::from_secs(10), || {
        let log = server.log_text();
        let reference = reference.clone();
        async move {
            log.lines().filter(|l| !l.trim().is_empty()).any(|line| {
                let entry: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(entry.is_object(), "one object per line: {line}");
                entry["level"] == "ERROR" && entry["reference"] == reference.as_str()
            })
        }
    })
    .await;
    assert!(logged, "an ERROR line carries reference {reference}:\n{}", server.log_text());
    app.stop().await;
}

#[tokio::test]
async fn sigterm_drains_keeps_every_acknowledged_mutation_and_exits_zero_despite_stuck_clients() {
    const TIMEOUT_MS: u64 = 3_000;
    let app = shared().await;
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let metrics: SocketAddr = metrics_listen.parse().unwrap();
    let timeout = TIMEOUT_MS.to_string();
    let env = [
        ("METRICS_LISTEN", metrics_listen.as_str()),
        ("SHUTDOWN_TIMEOUT_MS", timeout.as_str()),
        ("MIN_POSITION_TIMEOUT_MS", "2500"),
    ];
    let mut server = server(&app, "all", &env);
    server.ready().await;
    let addr = server.addr;
    let mut ids = Vec::new();
    for owner in ["a", "b", "c", "d"] {
        let opened = post(
            addr,
            OPEN,
            json!({ "input": { "owner": owner, "initialDeposit": "0", "overdraftLimit": "0" } }),
        )
        .await;
        ids.push(opened["data"]["openAccount"]["id"].as_str().expect("opened").to_owned());
    }
    // Bounded load: each client deposits on its account until the server
    // stops answering, and keeps the positions it was given.
    let load: Vec<_> = ids
        .iter()
        .map(|id| {
            let (url, id) = (format!("http://{addr}/graphql"), id.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                for _ in 0..2_000 {
                    let body = json!({ "query": DEPOSIT, "variables": { "input": { "accountId": id, "amount": "1" } } });
                    let sent = client.post(&url).json(&body).timeout(Duration::from_secs(10)).send().await;
                    let Ok(response) = sent else { break };
                    if response.status().as_u16() != 200 {
                        break;
                    }
                    let Ok(body) = response.json::<Value>().await else { break };
                    match body["data"]["depositMoney"]["position"].as_str() {
                        Some(position) => acknowledged.push(position.to_owned()),
                        None => break,
                    }
                }
                (id, acknowledged)
            })
        })
        .collect();
    let busy =
        eventually(Duration::from_secs(30), || async { app.event_count().await >= 4 + 40 }).await;
    assert!(busy, "the load is running");
    let mut ws = WsClient::connect_to(addr, false).await;
    // A request in flight: it waits for a position no projection reaches.
    let slow =
        tokio::spawn(post(addr, ACCOUNT, json!({ "id": ids[0], "p": "999999999.999999999" })));
    // A client that promised a body it never sends, and one that never
    // finishes its headers.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{\"query\":")
        .await
        .unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /graphql HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    server.sigterm();
    let client = reqwest::Client::new();
    let ready_url = format!("http://{metrics}/health/ready");
    let draining = eventually(Duration::from_secs(2), || async {
        match client.get(&ready_url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) => {
                r.status().as_u16() == 503 && r.text().await.is_ok_and(|t| t.contains("draining"))
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(draining, "readiness is 503 draining while the API drains");
    let closed = eventually(Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(closed, "no new connection is accepted");
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the WebSocket is closed within 5 s");
    assert_eq!(close, Some(1001), "the WebSocket is closed as going away");
    let answered = slow.await.expect("the slow request ran");
    assert!(answered.get("errors").is_some() || answered.get("data").is_some(), "{answered}");

    let limit = Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(4);
    let status = server.wait_exit(limit).await;
    let status =
        status.unwrap_or_else(|| panic!("still running after {limit:?}:\n{}", server.log_text()));
    assert!(status.success(), "exit {status:?}:\n{}", server.log_text());
    assert!(signalled.elapsed() < limit);
    assert!(
        server.log_text().contains("connections still busy at the shutdown timeout"),
        "the stuck client was cut at the timeout:\n{}",
        server.log_text()
    );
    drop((stuck, half));

    let mut acknowledged = Vec::new();
    for task in load {
        acknowledged.push(task.await.expect("a load client"));
    }
    let total: usize = acknowledged.iter().map(|(_, a)| a.len()).sum();
    assert!(total >= 40, "{total} deposits acknowledged");
    for (id, positions) in &acknowledged {
        for position in positions {
            let (tx, p) = position.split_once('.').expect("tx.pos");
            let sql = format!(
                "SELECT COUNT(*) FROM events WHERE tx_id = {tx} AND position = {p} AND stream_id = '{id}'"
            );
            assert_eq!(
                app.scalar_i64(&sql).await,
                1,
                "acknowledged deposit {position} of {id} is stored"
            );
        }
    }
    // After a restart, the read side shows every stored deposit.
    let restarted = self::server(&app, "all", &[]);
    restarted.ready().await;
    for (id, positions) in &acknowledged {
        let sql = format!(
            "SELECT COUNT(*) FROM events WHERE stream_id = '{id}' AND event_type = 'MoneyDeposited'"
        );
        let stored = app.scalar_i64(&sql).await;
        assert!(stored >= positions.len() as i64);
        let expected = format!("{stored}.00");
        let converged = eventually(Duration::from_secs(30), || async {
            let seen = post(restarted.addr, ACCOUNT, json!({ "id": id })).await;
            seen["data"]["account"]["balance"] == expected.as_str()
        })
        .await;
        assert!(converged, "account {id} shows its {stored} stored deposits after the restart");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_projector_stopped_with_sigterm_releases_its_leases_so_another_takes_over_at_once() {
    let app = shared().await;
    let redis = app.redis.clone().expect("redis");
    let long_lease = [("LEASE_TTL_MS", "30000")];
    let _relay = server(&app, "relay", &long_lease);
    let mut first = server(&app, "projector", &long_lease);
    let (id, _) = open_account(&app, "Ada", "1", "0").await;
    let applied = eventually(Duration::from_secs(30), || async {
        !app.gql(ACCOUNT, json!({ "id": id })).await.ok()["account"].is_null()
    })
    .await;
    assert!(applied, "the first projector applies the opening");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{}:lease:read_models:*", redis.prefix);
    let leases = || {
        let mut conn = conn.clone();
        let pattern = pattern.clone();
        async move {
            let keys: Vec<String> =
                redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.unwrap();
            keys.len()
        }
    };
    let held = eventually(Duration::from_secs(10), || {
        let count = leases();
        async move { count.await == 4 }
    })
    .await;
    assert!(held, "the first projector holds the partitions");
    assert_eq!(leases().await, 4, "one worker alone holds all four partitions");

    let status = first.terminate_within(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}:\n{}", first.log_text());
    let all: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:lease:*", redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let projector_leases: Vec<_> = all.iter().filter(|k| !k.ends_with(":relay")).collect();
    assert!(projector_leases.is_empty(), "leases left behind: {projector_leases:?}");

    let second = server(&app, "projector", &long_lease);
    let started = Instant::now();
    app.gql(DEPOSIT, json!({ "input": { "accountId": id, "amount": "2" } })).await.ok();
    let taken_over = eventually(Duration::from_secs(15), || async {
        app.gql(ACCOUNT, json!({ "id": id })).await.ok()["account"]["balance"] == "3.00"
    })
    .await;
    assert!(
        taken_over,
        "the second projector applies within 15 s, the lease lives 30 s:\n{}",
        second.log_text()
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    app.stop().await;
}
