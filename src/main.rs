//! The `eventfold` binary: serve, migrate, inspect projections, export the schema.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use eventfold::app::{self, Config, Role};
use eventfold::infra::redis::RedisSettings;

#[derive(Parser)]
#[command(name = "eventfold", version, about = "A CQRS/event-sourcing GraphQL backend")]
struct Cli {
    /// Event store (and, unless READ_DATABASE_URL is set, read store).
    #[arg(long, env = "DATABASE_URL", default_value = app::DEFAULT_DATABASE_URL, global = true)]
    database_url: String,
    /// Optional separate database for the read tables.
    #[arg(long, env = "READ_DATABASE_URL", global = true)]
    read_database_url: Option<String>,
    /// Redis for the event transport; without it, the in-process transport.
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// Prefix of every Redis key and channel.
    #[arg(long, env = "REDIS_PREFIX", default_value = "eventfold", global = true)]
    redis_prefix: String,
    /// Number of partition streams (must be the same for every process).
    #[arg(long, env = "PARTITIONS", default_value_t = 4, global = true)]
    partitions: u32,
    /// How long a partition or relay lease lives without renewal, in ms.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = 5000, global = true)]
    lease_ttl_ms: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    fn config(&self) -> Config {
        Config {
            database_url: self.database_url.clone(),
            read_database_url: self.read_database_url.clone(),
            redis: self.redis_url.as_ref().map(|url| RedisSettings {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
                partitions: self.partitions.max(1),
            }),
            lease_ttl: Duration::from_millis(self.lease_ttl_ms.max(500)),
            ..Config::embedded()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the projectors (the default).
    Serve {
        #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
        listen: String,
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
        /// Snapshot every N events per stream.
        #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 50)]
        snapshot_every: i64,
        /// Longest a query waits for `minPosition`, in milliseconds.
        #[arg(long, env = "MIN_POSITION_TIMEOUT_MS", default_value_t = 5000)]
        min_position_timeout_ms: u64,
        /// Base URL of invoice documents (`{base}/invoices/{id}.pdf`).
        #[arg(long, env = "INVOICE_BASE_URL", default_value = "http://127.0.0.1:8000")]
        invoice_base_url: String,
    },
    /// Apply pending migrations and exit.
    Migrate,
    /// Inspect projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Write the served GraphQL schema (SDL).
    ExportSchema {
        #[arg(long, default_value = "schema.graphql")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Checkpoint and lag of every projection.
    Status,
    /// Apply the dead letters of a projection again (after fixing the cause).
    Retry { name: String },
    /// Replay the event store into fresh tables and swap them in.
    Rebuild { name: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let base = cli.config();
    let command = cli.command.unwrap_or(Command::Serve {
        listen: std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into()),
        role: Role::All,
        snapshot_every: 50,
        min_position_timeout_ms: 5000,
        invoice_base_url: std::env::var("INVOICE_BASE_URL")
            .unwrap_or_else(|_| Config::embedded().invoice_base_url),
    });
    match command {
        Command::Serve {
            listen,
            role,
            snapshot_every,
            min_position_timeout_ms,
            invoice_base_url,
        } => {
            let config = Config {
                listen,
                role,
                snapshot_every,
                min_position_timeout: Duration::from_millis(min_position_timeout_ms),
                invoice_base_url,
                ..base
            };
            serve(config).await
        }
        Command::Migrate => {
            let db = eventfold::infra::db::connect(&base.database_url, 2).await?;
            eventfold::infra::db::migrate(&db).await?;
            if let Some(url) = &base.read_database_url {
                eventfold::infra::db::migrate(&eventfold::infra::db::connect(url, 2).await?)
                    .await?;
            }
            println!("migrations applied");
            Ok(())
        }
        Command::Projections { command: ProjectionsCommand::Status } => {
            eventfold::cli::print_status(base).await
        }
        Command::Projections { command: ProjectionsCommand::Rebuild { name } } => {
            eventfold::cli::rebuild(base, &name).await
        }
        Command::Projections { command: ProjectionsCommand::Retry { name } } => {
            eventfold::cli::retry_dead_letters(base, &name).await
        }
        Command::ExportSchema { output } => {
            std::fs::write(&output, eventfold::graphql::sdl())
                .with_context(|| format!("Failed to write {}", output.display()))?;
            println!("wrote {}", output.display());
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let role = config.role;
    let running = app::start(config).await?;
    match running.addr {
        Some(addr) => tracing::info!(%addr, ?role, "eventfold serving: GraphiQL at http://{addr}/"),
        None => tracing::info!(?role, "eventfold running"),
    }
    let ended = running.run_until(shutdown_signal()).await;
    let mut failed = false;
    for (task, result) in ended {
        match result {
            Ok(()) => tracing::info!(task, "stopped"),
            Err(e) => {
                failed = true;
                tracing::error!(task, error = %format!("{e:#}"), "failed");
            }
        }
    }
    if failed { anyhow::bail!("a task failed") } else { Ok(()) }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
