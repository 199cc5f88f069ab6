//! The embedded default: `pcx serve` with no DATABASE_URL, as a user would start it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pcx_serve(envs: &[(&str, String)]) -> Server {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pcx"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("PCX_LISTEN", format!("127.0.0.1:{port}"))
        .env("PCX_ADMIN_API_KEY", common::ADMIN_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        command.env(k, v);
    }
    Server { child: command.spawn().unwrap(), base: format!("http://127.0.0.1:{port}") }
}

async fn wait_healthy(server: &mut Server) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("pcx serve exited early: {status}");
        }
        if let Ok(r) = http.get(format!("{}/health", server.base)).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("pcx serve did not become healthy within 120 s");
}

fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "pcx serve did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn register(base: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"name": "embedded", "role": "buyer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<serde_json::Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned()
}

async fn token_status(base: &str, api_key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({"api_key": api_key}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Nothing answers at the probe address, so pcx starts a private cluster from the machine's
/// PostgreSQL binaries (as root too), keeps data across restarts, and stops it on SIGTERM.
#[tokio::test]
async fn without_a_server_pcx_starts_and_stops_a_private_cluster() {
    let data_dir = std::env::temp_dir().join(format!("pcx-embedded-{}", uuid::Uuid::new_v4().simple()));
    let pg_port = free_port();
    let envs = [
        ("PCX_EMBEDDED_PROBE", format!("127.0.0.1:{}", free_port())),
        ("PCX_DATA_DIR", data_dir.to_string_lossy().into_owned()),
        ("PCX_EMBEDDED_PORT", pg_port.to_string()),
    ];
    let mut server = pcx_serve(&envs);
    wait_healthy(&mut server).await;
    let api_key = register(&server.base).await;
    assert_eq!(token_status(&server.base, &api_key).await, 200);

    // The cluster asks for a password (kept 0600 with the exchange's secrets) and listens on
    // loopback only: nothing trusts a local connection.
    let hba = std::fs::read_to_string(data_dir.join("postgres/pg_hba.conf")).unwrap();
    let rules: Vec<&str> = hba.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).collect();
    assert!(!rules.is_empty() && rules.iter().all(|l| l.ends_with("scram-sha-256")), "{rules:?}");
    let password_file = data_dir.join("secrets/postgres_password");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&password_file).unwrap().permissions().mode() & 0o777, 0o600);
    let url = |password: &str| format!("postgres://postgres:{password}@127.0.0.1:{pg_port}/postgres");
    assert!(sqlx::PgPool::connect(&url("wrong")).await.is_err(), "a wrong password is refused");
    let password = std::fs::read_to_string(&password_file).unwrap();
    let pool = sqlx::PgPool::connect(&url(password.trim())).await.unwrap();
    let listen: String = sqlx::query_scalar("SHOW listen_addresses").fetch_one(&pool).await.unwrap();
    assert_eq!(listen, "127.0.0.1");
    pool.close().await;
    assert!(terminate(&mut server).success(), "pcx serve exits 0 on SIGTERM");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "the private cluster is stopped when pcx exits"
    );

    // Restarted on the same data directory: the account is still there. The cluster's rules
    // are first turned back to `trust`, as an older pcx made them: pcx converts them again.
    let hba_path = data_dir.join("postgres/pg_hba.conf");
    let trusting: String = hba.lines().map(|l| format!("{}\n", l.replace("scram-sha-256", "trust"))).collect();
    std::fs::write(&hba_path, trusting).unwrap();
    let mut again = pcx_serve(&envs);
    wait_healthy(&mut again).await;
    assert_eq!(token_status(&again.base, &api_key).await, 200);
    let converted = std::fs::read_to_string(&hba_path).unwrap();
    assert!(!converted.lines().any(|l| !l.starts_with('#') && l.trim_end().ends_with("trust")), "{converted}");
    assert!(sqlx::PgPool::connect(&url("wrong")).await.is_err(), "trust is gone");
    assert!(terminate(&mut again).success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A server answers at the probe address: pcx creates its database there and uses it.
#[tokio::test]
async fn with_a_local_server_pcx_creates_its_database_there() {
    let name = format!("pcx_embedded_{}", uuid::Uuid::new_v4().simple());
    let mut server = pcx_serve(&[
        ("PCX_EMBEDDED_PROBE", "127.0.0.1:5432".into()),
        ("PCX_EMBEDDED_DATABASE", name.clone()),
    ]);
    wait_healthy(&mut server).await;
    register(&server.base).await;
    assert!(terminate(&mut server).success());

    let pool = sqlx::PgPool::connect(&common::server_url()).await.unwrap();
    let accounts: i64 = {
        let options: sqlx::postgres::PgConnectOptions = common::server_url().parse().unwrap();
        let db = sqlx::PgPool::connect_with(options.database(&name)).await.unwrap();
        let n = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE role = 'buyer'").fetch_one(&db).await.unwrap();
        db.close().await;
        n
    };
    assert_eq!(accounts, 1);
    sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(&pool).await.unwrap();
}

/// Neither a server nor binaries: a clear message, non-zero exit.
#[tokio::test]
async fn without_postgres_at_all_the_error_says_what_to_do() {
    let output = Command::new(env!("CARGO_BIN_EXE_pcx"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("PCX_EMBEDDED_PROBE", format!("127.0.0.1:{}", free_port()))
        .env("PCX_DATA_DIR", std::env::temp_dir().join("pcx-no-pg"))
        .env("PCX_POSTGRES_BIN_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL") && stderr.contains("install"), "{stderr}");
}
