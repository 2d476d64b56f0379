//! HTTP surface: GraphQL over HTTP (POST and GET, with content negotiation,
//! CORS for the allowed origins), GraphQL over WebSocket ([`ws`]), GraphiQL
//! and health checks.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::graphql::{ApiError, AppSchema};
use crate::service::{Caller, Services};

mod metrics;
mod negotiate;
mod origin;
pub mod ws;

use negotiate::{MediaType, is_mutation, response_media_type};
use origin::Origins;
pub use origin::parse_origin;

/// What the HTTP layer enforces, from the settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest WebSocket message, in bytes (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
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
}

pub fn router(services: Arc<Services>, settings: HttpSettings) -> Router {
    let schema = crate::graphql::schema(services.clone());
    let open_mode = !services.access.is_enforced();
    let origins = Arc::new(Origins::new(settings.allowed_origins.clone(), open_mode));
    let state =
        AppState { schema, services, settings: Arc::new(settings), origins: origins.clone() };
    let graphql =
        Router::new().route("/graphql", get(graphql_get).post(graphql_post)).layer(cors(origins));
    Router::new()
        .route("/", get(graphiql))
        .merge(graphql)
        .route("/graphql/ws", get(ws::upgrade))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
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
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql/ws").finish())
}

/// 200 `{"status":"ready"}`, or 503 `{"status":"unavailable","reasons":[…]}`.
async fn ready(State(state): State<AppState>) -> Response {
    let report = state.services.ready().await;
    let (status, body) = if report.is_ready() {
        (StatusCode::OK, serde_json::json!({ "status": "ready" }))
    } else {
        tracing::warn!(reasons = ?report.reasons, "not ready");
        let body = serde_json::json!({ "status": "unavailable", "reasons": report.reasons });
        (StatusCode::SERVICE_UNAVAILABLE, body)
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A request error outside GraphQL: malformed HTTP, not a GraphQL result.
fn request_error(status: StatusCode, media: MediaType, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": "VALIDATION_ERROR" } }] });
    (status, [(header::CONTENT_TYPE, media.as_str())], body.to_string()).into_response()
}

async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
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
    execute(&state, &headers, request, media).await
}

async fn graphql_get(
    State(state): State<AppState>,
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
    execute(&state, &headers, request, media).await
}

/// Runs `request` as the caller its `Authorization` header names. A header
/// that does not verify is refused with 401 whatever the operation.
async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    media: MediaType,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let caller = match state.services.authenticate(authorization) {
        Ok(caller) => caller,
        Err(e) => {
            let error = ApiError::from(e);
            let body = serde_json::json!({ "errors": [{ "message": error.message, "extensions": { "code": error.code } }] });
            let mut response = (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, media.as_str())],
                body.to_string(),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    let response = state.schema.execute(as_caller(&state.services, request, caller)).await;
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
    (status, [(header::CONTENT_TYPE, media.as_str())], body).into_response()
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
