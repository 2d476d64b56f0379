//! The `eventfold` binary: serve, migrate, inspect projections, export the schema.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use eventfold::app::{self, Config};

/// mimalloc instead of glibc's malloc: under load the server spent about a
/// fifth of its CPU in malloc and free (`perf`, 16 clients), most of it
/// in glibc's arena bookkeeping across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "eventfold", version, about = "A CQRS/event-sourcing GraphQL backend")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the projectors (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Inspect projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Mint a bearer token from AUTH_JWT_SECRET (development and tests).
    Token {
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The subject; a customer's is its customer id.
        #[arg(long)]
        sub: Option<String>,
        /// How long the token lives: e.g. 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = eventfold::cli::parse_ttl)]
        ttl: std::time::Duration,
    },
    /// Write the served GraphQL schema (SDL).
    ExportSchema {
        #[arg(long, default_value = "schema.graphql")]
        output: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TokenRole {
    Admin,
    Clerk,
    Customer,
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
    let Cli { config, command } = Cli::parse();
    let command = command.unwrap_or(Command::Serve);
    let traces = app::telemetry::init(config.log_format, matches!(command, Command::Serve))?;
    match command {
        Command::Serve => {
            let served = serve(config).await;
            if let Some(traces) = traces {
                traces.shutdown().await;
            }
            served
        }
        Command::Migrate => {
            let db = eventfold::infra::db::connect(&config.database_url, 2).await?;
            eventfold::infra::db::migrate(&db).await?;
            if let Some(url) = &config.read_database_url {
                eventfold::infra::db::migrate(&eventfold::infra::db::connect(url, 2).await?)
                    .await?;
            }
            println!("migrations applied");
            Ok(())
        }
        Command::Projections { command: ProjectionsCommand::Status } => {
            eventfold::cli::print_status(config).await
        }
        Command::Projections { command: ProjectionsCommand::Rebuild { name } } => {
            eventfold::cli::rebuild(config, &name).await
        }
        Command::Projections { command: ProjectionsCommand::Retry { name } } => {
            eventfold::cli::retry_dead_letters(config, &name).await
        }
        Command::Token { role, sub, ttl } => {
            let role = match role {
                TokenRole::Admin => "admin",
                TokenRole::Clerk => "clerk",
                TokenRole::Customer => "customer",
            };
            println!("{}", eventfold::cli::mint_token(&config, role, sub, ttl)?);
            Ok(())
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
