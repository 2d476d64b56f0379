//! The one settings type. Every setting is declared once, with its flag, its
//! environment variable and its named default in [`defaults`]; the command
//! line parses it, and [`Config::embedded`] is the same declaration read
//! with no flags and no environment (what tests start from).

use std::time::Duration;

use clap::{Args, FromArgMatches};

use crate::http::{HttpSettings, parse_origin};
use crate::infra::redis::RedisSettings;

/// The default of every setting.
pub mod defaults {
    /// The embedded default: an SQLite file next to where the server runs.
    pub const DATABASE_URL: &str = "sqlite://eventfold.db?mode=rwc";
    pub const LISTEN_ADDR: &str = "127.0.0.1:8000";
    pub const REDIS_PREFIX: &str = "eventfold";
    /// Partition streams of a new deployment (an existing one keeps the
    /// count recorded at its first start).
    pub const PARTITIONS: u32 = 2;
    /// The partition count of deployments from before the count was
    /// recorded, unless they set another.
    pub const PARTITIONS_BEFORE_RECORDING: u32 = 4;
    pub const LEASE_TTL_MS: u64 = 5_000;
    pub const SNAPSHOT_EVERY: i64 = crate::es::command::DEFAULT_SNAPSHOT_EVERY;
    pub const MIN_POSITION_TIMEOUT_MS: u64 = 5_000;
    pub const INVOICE_BASE_URL: &str = "http://127.0.0.1:8000";
    pub const DATABASE_POOL_SIZE: u32 = 16;
    /// Largest request body (1 MiB).
    pub const MAX_BODY_BYTES: usize = 1_048_576;
    /// Longest a request may take, from its first byte to its response.
    pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
    /// Most root fields (aliases included) of one GraphQL operation.
    pub const GRAPHQL_MAX_ROOT_FIELDS: usize = 50;
    /// Sustained requests per second of one caller, when authentication is
    /// on and `RATE_LIMIT_PER_SECOND` is not set (open mode: no limit).
    pub const RATE_LIMIT_PER_SECOND: u32 = 100;
    /// Requests one caller may send at once above the sustained rate, when
    /// authentication is on and `RATE_LIMIT_BURST` is not set.
    pub const RATE_LIMIT_BURST: u32 = 200;
    pub const WS_MAX_SUBSCRIPTIONS: u32 = 100;
    /// None listed: only the server's own origin (any origin in open mode).
    pub const ALLOWED_ORIGINS: &[&str] = &[];
    /// After SIGTERM/SIGINT, how long requests in flight may take to
    /// finish before their connections are cut.
    pub const SHUTDOWN_TIMEOUT_MS: u64 = 10_000;
    /// Human-readable log lines.
    pub const LOG_FORMAT: super::LogFormat = super::LogFormat::Text;
}

/// How log lines are written (to standard output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which parts of the system this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// API, relay and projectors in one process.
    All,
    /// Only the GraphQL/HTTP API.
    Api,
    /// Only the projectors.
    Projector,
    /// Only the relay from the events table to Redis Streams.
    Relay,
}

/// An explicit authentication choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// No authentication, even on a public address: every caller is admin.
    None,
}

