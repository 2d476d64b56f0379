//! Command-line operations: each builds the application without starting
//! it, calls one service and prints what happened.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::app::{self, Config};
use crate::service::Access;

/// Prints every projection's checkpoint and lag.
pub async fn print_status(config: Config) -> anyhow::Result<()> {
    let services = app::build(&config).await?.services;
    println!("{:<28} {:>16} {:>10}", "projection", "position", "lag");
    let reports = services.projection_reports().await?;
    for r in reports {
        println!("{:<28} {:>16} {:>10}", r.name, r.checkpoint, r.lag);
    }
    Ok(())
}

/// Applies the dead letters of one projection again.
pub async fn retry_dead_letters(config: Config, name: &str) -> anyhow::Result<()> {
    let built = app::build(&config).await?;
    let report = built.services.retry_dead_letters(name).await;
    let _ = built.shutdown.send(true);
    let report = report?;
    println!(
        "{name}: {} parked event(s) applied, {} still failing, {} waiting behind them",
        report.applied, report.failed, report.waiting
    );
    if report.failed > 0 {
        anyhow::bail!("{} event(s) still failing", report.failed);
    }
    Ok(())
}

/// Rebuilds one projection from the event store, with a progress bar.
pub async fn rebuild(config: Config, name: &str) -> anyhow::Result<()> {
    let built = app::build(&config).await?;
    let started = Instant::now();
    let report = built.services.rebuild_projection(name, |done, total| {
        let width = 30;
        let filled = (done * width / total.max(1)) as usize;
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {done}/{total} events  {rate:.0} events/s",
            "#".repeat(filled),
            ".".repeat(width as usize - filled.min(width as usize))
        );
        let _ = std::io::stderr().flush();
    });
    let report = report.await;
    let _ = built.shutdown.send(true);
    let report = report?;
    eprintln!();
    println!(
        "rebuilt {name}: {} events in {:.2} s ({:.0} events/s; replay {:.2} s, {:.0} events/s), at position {}",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.replay.as_secs_f64(),
        report.replay_events_per_second(),
        report.position
    );
    Ok(())
}

/// A token for `role` (and `sub`) from `AUTH_JWT_SECRET`, valid for `ttl`.
pub fn mint_token(
    config: &Config,
    role: &str,
    sub: Option<String>,
    ttl: Duration,
) -> anyhow::Result<String> {
    if role == "customer" && sub.as_deref().and_then(|s| uuid::Uuid::parse_str(s).ok()).is_none() {
        anyhow::bail!("a customer token needs --sub CUSTOMER_ID (a UUID)");
    }
    let Access::Jwt(jwt) = app::access(config)? else {
        anyhow::bail!("AUTH_JWT_SECRET is not set: there is nothing to sign tokens with");
    };
    jwt.mint(role, sub, ttl).ok_or_else(|| {
        anyhow::anyhow!("tokens can be minted only from AUTH_JWT_SECRET, not from a public key")
    })
}

/// A duration such as `90s`, `30m`, `1h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 1h"))?;
    let seconds = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 {
        return Err("a token must live longer than 0 s".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_people_write_them() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "1y", "-1h", "0s"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
