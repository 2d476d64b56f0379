//! Command-line reports.

use crate::app::{self, Config};

/// Prints every projection's checkpoint and lag.
pub async fn print_status(config: Config) -> anyhow::Result<()> {
    let services = app::build(&config).await?.services;
    println!("{:<28} {:>16} {:>10}", "projection", "position", "lag");
    for name in &services.projection_names {
        let checkpoint = services.read_your_writes.checkpoint(name).await?;
        let lag = services.store.count_after(checkpoint, 1_000_000).await?;
        println!("{name:<28} {checkpoint:>16} {lag:>10}");
    }
    Ok(())
}

/// Applies the dead letters of one projection again.
pub async fn retry_dead_letters(config: Config, name: &str) -> anyhow::Result<()> {
    let built = app::build(&config).await?;
    let services = built.services;
    let upcasters = std::sync::Arc::new(crate::domain::upcasters());
    let Some(projection) =
        crate::projections::all(upcasters).into_iter().find(|p| p.name() == name)
    else {
        anyhow::bail!("no projection named {name:?}; see `eventfold projections status`");
    };
    let applier = crate::infra::projector_runtime::Applier {
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
