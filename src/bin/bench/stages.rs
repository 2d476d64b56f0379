//! Where the projection lag goes: the server's own per-event histograms
//! (`/metrics`), scraped before and after the lag run and subtracted, so
//! only that run counts. Each stage is timed from the event's append
//! (`recorded_at`, taken just before its INSERT):
//!
//! - append: one append, queueing for its group and the commit included;
//! - write: one group, from its INSERT (`recorded_at`) to its COMMIT;
//! - relay read: append → the relay reads it (commit, waiting for a
//!   wake-up, and whatever else the relay's read waits for);
//! - received: append → the bank projector reads it from Redis;
//! - applied: append → the projector's transaction committed;
//! - apply batch: one projector transaction (apply + checkpoint + commit).
//!
//! Quantiles come from the buckets (0.5, 1, 2.5, 5, 10, 25, 50, 100 ms …),
//! linearly interpolated, so they are coarse; the means are exact.

use serde_json::{Map, Value, json};

use crate::report::{Row, round3};

/// The projection whose lag the bench measures.
const PROJECTION: &str = "bank_account_summary";

/// (label, metric, whether it carries the projection label)
const STAGES: [(&str, &str, bool); 6] = [
    ("append", "eventfold_append_duration_seconds", false),
    ("write", "eventfold_append_write_duration_seconds", false),
    ("relay_read", "eventfold_relay_read_age_seconds", false),
    ("received", "eventfold_projection_receive_age_seconds", true),
    ("applied", "eventfold_projection_applied_age_seconds", true),
    ("apply_batch", "eventfold_projection_apply_duration_seconds", true),
];

/// A histogram's cumulative buckets (upper bound, count), sum and count.
#[derive(Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn parse(text: &str, name: &str, projection: bool) -> Histogram {
        let mut h = Histogram::default();
        let wanted = format!("projection=\"{PROJECTION}\"");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else { continue };
            let (series, value) = match rest.rsplit_once(' ') {
                Some((s, v)) => (s, v.parse::<f64>().unwrap_or(0.0)),
                None => continue,
            };
            if projection && !series.contains(&wanted) {
                continue;
            }
            if let Some(labels) = series.strip_prefix("_bucket") {
                let le = labels.split("le=\"").nth(1).and_then(|l| l.split('"').next());
                let bound = match le {
                    Some("+Inf") => f64::INFINITY,
                    Some(b) => b.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                h.buckets.push((bound, value));
            } else if series.starts_with("_sum") {
                h.sum = value;
            } else if series.starts_with("_count") {
                h.count = value;
            }
        }
        h
    }

    /// This histogram minus an earlier scrape of it.
    fn since(mut self, before: &Histogram) -> Histogram {
        for (bound, count) in &mut self.buckets {
            let earlier = before.buckets.iter().find(|(b, _)| b == bound).map_or(0.0, |x| x.1);
            *count -= earlier;
        }
        self.sum -= before.sum;
        self.count -= before.count;
        self
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > 0.0 {
                if bound.is_infinite() {
                    return lower.0 * 1000.0;
                }
                let inside = (rank - lower.1) / (cumulative - lower.1).max(1.0);
                return (lower.0 + (bound - lower.0) * inside.clamp(0.0, 1.0)) * 1000.0;
            }
            lower = (bound, cumulative);
        }
        lower.0 * 1000.0
    }

    fn mean_ms(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count * 1000.0 } else { 0.0 }
    }
}

/// The stages of the lag run (between the two scrapes), as rows and JSON.
pub(crate) fn report(before: &str, after: &str, rows: &mut Vec<Row>) -> Value {
    let mut out = Map::new();
    for (label, metric, projection) in STAGES {
        let h = Histogram::parse(after, metric, projection)
            .since(&Histogram::parse(before, metric, projection));
        let (mean, p50, p99) = (h.mean_ms(), h.quantile_ms(0.5), h.quantile_ms(0.99));
        rows.push(Row::plain(
            format!("  lag stage {label}: mean / p50 / p99"),
            format!("{mean:.2} / {p50:.2} / {p99:.2} ms ({} samples)", h.count),
        ));
        out.insert(
            label.into(),
            json!({ "mean_ms": round3(mean), "p50_ms": round3(p50), "p99_ms": round3(p99), "count": h.count }),
        );
    }
    Value::Object(out)
}
