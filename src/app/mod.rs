//! Startup wiring: the only place that knows every layer. It connects and
//! migrates the databases, assembles the services, and starts the HTTP
//! server, the relay and the projection runners with a shutdown signal.
//! The relay and the runners run supervised (see
//! [`crate::infra::supervisor`]): a failure restarts them after a pause
//! and shows in readiness; only the HTTP server ending, or the shutdown
//! signal, ends the process.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::es::changes::{ChangeBus, LocalChangeBus};
use crate::es::command::{CommandExecutor, CommandSettings};
use crate::es::projector::Projection;
use crate::es::store::EventStore;
use crate::es::upcast::Upcasters;
use crate::infra::db;
use crate::infra::deployment::{PartitionDefaults, partition_count};
use crate::infra::event_feed::{EventFeed, FeedSettings};
use crate::infra::event_store::SeaEventStore;
use crate::infra::jwt::Jwt;
use crate::infra::projection_runtime::{
    Applier, InProcessRunner, PartitionedRunner, ProjectionGroup, ProjectionMonitor,
    RuntimeSettings,
};
use crate::infra::read_your_writes::ReadYourWrites;
use crate::infra::redis::changes::RedisChangeBus;
use crate::infra::redis::progress::RedisProgress;
use crate::infra::redis::relay::Relay;
use crate::infra::redis::{LocalRelay, RedisPing, RedisSettings};
use crate::infra::supervisor::{Supervisor, TaskBoard};
use crate::service::{Access, HealthProbes, RebuildSource, Services};

mod config;
pub mod log_json;
mod running;
pub mod telemetry;
pub mod tracing_otel;

pub use config::{AuthMode, Config, LogFormat, Role, defaults};
pub use running::{Ended, RunningApp};

/// Every projection of the application, in the order they are started: the
/// read models, then the process managers (which execute with `commands`).
pub fn projections(
    upcasters: Arc<Upcasters>,
    commands: Arc<CommandExecutor>,
) -> Vec<Arc<dyn Projection>> {
    let mut all = crate::read_models::all(upcasters.clone());
    all.extend(crate::processes::all(upcasters, commands));
    all
}

/// The assembled application before any task runs.
pub struct Built {
    pub services: Arc<Services>,
    pub write_db: DatabaseConnection,
    /// Changes after every commit made in this process.
    pub commits: watch::Receiver<u64>,
    pub shutdown: watch::Sender<bool>,
    /// The Redis transport, with the deployment's partition count.
    pub redis: Option<RedisSettings>,
}

fn executor(
    config: &Config,
    store: Arc<dyn EventStore>,
    upcasters: Arc<Upcasters>,
) -> Arc<CommandExecutor> {
    let settings = CommandSettings { snapshot_every: config.snapshot_every, ..Default::default() };
    Arc::new(CommandExecutor::new(store, upcasters, settings))
}

/// How requests are authenticated, from the `AUTH_*` settings.
pub fn access(config: &Config) -> anyhow::Result<Access> {
    let (issuer, audience) = (config.auth_jwt_issuer.clone(), config.auth_jwt_audience.clone());
    let jwt = match (&config.auth_jwt_secret, &config.auth_jwt_public_key_file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("set AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY_FILE, not both")
        }
        (Some(secret), None) => Jwt::from_secret(secret, issuer, audience)?,
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("Failed to read {}", path.display()))?;
            Jwt::from_public_key_pem(&pem, issuer, audience)?
        }
        (None, None) => return Ok(Access::Open),
    };
    if config.auth_mode == Some(AuthMode::None) {
        anyhow::bail!("AUTH_MODE=none contradicts the configured AUTH_JWT_* key");
    }
    Ok(Access::Jwt(Arc::new(jwt)))
}

/// Open mode (no authentication) serves only loopback addresses, unless
/// `AUTH_MODE=none` says otherwise. Checked before anything is bound.
async fn check_open_mode(config: &Config, access: &Access) -> anyhow::Result<()> {
    if access.is_enforced() {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&config.listen)
        .await
        .with_context(|| format!("Failed to resolve {}", config.listen))?
        .collect();
    let public = addrs.iter().any(|a| !a.ip().is_loopback());
    if public && config.auth_mode != Some(AuthMode::None) {
        anyhow::bail!(
            "refusing to serve without authentication on {}: set AUTH_JWT_SECRET (or \
             AUTH_JWT_PUBLIC_KEY_FILE), or AUTH_MODE=none to let every caller act as admin",
            config.listen
        );
    }
    tracing::warn!(listen = %config.listen, "no authentication configured: every caller is an admin");
    Ok(())
}

