//! Latency samples, percentiles, and the printed table with targets.

use std::time::Duration;

use serde_json::{Value, json};

/// Latency samples in microseconds.
#[derive(Default)]
pub(crate) struct Latencies(Vec<u32>);

impl Latencies {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    pub(crate) fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q`-quantile (nearest rank) in milliseconds; 0 without samples.
    pub(crate) fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        f64::from(self.0[rank - 1]) / 1000.0
    }

    /// `{"p50_ms", "p99_ms", "samples"}`.
    pub(crate) fn summary(&mut self) -> Value {
        json!({
            "p50_ms": round3(self.quantile_ms(0.50)),
            "p99_ms": round3(self.quantile_ms(0.99)),
            "samples": self.len(),
        })
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One figure of the table, optionally checked against a target.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) target: Option<Target>,
}

/// A target: the bound and whether the figure met it.
pub(crate) struct Target {
    pub(crate) text: String,
    pub(crate) met: bool,
}

impl Row {
    pub(crate) fn plain(name: impl Into<String>, value: impl Into<String>) -> Row {
        Row { name: name.into(), value: value.into(), target: None }
    }

    /// A figure that should be at least `bound`.
    pub(crate) fn at_least(name: &str, value: f64, unit: &str, bound: f64) -> Row {
        Row {
            name: name.into(),
            value: format!("{} {unit}", pretty(value)),
            target: Some(Target {
                text: format!(">= {} {unit}", pretty(bound)),
                met: value >= bound,
            }),
        }
    }

    /// A figure that should be at most `bound`.
    pub(crate) fn at_most(name: &str, value: f64, unit: &str, bound: f64) -> Row {
        Row {
            name: name.into(),
            value: format!("{} {unit}", pretty(value)),
            target: Some(Target {
                text: format!("<= {} {unit}", pretty(bound)),
                met: value <= bound,
            }),
        }
    }
}

/// Numbers as people read them: thousands separated, few decimals.
pub(crate) fn pretty(x: f64) -> String {
    if x.abs() >= 100.0 {
        let n = x.round() as i64;
        let digits = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The rows as an aligned text table (also valid Markdown).
pub(crate) fn table(rows: &[Row]) -> String {
    let w0 = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(6);
    let w1 = rows.iter().map(|r| r.value.len()).max().unwrap_or(0).max(5);
    let w2 = rows
        .iter()
        .map(|r| r.target.as_ref().map_or(0, |t| t.text.len()))
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!("| {:w0$} | {:>w1$} | {:w2$} |        |\n", "figure", "value", "target");
    out += &format!(
        "|{}|{}:|{}|--------|\n",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 1),
        "-".repeat(w2 + 2)
    );
    for row in rows {
        let (target, verdict) = match &row.target {
            Some(t) => (t.text.as_str(), if t.met { "PASS" } else { "MISS" }),
            None => ("", ""),
        };
        out +=
            &format!("| {:w0$} | {:>w1$} | {:w2$} | {verdict:6} |\n", row.name, row.value, target);
    }
    out
}
