//! Who may do what: bearer tokens, roles and ownership, as the DESIGN's
//! table says, for every query and mutation (subscriptions: see
//! `ws_security`). A refused command appends nothing.

use std::time::Duration;

use eventfold::infra::jwt::Jwt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::shop_helpers::*;

const SECRET: &str = "an integration test secret of enough length";
const ISSUER: &str = "eventfold-tests";
const AUDIENCE: &str = "eventfold";

pub(crate) fn jwt() -> Jwt {
    Jwt::from_secret(SECRET, Some(ISSUER.into()), Some(AUDIENCE.into())).unwrap()
}

pub(crate) fn token(role: &str, sub: Option<String>) -> String {
    jwt().mint(role, sub, Duration::from_secs(600)).unwrap()
}

/// A server with authentication on; the app's own calls are an admin's.
pub(crate) async fn spawn_secured() -> TestApp {
    spawn_secured_with(|_| {}).await
}

/// [`spawn_secured`], with other settings adjusted too.
pub(crate) async fn spawn_secured_with(
    adjust: impl FnOnce(&mut eventfold::app::Config),
) -> TestApp {
    let mut app = spawn_app_with(|c| {
        c.auth_jwt_secret = Some(SECRET.into());
        c.auth_jwt_issuer = Some(ISSUER.into());
        c.auth_jwt_audience = Some(AUDIENCE.into());
        adjust(c);
    })
    .await;
    app.token = Some(token("admin", Some("ops".into())));
    app
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Answered without errors.
    Ok,
    /// Answered with the field null and no error: another customer's row.
    Hidden,
    /// Refused with this code.
    Code(&'static str),
}
use Expect::{Code, Hidden, Ok};

const UNAUTH: Expect = Code("UNAUTHENTICATED");
const FORBID: Expect = Code("FORBIDDEN");
const MISSING: Expect = Code("NOT_FOUND");

/// Every operation of the matrix, with what it targets.
#[derive(Debug, Clone, Copy)]
enum Op {
    Product,
    Products,
    Customer { own: bool },
    Customers,
    Account { own: bool },
    Accounts,
    BalanceAt { own: bool },
    Order { own: bool },
    Orders,
    StreamEvents,
    Projections,
    RegisterProduct,
    IncreaseStock,
    DecreaseStock,
    RegisterCustomer,
    ChangeEmail { own: bool },
    OpenAccount,
    Deposit { own: bool },
    Withdraw { own: bool },
    WriteCheck { own: bool },
    CreateOrder { own: bool },
    ConfirmOrder,
    CancelOrder { own: bool },
    IssueInvoice,
    CreateShipment,
    UpdateShipment,
}

/// Expectations for (anonymous, customer, clerk, admin).
fn matrix() -> Vec<(Op, [Expect; 4])> {
    use Op::*;
    vec![
        (Product, [Ok, Ok, Ok, Ok]),
        (Products, [Ok, Ok, Ok, Ok]),
        (Customer { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (Customer { own: false }, [UNAUTH, Hidden, Ok, Ok]),
        (Customers, [UNAUTH, Ok, Ok, Ok]),
        (Account { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (Account { own: false }, [UNAUTH, Hidden, Ok, Ok]),
        (Accounts, [UNAUTH, Ok, Ok, Ok]),
        (BalanceAt { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (BalanceAt { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (Order { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (Order { own: false }, [UNAUTH, Hidden, Ok, Ok]),
        (Orders, [UNAUTH, Ok, Ok, Ok]),
        (StreamEvents, [UNAUTH, FORBID, Ok, Ok]),
        (Projections, [UNAUTH, FORBID, Ok, Ok]),
        (RegisterProduct, [UNAUTH, FORBID, Ok, Ok]),
        (IncreaseStock, [UNAUTH, FORBID, Ok, Ok]),
        (DecreaseStock, [UNAUTH, FORBID, Ok, Ok]),
        // The customer may register itself; it already is, so the domain
        // refuses, not the role check.
        (RegisterCustomer, [UNAUTH, Code("INVALID_STATE"), Ok, Ok]),
        (ChangeEmail { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (ChangeEmail { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (OpenAccount, [UNAUTH, Ok, Ok, Ok]),
        (Deposit { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (Deposit { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (Withdraw { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (Withdraw { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (WriteCheck { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (WriteCheck { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (CreateOrder { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (CreateOrder { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (ConfirmOrder, [UNAUTH, FORBID, Ok, Ok]),
        (CancelOrder { own: true }, [UNAUTH, Ok, Ok, Ok]),
        (CancelOrder { own: false }, [UNAUTH, MISSING, Ok, Ok]),
        (IssueInvoice, [UNAUTH, FORBID, Ok, Ok]),
        (CreateShipment, [UNAUTH, FORBID, Ok, Ok]),
        (UpdateShipment, [UNAUTH, FORBID, Ok, Ok]),
    ]
}

/// The data every operation targets: one customer whose token the matrix
/// uses, another customer, their accounts and orders, a product in stock.
pub(crate) struct Fixtures {
    pub(crate) me: Uuid,
    pub(crate) other: Uuid,
    pub(crate) my_account: String,
    pub(crate) other_account: String,
    pub(crate) my_order: String,
    pub(crate) other_order: String,
    pub(crate) product: String,
}

async fn register_self(app: &TestApp, id: Uuid, name: &str) {
    let me = token("customer", Some(id.to_string()));
    let input = json!({ "input": { "name": name, "email": format!("{}@example.com", name.to_lowercase()) } });
    let res = gql_as(app, Some(&me), REGISTER_CUSTOMER, input).await.1.ok();
    assert_eq!(res["registerCustomer"]["id"], id.to_string(), "a customer's id is its sub");
}

async fn account_of(app: &TestApp, customer: Uuid) -> String {
    let input = json!({ "input": { "owner": "x", "initialDeposit": "1000", "overdraftLimit": "0", "customerId": customer } });
    payload(&app.gql(OPEN, input).await.ok(), "openAccount").0
}

async fn order_of(app: &TestApp, customer: Uuid, product: &str) -> String {
    let input = json!({ "input": { "customerId": customer, "items": [{ "productId": product, "quantity": 1 }] } });
    payload(&app.gql(CREATE_ORDER, input).await.ok(), "createOrder").0
}

impl Fixtures {
    /// The token of the customer the fixtures call `me`.
    pub(crate) fn my_token(&self) -> String {
        token("customer", Some(self.me.to_string()))
    }
}

/// [`fixtures`], once the read models show them all.
pub(crate) async fn projected_fixtures(app: &TestApp) -> Fixtures {
    let fx = fixtures(app).await;
    let position = app
        .gql(DEPOSIT, json!({ "input": { "accountId": fx.my_account, "amount": "1" } }))
        .await
        .ok();
    let position = position["depositMoney"]["position"].as_str().unwrap().to_owned();
    app.gql(
        &format!("{{ order(id: \"{}\", minPosition: \"{position}\") {{ id }} }}", fx.other_order),
        json!({}),
    )
    .await
    .ok();
    fx
}

async fn confirmed_order(app: &TestApp, fx: &Fixtures) -> String {
    let order = order_of(app, fx.me, &fx.product).await;
    app.gql(CONFIRM, json!({ "input": { "orderId": order } })).await.ok();
    order
}

async fn fixtures(app: &TestApp) -> Fixtures {
    let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
    register_self(app, me, "Ada").await;
    register_self(app, other, "Grace").await;
    let (product, _) = stocked_product(app, "Widget", "2.50", 100_000).await;
    Fixtures {
        me,
        other,
        my_account: account_of(app, me).await,
        other_account: account_of(app, other).await,
        my_order: order_of(app, me, &product).await,
        other_order: order_of(app, other, &product).await,
        product,
    }
}

/// The document, variables and root field of `op`, creating what it needs.
async fn prepare(app: &TestApp, fx: &Fixtures, op: Op) -> (&'static str, Value, &'static str) {
    let mine = |own: bool, a: &str, b: &str| if own { a.to_owned() } else { b.to_owned() };
    let customer = |own: bool| if own { fx.me } else { fx.other };
    match op {
        Op::Product => (PRODUCT, json!({ "id": fx.product }), "product"),
        Op::Products => ("{ products(first: 5) { edges { node { id } } } }", json!({}), "products"),
        Op::Customer { own } => (CUSTOMER, json!({ "id": customer(own) }), "customer"),
        Op::Customers => {
            ("{ customers(first: 100) { edges { node { id } } } }", json!({}), "customers")
        }
        Op::Account { own } => {
            (ACCOUNT, json!({ "id": mine(own, &fx.my_account, &fx.other_account) }), "account")
        }
        Op::Accounts => {
            ("{ accounts(first: 100) { edges { node { id customerId } } } }", json!({}), "accounts")
        }
        Op::BalanceAt { own } => (
            "query($id: UUID!) { accountBalanceAt(id: $id, at: \"2100-01-01T00:00:00Z\") }",
            json!({ "id": mine(own, &fx.my_account, &fx.other_account) }),
            "accountBalanceAt",
        ),
        Op::Order { own } => {
            (ORDER, json!({ "id": mine(own, &fx.my_order, &fx.other_order) }), "order")
        }
        Op::Orders => (
            "{ orders(first: 100) { edges { node { id customer { id } } } } }",
            json!({}),
            "orders",
        ),
        Op::StreamEvents => (
            "query($id: UUID!) { streamEvents(streamType: \"BankAccount\", streamId: $id) { edges { node { version } } } }",
            json!({ "id": fx.my_account }),
            "streamEvents",
        ),
        Op::Projections => ("{ projections { name } }", json!({}), "projections"),
        Op::RegisterProduct => (
            REGISTER_PRODUCT,
            json!({ "input": { "name": "Gadget", "price": "1" } }),
            "registerProduct",
        ),
        Op::IncreaseStock => (
            INCREASE,
            json!({ "input": { "productId": fx.product, "amount": 1, "reason": "found" } }),
            "increaseStock",
        ),
        Op::DecreaseStock => (
            DECREASE,
            json!({ "input": { "productId": fx.product, "amount": 1, "reason": "lost" } }),
            "decreaseStock",
        ),
        Op::RegisterCustomer => (
            REGISTER_CUSTOMER,
            json!({ "input": { "name": "New", "email": "new@example.com" } }),
            "registerCustomer",
        ),
        Op::ChangeEmail { own } => (
            CHANGE_EMAIL,
            json!({ "input": { "customerId": customer(own), "email": "changed@example.com" } }),
            "changeCustomerEmail",
        ),
        Op::OpenAccount => (
            OPEN,
            json!({ "input": { "owner": "x", "initialDeposit": "1", "overdraftLimit": "0", "customerId": fx.me } }),
            "openAccount",
        ),
        Op::Deposit { own } => (
            DEPOSIT,
            json!({ "input": { "accountId": mine(own, &fx.my_account, &fx.other_account), "amount": "1" } }),
            "depositMoney",
        ),
        Op::Withdraw { own } => (
            WITHDRAW,
            json!({ "input": { "accountId": mine(own, &fx.my_account, &fx.other_account), "amount": "1" } }),
            "withdrawMoney",
        ),
        Op::WriteCheck { own } => (
            CHECK,
            json!({ "input": { "accountId": mine(own, &fx.my_account, &fx.other_account), "checkNumber": Uuid::now_v7().to_string(), "amount": "1" } }),
            "writeCheck",
        ),
        Op::CreateOrder { own } => (
            CREATE_ORDER,
            json!({ "input": { "customerId": customer(own), "items": [{ "productId": fx.product, "quantity": 1 }] } }),
            "createOrder",
        ),
        Op::ConfirmOrder => {
            let order = order_of(app, fx.me, &fx.product).await;
            (CONFIRM, json!({ "input": { "orderId": order } }), "confirmOrder")
        }
        Op::CancelOrder { own } => {
            let order = order_of(app, customer(own), &fx.product).await;
            (CANCEL, json!({ "input": { "orderId": order, "reason": "test" } }), "cancelOrder")
        }
        Op::IssueInvoice => {
            let order = confirmed_order(app, fx).await;
            (INVOICE, json!({ "input": { "orderId": order } }), "issueInvoice")
        }
        Op::CreateShipment => {
            let order = confirmed_order(app, fx).await;
            (SHIP, json!({ "input": { "orderId": order, "carrier": "DHL" } }), "createShipment")
        }
        Op::UpdateShipment => {
            let order = confirmed_order(app, fx).await;
            let shipped = app
                .gql(SHIP, json!({ "input": { "orderId": order, "carrier": "DHL" } }))
                .await
                .ok();
            let shipment = payload(&shipped, "createShipment").0;
            (
                SHIPMENT_STATUS,
                json!({ "input": { "shipmentId": shipment, "status": "IN_TRANSIT" } }),
                "updateShipmentStatus",
            )
        }
    }
}

#[tokio::test]
async fn every_role_may_do_exactly_what_the_design_table_says() {
    let app = spawn_secured().await;
    // Read models must show the fixtures before queries run.
    let fx = projected_fixtures(&app).await;

    let me = fx.my_token();
    let clerk = token("clerk", Some("bob".into()));
    let admin = token("admin", Some("ops".into()));
    let callers = [
        ("anonymous", None),
        ("customer", Some(me.as_str())),
        ("clerk", Some(clerk.as_str())),
        ("admin", Some(admin.as_str())),
    ];
    let mut failures = Vec::new();
    for (op, expected) in matrix() {
        for ((who, bearer), expect) in callers.iter().zip(expected) {
            let (query, variables, field) = prepare(&app, &fx, op).await;
            let before = app.event_count().await;
            let (status, res) = gql_as(&app, *bearer, query, variables).await;
            let appended = app.event_count().await - before;
            let ok = match expect {
                Ok => res.errors.is_empty() && !res.data[field].is_null(),
                Hidden => res.errors.is_empty() && res.data[field].is_null(),
                Code(code) => {
                    res.code() == Some(code) && (!query.starts_with("mutation") || appended == 0)
                }
            };
            if !ok || status != 200 {
                failures.push(format!("{op:?} as {who}: expected {expect:?}, got {status} {res:?} (+{appended} events)"));
            }
        }
    }
    assert!(failures.is_empty(), "{} wrong answers:\n{}", failures.len(), failures.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn a_customer_lists_and_opens_only_what_is_its_own() {
    let app = spawn_secured().await;
    let fx = fixtures(&app).await;
    let me = fx.my_token();
    // Whatever customer it names, a customer opens an account for itself.
    let input = json!({ "input": { "owner": "mine", "initialDeposit": "5", "overdraftLimit": "0", "customerId": fx.other } });
    let (_, res) = gql_as(&app, Some(&me), OPEN, input).await;
    let (id, position) = payload(&res.ok(), "openAccount");
    let query =
        "query($id: UUID!, $p: String) { account(id: $id, minPosition: $p) { customerId } }";
    let (_, res) = gql_as(&app, Some(&me), query, json!({ "id": id, "p": position })).await;
    assert_eq!(res.ok()["account"]["customerId"], fx.me.to_string());
    // Each list waits until its read model has applied everything so far.
    for (query, list) in [
        (
            "query($p: String) { accounts(first: 100, minPosition: $p) { edges { node { customerId } } } }",
            "accounts",
        ),
        (
            "query($p: String) { orders(first: 100, minPosition: $p) { edges { node { customer { id } } } } }",
            "orders",
        ),
        (
            "query($p: String) { customers(first: 100, minPosition: $p) { edges { node { id } } } }",
            "customers",
        ),
    ] {
        let (_, res) = gql_as(&app, Some(&me), query, json!({ "p": position })).await;
        let edges = res.ok()[list]["edges"].as_array().unwrap().clone();
        assert!(!edges.is_empty(), "{list}: the customer's own rows are listed");
        for edge in edges {
            let node = &edge["node"];
            let owner = node.get("customerId").or(node.pointer("/customer/id")).or(node.get("id"));
            assert_eq!(owner, Some(&json!(fx.me.to_string())), "{list} shows only its own rows");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_on_every_operation() {
    let app = spawn_secured().await;
    let other_key = Jwt::from_secret(
        &format!("{SECRET}, but another"),
        Some(ISSUER.into()),
        Some(AUDIENCE.into()),
    )
    .unwrap();
    let other_audience =
        Jwt::from_secret(SECRET, Some(ISSUER.into()), Some("elsewhere".into())).unwrap();
    let other_issuer =
        Jwt::from_secret(SECRET, Some("someone".into()), Some(AUDIENCE.into())).unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = json!({ "role": "admin", "exp": 1_000, "iss": ISSUER, "aud": AUDIENCE });
        encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap())
            .unwrap()
    };
    let bad = [
        ("wrongly signed", other_key.mint("admin", None, week).unwrap()),
        ("wrong audience", other_audience.mint("admin", None, week).unwrap()),
        ("wrong issuer", other_issuer.mint("admin", None, week).unwrap()),
        ("expired", expired),
        ("unknown role", token("root", None)),
        ("customer without a customer id", token("customer", Some("not-a-uuid".into()))),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, bearer) in bad {
        for query in ["{ products(first: 1) { edges { cursor } } }", "{ projections { name } }"] {
            let (status, res) = gql_as(&app, Some(&bearer), query, json!({})).await;
            assert_eq!(status, 401, "{what}: {res:?}");
            assert_eq!(res.code(), Some("UNAUTHENTICATED"), "{what}");
            assert!(res.data.is_null(), "{what}: nothing runs");
        }
    }
    let before = app.event_count().await;
    let forged = other_key.mint("admin", None, week).unwrap();
    let input = json!({ "input": { "name": "Evil", "price": "1" } });
    let (status, _) = gql_as(&app, Some(&forged), REGISTER_PRODUCT, input).await;
    assert_eq!(status, 401);
    assert_eq!(app.event_count().await, before, "a refused command appends nothing");
    app.stop().await;
}

#[tokio::test]
async fn events_record_who_caused_them() {
    let app = spawn_secured().await;
    let clerk = token("clerk", Some("bob".into()));
    let (_, res) = gql_as(
        &app,
        Some(&clerk),
        REGISTER_PRODUCT,
        json!({ "input": { "name": "Tool", "price": "3" } }),
    )
    .await;
    let (id, position) = payload(&res.ok(), "registerProduct");
    let query = "query($id: UUID!, $p: String) { streamEvents(streamType: \"Product\", streamId: $id, minPosition: $p) { edges { node { metadata } } } }";
    let data = app.gql(query, json!({ "id": id, "p": position })).await.ok();
    let metadata = &data["streamEvents"]["edges"][0]["node"]["metadata"];
    assert_eq!(metadata["actor"], json!({ "role": "clerk", "sub": "bob" }), "{metadata}");
    app.stop().await;
}

#[tokio::test]
async fn introspection_is_for_staff_when_authentication_is_on() {
    let app = spawn_secured().await;
    let query = "{ __schema { queryType { name } } }";
    let customer = token("customer", Some(Uuid::now_v7().to_string()));
    for (who, bearer) in [("anonymous callers", None), ("customers", Some(customer.as_str()))] {
        let (_, res) = gql_as(&app, bearer, query, json!({})).await;
        assert!(res.data["__schema"].is_null(), "{who} see no schema: {res:?}");
    }
    let clerk = token("clerk", None);
    let (_, res) = gql_as(&app, Some(&clerk), query, json!({})).await;
    assert_eq!(res.ok()["__schema"]["queryType"]["name"], "Query");
    app.stop().await;
}

#[tokio::test]
async fn without_authentication_the_server_refuses_a_public_address() {
    let (admin, name) = fresh_postgres().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let config = eventfold::app::Config {
        database_url: url,
        listen: "0.0.0.0:0".into(),
        ..eventfold::app::Config::embedded()
    };
    let refused = eventfold::app::start(config).await.err().expect("the server refuses to start");
    let message = format!("{refused:#}");
    assert!(message.contains("AUTH_JWT_SECRET") && message.contains("AUTH_MODE=none"), "{message}");
}
