//! HTTP surface: GraphQL over HTTP (POST and GET, with content negotiation,
//! CORS for the allowed origins), GraphQL over WebSocket ([`ws`]), GraphiQL,
//! health checks and metrics, and the limits every request is held to: a
//! header and a request timeout, a body size, a rate per caller.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router, middleware};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument as _;

use crate::graphql::{ApiError, AppSchema};
use crate::service::{Caller, CorrelationId, Services};

mod assets;
mod correlation;
mod limits;
mod metrics;
mod negotiate;
mod origin;
mod rate_limit;
mod serve;
mod trace;
pub mod ws;

use limits::BodyError;
use negotiate::{MediaType, is_mutation, response_media_type};
use origin::Origins;
pub use origin::parse_origin;
use rate_limit::{CallerKey, RateLimiter};
pub use serve::serve;

/// What the HTTP layer holds requests to, from the settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body, and largest WebSocket message, in bytes; a
    /// larger body is answered 413.
    pub max_body_bytes: usize,
    /// Longest a request may take (also how long a client may take to send
    /// its headers, see [`serve`]).
    pub request_timeout: Duration,
    /// Most root fields of one GraphQL operation.
    pub max_root_fields: usize,
    /// Requests per second and burst of one caller; `None`: no limit.
    pub rate_limit: Option<(u32, u32)>,
    /// Most operations one WebSocket may run at once.
    pub ws_max_subscriptions: usize,
    /// Origins besides the server's own that browsers may use, as
    /// [`parse_origin`] returns them.
    pub allowed_origins: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    schema: AppSchema,
    services: Arc<Services>,
    settings: Arc<HttpSettings>,
    origins: Arc<Origins>,
    limiter: Option<Arc<RateLimiter>>,
    max_body_bytes: usize,
}

pub fn router(services: Arc<Services>, settings: HttpSettings) -> Router {
    let schema = crate::graphql::schema(services.clone(), settings.max_root_fields);
    let open_mode = !services.access.is_enforced();
    let origins = Arc::new(Origins::new(settings.allowed_origins.clone(), open_mode));
    let limiter = settings.rate_limit.map(|(rate, burst)| Arc::new(RateLimiter::new(rate, burst)));
    let (max_body_bytes, request_timeout) = (settings.max_body_bytes, settings.request_timeout);
    let state = AppState {
        schema,
        services,
        settings: Arc::new(settings),
        origins: origins.clone(),
        limiter,
        max_body_bytes,
    };
    let graphql = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .layer(cors(origins))
        .layer(middleware::from_fn(trace::request_span));
    Router::new()
        .route("/", get(assets::graphiql))
        .route("/console", get(assets::console))
        .route("/assets/{name}", get(assets::asset))
        .merge(graphql)
        .route("/graphql/ws", get(ws::upgrade))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(request_timeout, limits::request_timeout))
        .layer(middleware::from_fn(metrics::count_request))
}

/// `/metrics` and the health checks, without authentication: for
/// `METRICS_LISTEN`, an address only the monitoring can reach. It stays up
/// while the API drains, so readiness can say so.
pub fn metrics_router(services: Arc<Services>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::open_metrics))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(|State(services): State<Arc<Services>>| readiness(services)))
        .with_state(services)
}

/// CORS for GraphQL over HTTP: a browser page may read responses only if
/// its origin may also open a WebSocket. Tokens travel in `Authorization`,
/// never in cookies, so credentials are not allowed.
fn cors(origins: Arc<Origins>) -> CorsLayer {
    let allowed = AllowOrigin::predicate(move |origin, request| {
        origins.allow(Some(origin), request.headers.get(header::HOST))
    });
    CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            correlation::HEADER,
            header::HeaderName::from_static(crate::infra::trace_context::TRACEPARENT),
        ])
        .expose_headers([correlation::HEADER])
}

/// 200 `{"status":"ready"}`, or 503 `{"status":"unavailable","reasons":[…]}`.
async fn ready(State(state): State<AppState>) -> Response {
    readiness(state.services).await
}

async fn readiness(services: Arc<Services>) -> Response {
    let report = services.ready().await;
    let (status, body) = if report.is_ready() {
        (StatusCode::OK, serde_json::json!({ "status": "ready" }))
    } else {
        tracing::warn!(reasons = ?report.reasons, "not ready");
        let body = serde_json::json!({ "status": "unavailable", "reasons": report.reasons });
        (StatusCode::SERVICE_UNAVAILABLE, body)
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// An error outside GraphQL execution, shaped as a GraphQL response.
fn graphql_error(status: StatusCode, media: MediaType, code: &str, message: &str) -> Response {
    debug_assert!(crate::graphql::error::CODES.contains(&code), "{code} is not a listed code");
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, [(header::CONTENT_TYPE, media.as_str())], body.to_string()).into_response()
}

/// A request error outside GraphQL: malformed HTTP, not a GraphQL result.
fn request_error(status: StatusCode, media: MediaType, message: &str) -> Response {
    graphql_error(status, media, "VALIDATION_ERROR", message)
}

/// The client's address, as the accept loop recorded it.
type Client = Option<Extension<ConnectInfo<SocketAddr>>>;

async fn graphql_post(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(media) = response_media_type(&headers) else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "Accept application/graphql-response+json or application/json",
        )
            .into_response();
    };
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "Content-Type must be application/json",
        );
    }
    let (caller, correlation) = match admit_correlated(&state, &headers, client, media) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let body = match limits::read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        // VALIDATION_ERROR like every other refused request: the status
        // says which limit it was.
        Err(BodyError::TooLarge) => {
            let limit = state.max_body_bytes;
            let message = format!("the request body exceeds {limit} bytes");
            return request_error(StatusCode::PAYLOAD_TOO_LARGE, media, &message);
        }
        Err(BodyError::Unreadable) => {
            return request_error(StatusCode::BAD_REQUEST, media, "the request body was cut off");
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                &format!("invalid GraphQL request body: {e}"),
            );
        }
    };
    execute(&state, caller, correlation, request, media).await
}

