//! `GET /metrics`: Prometheus text exposition of what an operator watches:
//! each projection's checkpoint, lag and parked events, and the requests
//! waiting for `minPosition`. With authentication on, only for admins; on
//! `METRICS_LISTEN`, for whoever reaches that address.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::service::{ProjectionReport, ServiceError, Services};

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

async fn exposition(services: &Services) -> Response {
    match render(services).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable").into_response()
        }
    }
}

/// One metric family: its name, help, type, and the value for a projection
/// (`None`: not known in this process).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&ProjectionReport) -> Option<u64>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "eventfold_projection_position",
        help: "Global position of the last event applied.",
        kind: "gauge",
        value: |r| Some(r.checkpoint.pos as u64),
    },
    Family {
        name: "eventfold_projection_lag",
        help: "Committed events not yet applied.",
        kind: "gauge",
        value: |r| Some(r.lag),
    },
    Family {
        name: "eventfold_projection_dead_letters",
        help: "Events parked after repeated failures, or waiting behind one.",
        kind: "gauge",
        value: |r| Some(r.dead_letters),
    },
    Family {
        name: "eventfold_projection_transient_failures_total",
        help: "Attempts that failed transiently and were retried (this process).",
        kind: "counter",
        value: |r| r.state.as_ref().map(|s| s.transient_failures),
    },
    Family {
        name: "eventfold_projection_rejected_entries_total",
        help: "Transport entries ignored as untrustworthy (this process).",
        kind: "counter",
        value: |r| r.state.as_ref().map(|s| s.rejected_entries),
    },
];

async fn render(services: &Services) -> anyhow::Result<String> {
    let reports = services.projection_reports().await?;
    let mut out = String::new();
    for family in FAMILIES {
        let Family { name, help, kind, value } = family;
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for r in &reports {
            if let Some(v) = value(r) {
                out.push_str(&format!("{name}{{projection=\"{}\"}} {v}\n", r.name));
            }
        }
    }
    let waits = services.wait_stats();
    for (name, help, kind, value) in [
        (
            "eventfold_min_position_waiting",
            "Requests waiting for minPosition now.",
            "gauge",
            waits.waiting as u64,
        ),
        (
            "eventfold_min_position_refreshes_total",
            "Reads of the stored checkpoints on behalf of all minPosition waiters (this process).",
            "counter",
            waits.refreshes,
        ),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    Ok(out)
}
