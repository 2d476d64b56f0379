//! Encrypted connections to the stores: PostgreSQL with `sslmode` (the
//! local server has `ssl=on`), and a password-protected Redis over TLS
//! (`rediss://`) with a private CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventfold::infra::redis::RedisSettings;
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use crate::helpers::*;

/// Whether the session behind `db` is encrypted.
async fn encrypted(db: &sea_orm::DatabaseConnection) -> bool {
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql));
    row.await.unwrap().unwrap().try_get_by_index::<bool>(0).unwrap()
}

fn with_params(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

#[tokio::test]
async fn postgres_urls_choose_encryption_and_verification() {
    let (admin, name) = fresh_postgres().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let admin_db = eventfold::infra::db::connect(&admin, 1).await.unwrap();
    let sql = "SELECT current_setting('ssl_cert_file')";
    let row = admin_db.query_one_raw(Statement::from_string(admin_db.get_database_backend(), sql));
    let server_cert: String = row.await.unwrap().unwrap().try_get_by_index(0).unwrap();

    let plain =
        eventfold::infra::db::connect(&with_params(&url, "sslmode=disable"), 1).await.unwrap();
    assert!(!encrypted(&plain).await);
    let required =
        eventfold::infra::db::connect(&with_params(&url, "sslmode=require"), 1).await.unwrap();
    assert!(encrypted(&required).await, "sslmode=require encrypts");
    let verified = with_params(&url, &format!("sslmode=verify-ca&sslrootcert={server_cert}"));
    let verified = eventfold::infra::db::connect(&verified, 1).await.unwrap();
    assert!(encrypted(&verified).await, "the server's certificate verifies against its CA");
    // A root that did not sign the server's certificate is refused.
    let stranger =
        write_ca(&std::env::temp_dir().join(format!("ef-ca-{}", Uuid::new_v4().simple())));
    let refused =
        with_params(&url, &format!("sslmode=verify-ca&sslrootcert={}", stranger.display()));
    assert!(eventfold::infra::db::connect(&refused, 1).await.is_err(), "an unknown CA is refused");
}

/// Writes a fresh CA (`ca.pem`, `ca.key`) into `dir`; returns the CA file.
fn write_ca(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=eventfold test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    dir.join("ca.pem")
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for `localhost` signed by it.
fn server_certificate(dir: &Path) -> PathBuf {
    let ca = write_ca(dir);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    ca
}

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_password_protected_redis_over_tls_carries_the_events() {
    let dir = std::env::temp_dir().join(format!("ef-tls-{}", Uuid::new_v4().simple()));
    let ca = server_certificate(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = RedisServer(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key"])
            .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
            .args(["--requirepass", "s3cret", "--save", "", "--appendonly", "no"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)"),
    );
    let settings = RedisSettings {
        url: format!("rediss://:s3cret@localhost:{port}"),
        prefix: format!("eftest-{}", Uuid::new_v4().simple()),
        partitions: 4,
        ca_file: Some(ca),
    };
    let up = eventually(Duration::from_secs(10), || async {
        match settings.client().unwrap().get_multiplexed_async_connection().await {
            Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(up, "the TLS Redis answers with the password");
    let wrong =
        RedisSettings { url: format!("rediss://:wrong@localhost:{port}"), ..settings.clone() };
    let refused = match wrong.client().unwrap().get_multiplexed_async_connection().await {
        Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a wrong password is refused");

    let app = spawn_app_with(|c| c.use_redis(settings.clone())).await;
    let (id, position) = open_account(&app, "Ada", "10", "0").await;
    let account = account_at(&app, &id, &position).await;
    assert_eq!(account["balance"], "10.00", "the event travelled through the TLS Redis");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