/// Loopback, or a private network (IPv4 RFC 1918 / link-local, IPv6
/// unique-local): where an unauthenticated `/metrics` belongs.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Connects, migrates and assembles the services (no task is started).
pub async fn build(config: &Config) -> anyhow::Result<Built> {
    crate::infra::metrics::install();
    let access = access(config)?;
    let write_db = db::connect(&config.database_url, config.pool_size).await?;
    db::migrate(&write_db).await?;
    let read_db = match &config.read_database_url {
        Some(url) => {
            let read = db::connect(url, config.pool_size).await?;
            db::migrate(&read).await?;
            read
        }
        None => write_db.clone(),
    };
    let (shutdown, _) = watch::channel(false);
    let sea_store = Arc::new(SeaEventStore::new(write_db.clone()));
    let commits = sea_store.commits();
    let upcasters = Arc::new(crate::domain::upcasters());
    let monitor = Arc::new(ProjectionMonitor::default());
    let mut redis = config.redis();
    if let Some(redis) = redis.as_mut() {
        let fallback = PartitionDefaults {
            new: defaults::PARTITIONS,
            before_recording: defaults::PARTITIONS_BEFORE_RECORDING,
        };
        redis.partitions = partition_count(&write_db, config.partitions, fallback).await?;
    }
    let changes: Arc<dyn ChangeBus> = match &redis {
        Some(redis) => {
            let client = redis.client()?;
            RedisChangeBus::start(client, redis.changes_channel(), shutdown.subscribe())
        }
        None => Arc::new(LocalChangeBus::new(1024)),
    };
    let health = HealthProbes {
        event_store: sea_store.clone(),
        redis: redis.as_ref().map(RedisPing::new).transpose()?,
        tasks: Arc::new(TaskBoard::default()),
        draining: shutdown.subscribe(),
        sessions: Arc::default(),
    };
    let store: Arc<dyn EventStore> = sea_store;
    let commands = executor(config, store.clone(), upcasters.clone());
    let projections = projections(upcasters, commands.clone());
    // Progress reaches this process's board by announcement when projectors
    // run here or Redis carries theirs; otherwise only by reading it.
    let announced = redis.is_some() || matches!(config.role, Role::All | Role::Projector);
    let services = Arc::new(Services {
        commands,
        store,
        read_db: read_db.clone(),
        changes,
        monitor: monitor.clone(),
        read_your_writes: ReadYourWrites {
            read_db,
            board: monitor.progress.clone(),
            timeout: config.min_position_timeout(),
            redis: redis.clone().map(RedisProgress::new).transpose()?,
            projections: projections.iter().map(|p| p.name()).collect(),
            refresh_every: if announced { REFRESH_ANNOUNCED } else { REFRESH_UNANNOUNCED },
            resync: Arc::new(Notify::new()),
            refreshes: AtomicU64::new(0),
        },
        projections,
        rebuild_source: RebuildSource {
            events_url: config.database_url.clone(),
            read_url: config.read_database_url.clone().unwrap_or(config.database_url.clone()),
        },
        invoice_base_url: config.invoice_base_url.clone(),
        access,
        health,
        feed: Arc::new(EventFeed::new(
            write_db.clone(),
            &config.database_url,
            commits.clone(),
            FeedSettings::default(),
        )),
        rebuilds: Default::default(),
    });
    Ok(Built { services, write_db, commits, shutdown, redis })
}

/// How often waiters' shared refresh reads the checkpoints while anyone
/// waits, where progress is announced (a safety net for lost announcements)…
const REFRESH_ANNOUNCED: Duration = Duration::from_secs(1);
/// …and where it is not (an API process without Redis, its projectors in
/// another process): then it is how waiters learn of progress at all.
const REFRESH_UNANNOUNCED: Duration = Duration::from_millis(25);

/// A name for this process in leases and consumer groups.
fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}-{}-{}", std::process::id(), Uuid::new_v4().simple())
}

/// The executor process managers run their commands with. An SQLite pool
/// has one connection, which the projector's transaction holds while the
/// process manager runs, so there it gets a connection of its own.
async fn process_executor(
    config: &Config,
    services: &Services,
    upcasters: Arc<Upcasters>,
) -> anyhow::Result<Arc<CommandExecutor>> {
    if !config.database_url.starts_with("sqlite:") {
        return Ok(services.commands.clone());
    }
    let own = db::connect(&config.database_url, 1).await?;
    Ok(executor(config, Arc::new(SeaEventStore::new(own)), upcasters))
}