/// Everything a process can be told, by flag or environment.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Event store (and, unless READ_DATABASE_URL is set, read store).
    #[arg(long, env = "DATABASE_URL", default_value = defaults::DATABASE_URL, global = true)]
    pub database_url: String,
    /// Optional separate database for the read tables.
    #[arg(long, env = "READ_DATABASE_URL", global = true)]
    pub read_database_url: Option<String>,
    /// Connections per database pool (SQLite always uses one).
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = defaults::DATABASE_POOL_SIZE,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub pool_size: u32,
    /// Redis for the event transport; without it, the in-process transport.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// A PEM root certificate to trust for `rediss://` (private CAs).
    #[arg(long, env = "REDIS_CA_FILE", global = true)]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every Redis key and channel.
    #[arg(long, env = "REDIS_PREFIX", default_value = defaults::REDIS_PREFIX, global = true)]
    pub redis_prefix: String,
    /// Number of partition streams: fixed when a deployment first starts
    /// with Redis (the default for a new one is `defaults::PARTITIONS`);
    /// another count is refused at start.
    #[arg(long, env = "PARTITIONS", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub partitions: Option<u32>,
    /// How long the relay lease and each partition lease live without
    /// renewal, in milliseconds.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = defaults::LEASE_TTL_MS,
          value_parser = clap::value_parser!(u64).range(500..), global = true)]
    pub lease_ttl_ms: u64,
    /// The HTTP address the API listens on.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = defaults::LISTEN_ADDR, global = true)]
    pub listen: String,
    /// Which parts this process runs.
    #[arg(long, value_enum, default_value_t = Role::All, global = true)]
    pub role: Role,
    /// Snapshot every N events per stream (0: never).
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = defaults::SNAPSHOT_EVERY,
          value_parser = clap::value_parser!(i64).range(0..), global = true)]
    pub snapshot_every: i64,
    /// Longest a query waits for `minPosition`, in milliseconds.
    #[arg(long, env = "MIN_POSITION_TIMEOUT_MS", default_value_t = defaults::MIN_POSITION_TIMEOUT_MS, global = true)]
    pub min_position_timeout_ms: u64,
    /// HS256 secret of bearer tokens (at least 32 bytes).
    #[arg(long, env = "AUTH_JWT_SECRET", global = true, hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,
    /// PEM public key (RSA or EC) of bearer tokens, instead of a secret.
    #[arg(long, env = "AUTH_JWT_PUBLIC_KEY_FILE", global = true)]
    pub auth_jwt_public_key_file: Option<std::path::PathBuf>,
    /// Required `iss` of bearer tokens.
    #[arg(long, env = "AUTH_JWT_ISSUER", global = true)]
    pub auth_jwt_issuer: Option<String>,
    /// Required `aud` of bearer tokens.
    #[arg(long, env = "AUTH_JWT_AUDIENCE", global = true)]
    pub auth_jwt_audience: Option<String>,
    /// `none` allows running without authentication on a non-loopback
    /// address (every caller is then an admin).
    #[arg(long, env = "AUTH_MODE", value_enum, global = true)]
    pub auth_mode: Option<AuthMode>,
    /// Base URL of invoice documents (`{base}/invoices/{id}.pdf`).
    #[arg(long, env = "INVOICE_BASE_URL", default_value = defaults::INVOICE_BASE_URL, global = true)]
    pub invoice_base_url: String,
    /// Largest request body in bytes; a larger one is refused with 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES, global = true)]
    pub max_body_bytes: usize,
    /// Longest a request may take, headers included, in milliseconds; a
    /// client that has not sent its headers by then is disconnected.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = defaults::REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(100..), global = true)]
    pub request_timeout_ms: u64,
    /// Most root fields (aliases included) of one GraphQL operation.
    #[arg(long, env = "GRAPHQL_MAX_ROOT_FIELDS", default_value_t = defaults::GRAPHQL_MAX_ROOT_FIELDS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), global = true)]
    pub graphql_max_root_fields: usize,
    /// Sustained requests per second of one caller (its token's `sub`, else
    /// its address); 0 turns the limit off. Unset: 100 with authentication,
    /// off in open mode.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", global = true)]
    pub rate_limit_per_second: Option<u32>,
    /// Requests one caller may send at once beyond the sustained rate.
    /// Unset: 200 (twice the default rate) when the limit is on.
    #[arg(long, env = "RATE_LIMIT_BURST", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_burst: Option<u32>,
    /// A separate address serving `/metrics` without authentication (keep it
    /// internal: loopback or a private network). Unset: no such listener.
    #[arg(long, env = "METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// Most subscriptions (operations in flight) one WebSocket may hold.
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS", default_value_t = defaults::WS_MAX_SUBSCRIPTIONS,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub ws_max_subscriptions: u32,
    /// Browser origins (`scheme://host[:port]`, comma-separated) besides
    /// the server's own that may open WebSockets and read responses (CORS).
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origin, global = true)]
    pub allowed_origins: Vec<String>,
    /// After SIGTERM or SIGINT, how long requests in flight may take to
    /// finish, in milliseconds; then their connections are cut and the
    /// process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = defaults::SHUTDOWN_TIMEOUT_MS, global = true)]
    pub shutdown_timeout_ms: u64,
    /// `text` (human-readable) or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = defaults::LOG_FORMAT, global = true)]
    pub log_format: LogFormat,
}

impl Config {
    /// Every setting at its default, whatever the environment says: the
    /// embedded SQLite file and the in-process transport.
    pub fn embedded() -> Self {
        let matches = without_env().get_matches_from(["eventfold"]);
        // The defaults are constants of this file; parsing them cannot fail
        // unless this file is wrong, which the tests below catch.
        Config::from_arg_matches(&matches).expect("the declared defaults parse")
    }

    /// The Redis transport, if `REDIS_URL` is set.
    pub fn redis(&self) -> Option<RedisSettings> {
        self.redis_url.as_ref().map(|url| RedisSettings {
            url: url.clone(),
            prefix: self.redis_prefix.clone(),
            // Until `app::build` reads the deployment's recorded count.
            partitions: self.partitions.unwrap_or(defaults::PARTITIONS),
            ca_file: self.redis_ca_file.clone(),
        })
    }

