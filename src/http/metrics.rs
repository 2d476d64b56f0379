//! `GET /metrics`: Prometheus text exposition of what an operator watches:
//! each projection's checkpoint, lag and parked events.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable").into_response()
        }
    }
}

async fn render(state: &AppState) -> anyhow::Result<String> {
    let services = &state.services;
    let mut position = String::from(
        "# HELP eventfold_projection_position Global position of the last event applied.\n# TYPE eventfold_projection_position gauge\n",
    );
    let mut lag = String::from(
        "# HELP eventfold_projection_lag Committed events not yet applied.\n# TYPE eventfold_projection_lag gauge\n",
    );
    let mut parked = String::from(
        "# HELP eventfold_projection_dead_letters Events parked after repeated failures.\n# TYPE eventfold_projection_dead_letters gauge\n",
    );
    let reports = services.projection_reports().await?;
    for r in reports {
        let name = r.name;
        position.push_str(&format!(
            "eventfold_projection_position{{projection=\"{name}\"}} {}\n",
            r.checkpoint.pos
        ));
        lag.push_str(&format!("eventfold_projection_lag{{projection=\"{name}\"}} {}\n", r.lag));
        parked.push_str(&format!(
            "eventfold_projection_dead_letters{{projection=\"{name}\"}} {}\n",
            r.dead_letters.len()
        ));
    }
    Ok(position + &lag + &parked)
}
