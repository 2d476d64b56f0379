//! `GET /metrics`: Prometheus text exposition of what an operator watches:
//! each projection's checkpoint, lag and parked events, and the requests
//! waiting for `minPosition`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::service::ProjectionReport;

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state).await {
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

async fn render(state: &AppState) -> anyhow::Result<String> {
    let reports = state.services.projection_reports().await?;
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
    let waits = state.services.wait_stats();
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