    /// Selects the Redis transport `settings` describe.
    pub fn use_redis(&mut self, settings: RedisSettings) {
        self.redis_url = Some(settings.url);
        self.redis_prefix = settings.prefix;
        self.partitions = Some(settings.partitions);
        self.redis_ca_file = settings.ca_file;
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    pub fn min_position_timeout(&self) -> Duration {
        Duration::from_millis(self.min_position_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The per-caller rate limit as (per second, burst), or `None` when off:
    /// explicitly (`RATE_LIMIT_PER_SECOND=0`), or by default in open mode.
    pub fn rate_limit(&self, authenticated: bool) -> Option<(u32, u32)> {
        let per_second = match self.rate_limit_per_second {
            Some(0) => return None,
            Some(n) => n,
            None if authenticated || self.rate_limit_burst.is_some() => {
                defaults::RATE_LIMIT_PER_SECOND
            }
            None => return None,
        };
        let burst = self.rate_limit_burst.unwrap_or(match self.rate_limit_per_second {
            Some(_) => per_second.saturating_mul(2),
            None => defaults::RATE_LIMIT_BURST,
        });
        Some((per_second, burst))
    }

    /// What the HTTP layer enforces (`authenticated`: whether tokens are
    /// required, which turns the default rate limit on).
    pub fn http(&self, authenticated: bool) -> HttpSettings {
        HttpSettings {
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout(),
            max_root_fields: self.graphql_max_root_fields,
            rate_limit: self.rate_limit(authenticated),
            ws_max_subscriptions: self.ws_max_subscriptions as usize,
            allowed_origins: self.allowed_origins.clone(),
        }
    }
}

/// One `ALLOWED_ORIGINS` entry, refused at start unless it is an origin.
fn origin(value: &str) -> Result<String, String> {
    parse_origin(value).ok_or_else(|| {
        format!("{value:?} is not an origin like https://shop.example or http://localhost:3000")
    })
}

/// The settings as a command that ignores the environment.
fn without_env() -> clap::Command {
    Config::augment_args(clap::Command::new("eventfold"))
        .mut_args(|arg| arg.env(None::<&'static str>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_config_is_every_named_default() {
        let c = Config::embedded();
        assert_eq!(c.database_url, defaults::DATABASE_URL);
        assert_eq!(c.read_database_url, None);
        assert!(c.redis().is_none());
        assert_eq!(c.redis_prefix, defaults::REDIS_PREFIX);
        assert_eq!(c.partitions, None, "the deployment's recorded count, or the default");
        assert_eq!(c.lease_ttl(), Duration::from_millis(defaults::LEASE_TTL_MS));
        assert_eq!(c.listen, defaults::LISTEN_ADDR);
        assert_eq!(c.role, Role::All);
        assert_eq!(c.snapshot_every, defaults::SNAPSHOT_EVERY);
        assert_eq!(c.min_position_timeout_ms, defaults::MIN_POSITION_TIMEOUT_MS);
        assert_eq!(c.invoice_base_url, defaults::INVOICE_BASE_URL);
        assert_eq!(c.pool_size, defaults::DATABASE_POOL_SIZE);
        assert_eq!(c.max_body_bytes, defaults::MAX_BODY_BYTES);
        assert_eq!(c.request_timeout(), Duration::from_millis(defaults::REQUEST_TIMEOUT_MS));
        assert_eq!(c.graphql_max_root_fields, defaults::GRAPHQL_MAX_ROOT_FIELDS);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.ws_max_subscriptions, defaults::WS_MAX_SUBSCRIPTIONS);
        assert_eq!(c.allowed_origins, defaults::ALLOWED_ORIGINS);
        assert_eq!(c.shutdown_timeout(), Duration::from_millis(defaults::SHUTDOWN_TIMEOUT_MS));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn allowed_origins_are_a_comma_separated_list_of_origins() {
        let parse = |value: &str| {
            without_env()
                .try_get_matches_from(["eventfold", "--allowed-origins", value])
                .map(|m| Config::from_arg_matches(&m).unwrap().allowed_origins)
        };
        assert_eq!(
            parse("https://Shop.example/,http://localhost:3000").unwrap(),
            ["https://shop.example", "http://localhost:3000"]
        );
        for bad in ["shop.example", "https://shop.example/path", "ftp://shop.example", "*"] {
            assert!(parse(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn the_rate_limit_is_on_with_authentication_and_off_in_open_mode_unless_set() {
        let mut c = Config::embedded();
        let on = (defaults::RATE_LIMIT_PER_SECOND, defaults::RATE_LIMIT_BURST);
        assert_eq!(c.rate_limit(false), None);
        assert_eq!(c.rate_limit(true), Some(on));
        c.rate_limit_per_second = Some(5);
        assert_eq!(c.rate_limit(false), Some((5, 10)));
        c.rate_limit_burst = Some(7);
        assert_eq!(c.rate_limit(true), Some((5, 7)));
        c.rate_limit_per_second = Some(0);
        assert_eq!(c.rate_limit(true), None);
    }

    #[test]
    fn a_lease_shorter_than_half_a_second_is_refused() {
        let command = without_env();
        assert!(
            command.clone().try_get_matches_from(["eventfold", "--lease-ttl-ms", "499"]).is_err()
        );
        let matches =
            command.try_get_matches_from(["eventfold", "--lease-ttl-ms", "1500"]).unwrap();
        assert_eq!(
            Config::from_arg_matches(&matches).unwrap().lease_ttl(),
            Duration::from_millis(1500)
        );
    }
}
