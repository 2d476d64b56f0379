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
