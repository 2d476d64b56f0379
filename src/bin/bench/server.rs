//! The bench's environment: a fresh PostgreSQL database and Redis key prefix,
//! and the real `eventfold` binary started as a child process on them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

use crate::http::Conn;

/// Where the bench creates and drops its database and which Redis it uses.
pub(crate) struct Env {
    pub(crate) admin_url: String,
    pub(crate) db_name: String,
    pub(crate) database_url: String,
    pub(crate) redis_url: String,
    pub(crate) redis_prefix: String,
    pub(crate) eventfold: PathBuf,
}

impl Env {
    /// Reads `BENCH_ADMIN_URL` / `BENCH_REDIS_URL` (defaults: local servers)
    /// and finds the release `eventfold` binary next to this one.
    pub(crate) fn new() -> anyhow::Result<Env> {
        let admin_url = std::env::var("BENCH_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let redis_url =
            std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let exe = std::env::current_exe().context("Failed to find the bench binary")?;
        let eventfold = exe.parent().map(|d| d.join("eventfold")).unwrap_or_default();
        if !eventfold.is_file() {
            bail!(
                "{} not found: build the server first with `cargo build --release` \
                 (the bench starts that binary as a child process)",
                eventfold.display()
            );
        }
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("eventfold_bench_{}", &id[..12]);
        let (base, _) = admin_url.rsplit_once('/').context("admin URL has no database name")?;
        Ok(Env {
            database_url: format!("{base}/{db_name}"),
            admin_url,
            db_name,
            redis_url,
            redis_prefix: format!("efbench-{}", &id[..12]),
            eventfold,
        })
    }

    /// Where the server child writes its output.
    pub(crate) fn server_log(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}.log", self.redis_prefix))
    }

    pub(crate) async fn create_database(&self) -> anyhow::Result<()> {
        let admin = Database::connect(&self.admin_url)
            .await
            .with_context(|| format!("PostgreSQL is not reachable at {}", self.admin_url))?;
        admin.execute_unprepared(&format!("CREATE DATABASE {}", self.db_name)).await?;
        admin.close().await?;
        Ok(())
    }

    /// Drops the database and deletes every key of the prefix (best effort).
    pub(crate) async fn cleanup(&self) {
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name);
            if let Err(e) = admin.execute_unprepared(&sql).await {
                eprintln!("warning: could not drop {}: {e}", self.db_name);
            }
            let _ = admin.close().await;
        }
        if let Err(e) = self.delete_redis_keys().await {
            eprintln!("warning: could not delete Redis keys {}:*: {e:#}", self.redis_prefix);
        }
    }

    async fn delete_redis_keys(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.redis_prefix))
            .query_async(&mut conn)
            .await?;
        for chunk in keys.chunks(100) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// An `eventfold` command with the bench's database and Redis settings.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.eventfold);
        cmd.env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("REDIS_PREFIX", &self.redis_prefix)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }
}

/// The server child process; killed on drop if still running.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
}

impl Server {
    /// Starts `eventfold serve` (all roles) on a free loopback port and
    /// waits, at most 60 s, for `/health/ready`.
    pub(crate) async fn start(env: &Env) -> anyhow::Result<Server> {
        Server::start_with(env, &[]).await
    }

    /// [`Server::start`] with more environment variables.
    pub(crate) async fn start_with(env: &Env, extra: &[(&str, String)]) -> anyhow::Result<Server> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = env.server_log();
        let file = std::fs::File::create(&log)?;
        let child = env
            .command()
            .arg("serve")
            .env("LISTEN_ADDR", addr.to_string())
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("Failed to start {}", env.eventfold.display()))?;
        let mut server = Server { child, addr, log };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("server exited with {status}; log: {}", self.log.display());
            }
            if let Ok(mut conn) = Conn::connect(self.addr).await
                && conn.get("/health/ready").await.is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("server not ready after 60 s; log: {}", self.log.display())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM) of the server so far, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Output and wall time of a finished `eventfold` command.
pub(crate) fn run_to_end(
    mut cmd: Command,
    limit: Duration,
) -> anyhow::Result<(bool, String, Duration)> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || read_all(&mut out));
    let err_reader = std::thread::spawn(move || read_all(&mut err));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let text = format!(
        "{}{}",
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default()
    );
    Ok((status.success(), text, elapsed))
}

fn read_all(pipe: &mut impl std::io::Read) -> String {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