/// Connects, migrates and starts the parts `config.role` asks for.
pub async fn start(config: Config) -> anyhow::Result<RunningApp> {
    let Built { services, write_db, commits, shutdown, redis } = build(&config).await?;
    let supervisor = Supervisor::new(services.health.tasks.clone(), shutdown.subscribe());
    let mut app = RunningApp::new(services.clone(), shutdown.clone(), config.shutdown_timeout());
    let runs = |role: Role| config.role == Role::All || config.role == role;
    if config.role == Role::Relay && redis.is_none() {
        anyhow::bail!("--role relay needs REDIS_URL: without Redis there is nothing to relay to");
    }
    let worker = worker_id();
    // The relay of this process tells its consumers what it has committed.
    let local_relay = LocalRelay::default();
    if let Some(redis) = &redis {
        let rw = &services.read_your_writes;
        let heard = runs(Role::Api).then(|| rw.resync.clone());
        let stop = shutdown.subscribe();
        crate::infra::redis::progress::share(
            redis,
            rw.board.clone(),
            runs(Role::Projector),
            heard,
            stop,
        )?;
    }
    if runs(Role::Relay)
        && let Some(redis) = &redis
    {
        let relay = Relay {
            store: services.store.clone(),
            write_db: write_db.clone(),
            postgres_url: db::is_postgres(&write_db).then(|| config.database_url.clone()),
            client: redis.client()?,
            settings: redis.clone(),
            owner: worker.clone(),
            lease_ttl: config.lease_ttl(),
            batch_size: 1000,
            max_unread: 100_000,
            health: services.health.tasks.health("relay"),
            local: local_relay.clone(),
        };
        let (commits, stop) = (commits.clone(), shutdown.subscribe());
        app.supervise(&supervisor, "relay".into(), move || {
            relay.clone().run(commits.clone(), stop.clone())
        });
    }
    if runs(Role::Projector) {
        let upcasters = Arc::new(crate::domain::upcasters());
        let commands = process_executor(&config, &services, upcasters.clone()).await?;
        let read_models = crate::read_models::all(upcasters.clone());
        let processes = crate::processes::all(upcasters, commands);
        let applier = |projection: &Arc<dyn Projection>| Applier {
            read_db: services.read_db.clone(),
            projection: projection.clone(),
            changes: services.changes.clone(),
            monitor: services.monitor.clone(),
            settings: RuntimeSettings::default(),
        };
        match &redis {
            Some(redis) => {
                // The read models share the read database: one consumer per
                // partition for all of them. A process manager commands the
                // write side from its projection, so it keeps its own.
                let mut groups = vec![ProjectionGroup::new(
                    crate::read_models::GROUP,
                    read_models.iter().map(applier).collect(),
                )];
                groups.extend(
                    processes.iter().map(|p| ProjectionGroup::new(p.name(), vec![applier(p)])),
                );
                for group in groups {
                    let name = format!("projector {}", group.name);
                    let runner = Arc::new(PartitionedRunner {
                        group,
                        store: services.store.clone(),
                        write_db: write_db.clone(),
                        client: redis.client()?,
                        settings: redis.clone(),
                        worker_id: worker.clone(),
                        lease_ttl: config.lease_ttl(),
                        batch_size: 500,
                        local_relay: local_relay.clone(),
                    });
                    let stop = shutdown.subscribe();
                    app.supervise(&supervisor, name, move || runner.clone().run(stop.clone()));
                }
            }
            None => {
                for projection in read_models.iter().chain(&processes) {
                    let applier = applier(projection);
                    let name = format!("projector {}", projection.name());
                    let (store, commits) = (services.store.clone(), commits.clone());
                    let stop = shutdown.subscribe();
                    app.supervise(&supervisor, name, move || {
                        let runner =
                            InProcessRunner { store: store.clone(), applier: applier.clone() };
                        runner.run(commits.clone(), stop.clone())
                    });
                }
            }
        }
    }
    if runs(Role::Api) {
        check_open_mode(&config, &services.access).await?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("Failed to listen on {}: {e}", config.listen))?;
        app.addr = Some(listener.local_addr()?);
        let settings = config.http(services.access.is_enforced());
        let timeout = settings.request_timeout;
        let router = crate::http::router(services.clone(), settings);
        let (stop, drain) = (shutdown.subscribe(), config.shutdown_timeout());
        app.serve(async move {
            crate::http::serve(listener, router, timeout, drain, stop)
                .await
                .map_err(anyhow::Error::from)
        });
        let (follower, stop) = (services.clone(), shutdown.subscribe());
        app.supervise(&supervisor, "minPosition refresh".into(), move || {
            let (follower, stop) = (follower.clone(), stop.clone());
            async move { follower.read_your_writes.follow(stop).await }
        });
    }
    if let Some(listen) = &config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("Failed to listen on {listen} (METRICS_LISTEN): {e}"))?;
        let bound = listener.local_addr()?;
        if !is_internal(bound.ip()) {
            tracing::warn!(%bound, "METRICS_LISTEN serves /metrics without authentication on a public address");
        }
        app.metrics_addr = Some(bound);
        let router = crate::http::metrics_router(services.clone());
        // It stops last, so readiness says "draining" while the API drains.
        let (stop, drain, timeout) =
            (app.late_stop(), config.shutdown_timeout(), config.request_timeout());
        app.spawn_late("metrics server".into(), async move {
            crate::http::serve(listener, router, timeout, drain, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    Ok(app)
}
