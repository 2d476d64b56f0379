//! Command-line operations: each builds the application without starting
//! it, calls one service and prints what happened.

use std::io::Write as _;
use std::time::Instant;

use crate::app::{self, Config};

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
        "rebuilt {name}: {} events in {:.2} s ({:.0} events/s), at position {}",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.position
    );
    Ok(())
}