async fn graphql_get(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(media) = response_media_type(&headers) else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "Accept application/graphql-response+json or application/json",
        )
            .into_response();
    };
    let Some(query) = params.get("query") else {
        return request_error(StatusCode::BAD_REQUEST, media, "missing query parameter");
    };
    let operation = params.get("operationName").cloned();
    if is_mutation(query, operation.as_deref()) {
        let mut response = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            "mutations must be sent with POST",
        );
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    let (caller, correlation) = match admit_correlated(&state, &headers, client, media) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(operation) = operation {
        request = request.operation_name(operation);
    }
    if let Some(raw) = params.get("variables") {
        match serde_json::from_str(raw) {
            Ok(vars) => request = request.variables(async_graphql::Variables::from_json(vars)),
            Err(_) => {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    media,
                    "variables must be a JSON object",
                );
            }
        }
    }
    execute(&state, caller, correlation, request, media).await
}

/// Why a request was turned away before it was read.
enum Refusal {
    /// Over the caller's rate; try again after this long.
    RateLimited(Duration),
    /// A token that does not verify.
    Unauthenticated(ApiError),
}

impl Refusal {
    /// 429 with `Retry-After`, or 401 with a `WWW-Authenticate` challenge.
    fn response(self, media: MediaType) -> Response {
        let (mut response, name, value) = match self {
            Refusal::RateLimited(wait) => {
                let message = "too many requests; retry after the seconds Retry-After gives";
                let status = StatusCode::TOO_MANY_REQUESTS;
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                let response = graphql_error(status, media, "RATE_LIMITED", message);
                (response, header::RETRY_AFTER, HeaderValue::from(seconds))
            }
            Refusal::Unauthenticated(error) => {
                let status = StatusCode::UNAUTHORIZED;
                let response = graphql_error(status, media, error.code, &error.message);
                (response, header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            }
        };
        response.headers_mut().insert(name, value);
        response
    }
}

/// [`admit`], then the request's correlation id: who calls and under which
/// business transaction, or the response refusing the request.
fn admit_correlated(
    state: &AppState,
    headers: &HeaderMap,
    client: Client,
    media: MediaType,
) -> Result<(Caller, CorrelationId), Box<Response>> {
    let caller =
        admit(state, headers, client).map_err(|refused| Box::new(refused.response(media)))?;
    let correlation = correlation::pick(headers)
        .map_err(|why| Box::new(request_error(StatusCode::BAD_REQUEST, media, &why)))?;
    Ok((caller, correlation))
}

/// The caller its `Authorization` header names, if it may go on: a
/// header that does not verify is refused (401) whatever the operation,
/// and a caller over its rate (by `sub`, else by address; checked first,
/// so failed tokens count too) is refused (429).
fn admit(state: &AppState, headers: &HeaderMap, client: Client) -> Result<Caller, Refusal> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let authenticated = state.services.authenticate(authorization);
    if let Some(limiter) = &state.limiter {
        let key = match &authenticated {
            Ok(Caller { sub: Some(sub), .. }) => CallerKey::Subject(sub.clone()),
            _ => CallerKey::Address(client.map_or([0, 0, 0, 0].into(), |c| c.0.0.ip())),
        };
        limiter.check(key).map_err(Refusal::RateLimited)?;
    }
    authenticated.map_err(|e| Refusal::Unauthenticated(e.into()))
}

/// Runs `request` as `caller`, its mutations correlated by `correlation`
/// (echoed in the response's `X-Correlation-Id`).
async fn execute(
    state: &AppState,
    caller: Caller,
    correlation: CorrelationId,
    mut request: async_graphql::Request,
    media: MediaType,
) -> Response {
    let echo = HeaderValue::from_str(correlation.as_str()).ok();
    let span = crate::graphql::operation_span(&mut request);
    let request = as_caller(&state.services, request.data(correlation), caller);
    let response = state.schema.execute(request).instrument(span).await;
    // Under application/graphql-response+json a request that never reached
    // execution (parse or validation failure: no data, errors without path)
    // is a 400; application/json keeps 200 for every well-formed request.
    let request_failed = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = if media == MediaType::GraphqlResponse && request_failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = match serde_json::to_string(&response) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "response not serializable");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = (status, [(header::CONTENT_TYPE, media.as_str())], body).into_response();
    if let Some(id) = echo {
        response.headers_mut().insert(correlation::HEADER, id);
    }
    response
}

/// `request` as `caller` runs it. Requests over HTTP and over WebSocket
/// both pass here, so both obey the same checks: the resolvers see this
/// caller, and introspection, which shows internals, is for staff only
/// when authentication is on.
fn as_caller(
    services: &Services,
    request: async_graphql::Request,
    caller: Caller,
) -> async_graphql::Request {
    let request = if services.access.is_enforced() && !caller.is_staff() {
        request.disable_introspection()
    } else {
        request
    };
    request.data(caller)
}
