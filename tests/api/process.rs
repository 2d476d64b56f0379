//! Real child processes: `eventfold` servers to kill with SIGKILL, and
//! private `redis-server`s to pause, kill and restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventfold::infra::redis::RedisSettings;

pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts `eventfold serve --role ROLE` on the given database and Redis prefix.
    pub(crate) fn start(database_url: &str, redis: &RedisSettings, role: &str) -> Server {
        Server::start_with(database_url, redis, role, &[])
    }

    /// [`Server::start`] with more environment variables (set after the
    /// defaults, so they may override them).
    pub(crate) fn start_with(
        database_url: &str,
        redis: &RedisSettings,
        role: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::temp_dir()
            .join(format!("eventfold-{role}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_eventfold"))
            .args(["serve", "--role", role, "--listen", &addr.to_string()])
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", &redis.url)
            .env("REDIS_PREFIX", &redis.prefix)
            .env("PARTITIONS", redis.partitions.to_string())
            .env("LEASE_TTL_MS", "1500")
            .env("RUST_LOG", "info,sqlx=warn")
            // Traces only where a test asks for them.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("eventfold binary starts");
        Server { child, addr, log }
    }

    /// Waits until the HTTP API answers (roles all and api).
    pub(crate) async fn ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("http://{}/health/ready", self.addr);
        for _ in 0..200 {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "server did not become ready; log: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `name` (`-STOP`, `-CONT`, …) to the process.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.pid().to_string()]).status();
        assert!(status.unwrap().success(), "kill {name} {}", self.pid());
    }

    /// SIGTERM, without waiting.
    pub(crate) fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM sent");
    }

    /// Waits up to `limit` for the process to exit: its status, or `None`
    /// when it still runs.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and the exit status, which must come within `limit`.
    pub(crate) async fn terminate_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.sigterm();
        match self.wait_exit(limit).await {
            Some(status) => status,
            None => panic!("still running {limit:?} after SIGTERM:\n{}", self.log_text()),
        }
    }

    /// What it has logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hook runs.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A `redis-server` of the test's own on a free loopback port, to pause,
/// kill and start again (killed on drop).
pub(crate) struct PrivateRedis {
    child: Child,
    port: u16,
    pub(crate) url: String,
}

impl PrivateRedis {
    /// Starts it and waits until it answers.
    pub(crate) async fn start() -> PrivateRedis {
        let port = free_port();
        let mut redis = PrivateRedis {
            child: spawn_redis(port),
            port,
            url: format!("redis://127.0.0.1:{port}"),
        };
        redis.answering().await;
        redis
    }

    async fn answering(&mut self) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let up = crate::helpers::eventually(Duration::from_secs(10), || async {
            client.get_multiplexed_async_connection().await.is_ok()
        })
        .await;
        assert!(up, "redis-server answers on port {}", self.port);
    }

    /// SIGKILL: its data (no persistence) is lost.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh, empty server on the same port.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        self.child = spawn_redis(self.port);
        self.answering().await;
    }

    /// SIGSTOP: connections stay open and nothing answers.
    pub(crate) fn pause(&self) {
        assert!(self.signal("-STOP"), "redis-server stopped");
    }

    /// SIGCONT after [`PrivateRedis::pause`].
    pub(crate) fn resume(&self) {
        assert!(self.signal("-CONT"), "redis-server resumed");
    }

    fn signal(&self, signal: &str) -> bool {
        let sent = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
        sent.is_ok_and(|s| s.success())
    }
}

fn spawn_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test installs it)")
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // A stopped process only dies once continued.
        self.signal("-CONT");
        self.kill();
    }
}
