//! Command-line reports.

use std::io::Write as _;
use std::sync::Arc;

use crate::app::{self, Config};
use crate::es::projector::Projection;
use crate::infra::projection_runtime::Applier;
use crate::service::Services;

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
    let services = built.services;
    let projection = find(name, &services)?;
    let applier = Applier {
        read_db: services.read_db.clone(),
        projection,
        changes: services.changes.clone(),
        monitor: services.monitor.clone(),
        settings: Default::default(),
    };
    let (applied, failed) = applier.retry_parked(services.store.as_ref()).await?;
    println!("{name}: {applied} parked event(s) applied, {failed} still failing");
    let _ = built.shutdown.send(true);
    if failed > 0 {
        anyhow::bail!("{failed} event(s) still failing");
    }
    Ok(())
}

fn find(name: &str, services: &Services) -> anyhow::Result<Arc<dyn Projection>> {
    let upcasters = Arc::new(crate::domain::upcasters());
    let all = app::projections(upcasters, services.commands.clone());
    let names: Vec<_> = all.iter().map(|p| p.name()).collect();
    all.into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| anyhow::anyhow!("no projection named {name:?}; known: {}", names.join(", ")))
}

/// Rebuilds one projection from the event store, with a progress bar.
pub async fn rebuild(config: Config, name: &str) -> anyhow::Result<()> {
    let built = app::build(&config).await?;
    let services = built.services;
    let projection = find(name, &services)?;
    // The replay reads the log on connections of its own: on SQLite the
    // in-place rebuild holds the application's only connection meanwhile.
    let log_db = crate::infra::db::connect(&config.database_url, 2).await?;
    let rebuild = crate::infra::rebuild::Rebuild {
        store: Arc::new(crate::infra::event_store::SeaEventStore::new(log_db)),
        read_url: config.read_database_url.clone().unwrap_or(config.database_url.clone()),
        read_db: services.read_db.clone(),
        checkpoint_keys: services.read_your_writes.keys(name),
        projection,
        batch_size: 1000,
    };
    let started = std::time::Instant::now();
    let report = rebuild
        .run(|done, total| {
            let width = 30;
            let filled = (done * width / total.max(1)) as usize;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\r[{}{}] {done}/{total} events  {rate:.0} events/s",
                "#".repeat(filled),
                ".".repeat(width as usize - filled.min(width as usize))
            );
            let _ = std::io::stderr().flush();
        })
        .await?;
    eprintln!();
    println!(
        "rebuilt {name}: {} events in {:.2} s ({:.0} events/s), at position {}",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.position
    );
    let _ = built.shutdown.send(true);
    Ok(())
}
