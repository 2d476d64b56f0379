//! `GET /metrics`: the Prometheus text exposition of what an operator
//! watches (see [`crate::infra::metrics`]): the figures counted as things
//! happen, and the states read at each scrape — each projection's
//! checkpoint, lag and parked events, the requests waiting for
//! `minPosition`, the database pools. With authentication on, only for
//! admins; on `METRICS_LISTEN`, for whoever reaches that address. A scrape
//! whose database reads fail or wait too long still answers, with what the
//! process counts itself, and says so (`eventfold_scrape_states_read`).
//!
//! Also the middleware that counts and times every HTTP request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Unit, counter, describe_counter, describe_gauge, gauge, histogram};

use super::AppState;
use crate::service::{PoolStats, ProjectionReport, ServiceError, Services, WaitStats};

/// `/metrics` on the API's address: an admin's token when authentication
/// is on (401 without a valid one, 403 for other roles).
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let allowed = state.services.authenticate(authorization).and_then(|c| c.require_admin());
    match allowed {
        Ok(()) => exposition(&state.services).await,
        Err(ServiceError::Forbidden(_)) => {
            (StatusCode::FORBIDDEN, "metrics are for admins").into_response()
        }
        Err(_) => {
            let mut refused =
                (StatusCode::UNAUTHORIZED, "metrics need an admin's bearer token").into_response();
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            refused
        }
    }
}

/// `/metrics` on `METRICS_LISTEN`, without authentication.
pub(super) async fn open_metrics(State(services): State<Arc<Services>>) -> Response {
    exposition(&services).await
}

/// How long a scrape waits for the projections' states from the
/// databases before it answers without them: a pool too small for its
/// load is when `eventfold_db_pool_waiting` matters most, and a scrape
/// queued behind that load would show it only once the queue is gone.
const STATES_WAIT: Duration = Duration::from_secs(2);

async fn exposition(services: &Services) -> Response {
    let states = scraped(services).await;
    let body = crate::infra::metrics::render(|| states.record());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// What a scrape reads: the states behind the gauges. `reports` is `None`
/// when the databases did not answer within [`STATES_WAIT`] or failed.
struct Scraped {
    reports: Option<Vec<ProjectionReport>>,
    waits: WaitStats,
    pools: Vec<PoolStats>,
}

async fn scraped(services: &Services) -> Scraped {
    let reports = match tokio::time::timeout(STATES_WAIT, services.projection_reports()).await {
        Ok(Ok(reports)) => Some(reports),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics without the projections' states");
            None
        }
        Err(_) => {
            tracing::warn!(
                waited_secs = STATES_WAIT.as_secs_f64(),
                "metrics without the projections' states: no database answer in time"
            );
            None
        }
    };
    Scraped { reports, waits: services.wait_stats(), pools: services.pool_stats() }
}

impl Scraped {
    /// Sets every state on the current recorder (the scrape's own).
    fn record(&self) {
        describe_gauge!(
            "eventfold_projection_position",
            "Global position of the last event applied."
        );
        describe_gauge!(
            "eventfold_projection_lag",
            "Committed events not yet applied (capped at 10000)."
        );
        describe_gauge!(
            "eventfold_projection_lag_seconds",
            Unit::Seconds,
            "How long the oldest committed event not yet applied has waited."
        );
        describe_gauge!(
            "eventfold_projection_dead_letters",
            "Events parked after repeated failures, or waiting behind one."
        );
        describe_counter!(
            "eventfold_projection_transient_failures_total",
            "Attempts that failed transiently and were retried (projectors of this process)."
        );
        describe_counter!(
            "eventfold_projection_rejected_entries_total",
            "Transport entries ignored as untrustworthy (projectors of this process)."
        );
        describe_gauge!(
            "eventfold_scrape_states_read",
            "1 when this scrape read the projections' states from the databases; 0 when they failed or did not answer within 2 s (those series are then left out)."
        );
        gauge!("eventfold_scrape_states_read").set(if self.reports.is_some() { 1.0 } else { 0.0 });
        for r in self.reports.iter().flatten() {
            let projection = r.name;
            gauge!("eventfold_projection_position", "projection" => projection)
                .set(r.checkpoint.pos as f64);
            gauge!("eventfold_projection_lag", "projection" => projection).set(r.lag as f64);
            gauge!("eventfold_projection_lag_seconds", "projection" => projection)
                .set(r.lag_seconds);
            gauge!("eventfold_projection_dead_letters", "projection" => projection)
                .set(r.dead_letters as f64);
            if let Some(state) = &r.state {
                counter!("eventfold_projection_transient_failures_total", "projection" => projection)
                    .absolute(state.transient_failures);
                counter!("eventfold_projection_rejected_entries_total", "projection" => projection)
                    .absolute(state.rejected_entries);
            }
        }
        describe_gauge!("eventfold_min_position_waiting", "Requests waiting for minPosition now.");
        describe_counter!(
            "eventfold_min_position_refreshes_total",
            "Reads of the stored checkpoints on behalf of all minPosition waiters (this process)."
        );
        gauge!("eventfold_min_position_waiting").set(self.waits.waiting as f64);
        counter!("eventfold_min_position_refreshes_total").absolute(self.waits.refreshes);
        describe_gauge!(
            "eventfold_db_pool_connections",
            "Connections of a database pool, by state: in_use or idle."
        );
        describe_gauge!("eventfold_db_pool_max_connections", "Most connections a pool may open.");
        for pool in &self.pools {
            let name = pool.name;
            gauge!("eventfold_db_pool_connections", "pool" => name, "state" => "in_use")
                .set(pool.in_use() as f64);
            gauge!("eventfold_db_pool_connections", "pool" => name, "state" => "idle")
                .set(pool.idle as f64);
            gauge!("eventfold_db_pool_max_connections", "pool" => name).set(pool.max as f64);
        }
    }
}

/// Counts and times every request of the API's router, by route (the
/// route's pattern, never the raw path), method and status class.
pub(super) async fn count_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match request.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/") => "/",
        Some("/graphql") => "/graphql",
        Some("/graphql/ws") => "/graphql/ws",
        Some("/health/live") => "/health/live",
        Some("/health/ready") => "/health/ready",
        Some("/metrics") => "/metrics",
        Some("/console") => "/console",
        Some("/assets/{name}") => "/assets/{name}",
        Some(_) => "other",
        None => "unmatched",
    };
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let response = next.run(request).await;
    let status = match response.status().as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    let labels = [("route", route), ("method", method), ("status", status)];
    counter!("eventfold_http_requests_total", &labels).increment(1);
    histogram!("eventfold_http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}
