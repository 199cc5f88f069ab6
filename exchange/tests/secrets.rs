//! The exchange's own secrets stay secret: run as a real `pcx serve` process with nothing
//! configured, the generated admin key, JWT secret, oracle key and webhook key live in 0600 files under the
//! data directory, never in its output or in a table; only the admin key's hash is stored; an
//! older database's secrets move out of the table; `pcx secrets rotate-jwt` keeps old tokens
//! valid for the grace period only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Client;
use serde_json::json;

struct Server {
    child: Child,
    output: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.output()
    }
}

async fn start(database_url: &str, data_dir: &Path, port: u16) -> (Server, Client) {
    let output = data_dir.with_extension(format!("{port}.log"));
    let log = std::fs::File::create(&output).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pcx"))
        .arg("serve")
        .env_remove("PCX_ADMIN_API_KEY")
        .env_remove("PCX_JWT_SECRET")
        .env_remove("PCX_ORACLE_KEY")
        .env("DATABASE_URL", database_url)
        .env("PCX_DATA_DIR", data_dir)
        .env("PCX_LISTEN", format!("127.0.0.1:{port}"))
        .env("PCX_ORACLE_TICK_MS", "0")
        .env("PCX_KEYS_DIR", data_dir.join("keys"))
        .env("PCX_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let client = Client { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.http.get(client.url("/health")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < give_up, "the exchange did not come up: {}", std::fs::read_to_string(&output).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (Server { child, output }, client)
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("pcx-secrets-test-{}", uuid::Uuid::new_v4()))
}

fn secret(data_dir: &Path, name: &str) -> String {
    let path = data_dir.join("secrets").join(name);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

async fn admin_token(client: &Client, key: &str) -> reqwest::StatusCode {
    client.http.post(client.url("/v1/auth/token")).json(&json!({"api_key": key})).send().await.unwrap().status()
}

#[tokio::test]
async fn generated_secrets_live_in_0600_files_never_in_logs_or_tables() {
    let (db, url) = common::fresh_database_with_url().await;
    let data = scratch();
    let (server, client) = start(&url, &data, port()).await;
    let admin_key = secret(&data, "admin_api_key");
    let jwt = secret(&data, "jwt_secret");
    let oracle = secret(&data, "oracle_key");
    let webhook_key = secret(&data, "webhook_key");
    assert_eq!(std::fs::metadata(data.join("secrets")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(admin_token(&client, &admin_key).await, 200, "the generated key works");

    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, value FROM server_secrets").fetch_all(&db).await.unwrap();
    for (name, value) in &rows {
        for secret in [&admin_key, &jwt, &oracle, &webhook_key] {
            assert!(!value.contains(secret.as_str()), "table server_secrets row {name} holds a secret");
        }
    }
    assert!(rows.iter().any(|(name, _)| name == "admin_api_key_hash"), "{rows:?}");

    // A restart on the same database and data directory: the same key, nothing new shown.
    let first_output = server.stop();
    let (server, client) = start(&url, &data, port()).await;
    assert_eq!(admin_token(&client, &admin_key).await, 200);
    let output = format!("{first_output}{}", server.stop());
    for (what, secret) in [("admin key", &admin_key), ("JWT secret", &jwt), ("oracle key", &oracle), ("webhook key", &webhook_key)] {
        assert!(!output.contains(secret.as_str()), "the {what} reached the server's output");
    }
    assert!(output.contains("secrets/admin_api_key"), "the log names the key's file: {output}");
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test]
async fn secrets_an_older_version_kept_in_the_table_move_to_files() {
    let (db, url) = common::fresh_database_with_url().await;
    let legacy_key = format!("pcx_{}", "a1".repeat(24));
    for (name, value) in [("admin_api_key", legacy_key.as_str()), ("jwt_secret", "legacy-jwt-secret-0123456789")] {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2)").bind(name).bind(value).execute(&db).await.unwrap();
    }
    let data = scratch();
    let (server, client) = start(&url, &data, port()).await;
    assert_eq!(admin_token(&client, &legacy_key).await, 200, "the operator's key keeps working");
    assert_eq!(secret(&data, "admin_api_key"), legacy_key);
    assert_eq!(secret(&data, "jwt_secret"), "legacy-jwt-secret-0123456789");
    let left: Vec<String> = sqlx::query_scalar("SELECT name FROM server_secrets").fetch_all(&db).await.unwrap();
    assert_eq!(left, ["admin_api_key_hash"]);
    let output = server.stop();
    assert!(!output.contains(&legacy_key), "the key reached the log");
    std::fs::remove_dir_all(&data).ok();
}

fn rotate(data: &Path, grace_secs: u32) {
    let out = Command::new(env!("CARGO_BIN_EXE_pcx"))
        .args(["secrets", "rotate-jwt", "--grace-secs", &grace_secs.to_string()])
        .env("PCX_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn rotating_the_jwt_secret_keeps_old_tokens_for_the_grace_period_only() {
    let (_db, url) = common::fresh_database_with_url().await;
    let data = scratch();
    let (server, client) = start(&url, &data, port()).await;
    let (_, key) = client.register("rollup", "buyer").await;
    let old_token = client.token(&key).await;
    let before = secret(&data, "jwt_secret");
    server.stop();

    rotate(&data, 600);
    assert_ne!(secret(&data, "jwt_secret"), before);
    let (server, client) = start(&url, &data, port()).await;
    assert_eq!(client.get("/v1/accounts/me", Some(&old_token)).await.status, 200, "within the grace period");
    let new_token = client.token(&key).await;
    assert_eq!(client.get("/v1/accounts/me", Some(&new_token)).await.status, 200);
    server.stop();

    // A second rotation with no grace: tokens of the first secret, and of the second, stop working.
    rotate(&data, 0);
    let (server, client) = start(&url, &data, port()).await;
    client.get("/v1/accounts/me", Some(&old_token)).await.assert_error(401, "invalid_token");
    client.get("/v1/accounts/me", Some(&new_token)).await.assert_error(401, "invalid_token");
    assert_eq!(client.get("/v1/accounts/me", Some(&client.token(&key).await)).await.status, 200);
    server.stop();
    std::fs::remove_dir_all(&data).ok();
}

/// Starts `pcx serve` on `url` with the given secrets: the server once it is healthy, or its exit
/// status and output if it stops by itself first.
async fn start_with(url: &str, jwt: &str, oracle_key: &str) -> Result<Server, String> {
    start_with_webhook_key(url, jwt, oracle_key, &"ab".repeat(32)).await
}

/// [`start_with`] with its webhook key too.
async fn start_with_webhook_key(url: &str, jwt: &str, oracle_key: &str, webhook_key: &str) -> Result<Server, String> {
    let data = scratch();
    std::fs::create_dir_all(&data).unwrap();
    let port = port();
    let output = data.with_extension("log");
    let log = std::fs::File::create(&output).unwrap();
    let mut child = common::pcx_serve(port)
        .env("DATABASE_URL", url)
        .env("PCX_DATA_DIR", &data)
        .env("PCX_JWT_SECRET", jwt)
        .env("PCX_ORACLE_KEY", oracle_key)
        .env("PCX_WEBHOOK_KEY", webhook_key)
        .env("PCX_ORACLE_TICK_MS", "0")
        .stderr(log)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("{status}: {}", std::fs::read_to_string(&output).unwrap_or_default()));
        }
        if http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(Server { child, output });
        }
        assert!(Instant::now() < give_up, "the exchange neither came up nor stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_replica_with_other_secrets_than_the_running_ones_refuses_to_start() {
    let (db, url) = common::fresh_database_with_url().await;
    let (jwt, oracle) = ("the-market-jwt-secret-0123456789", format!("0x{}", "11".repeat(32)));
    let first = start_with(&url, jwt, &oracle).await.expect("the first replica starts");
    let second = start_with(&url, jwt, &oracle).await.expect("a replica with the same secrets starts beside it");

    // A replica on another machine that was not given the secrets generates its own: refused,
    // saying what to set; the running replicas are untouched.
    let refused = start_with(&url, "another-jwt-secret-0123456789", &oracle).await.err().expect("other JWT secret refused");
    assert!(refused.contains("PCX_JWT_SECRET"), "{refused}");
    let refused = start_with(&url, jwt, &format!("0x{}", "22".repeat(32))).await.err().expect("other oracle key refused");
    assert!(refused.contains("PCX_ORACLE_KEY"), "{refused}");
    let refused = start_with_webhook_key(&url, jwt, &oracle, &"cd".repeat(32)).await.err().expect("other webhook key refused");
    assert!(refused.contains("PCX_WEBHOOK_KEY"), "{refused}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM replicas").fetch_one(&db).await.unwrap();
    assert_eq!(rows, 2, "the refused replicas left no row");
    let fingerprints: Vec<String> = sqlx::query_scalar("SELECT jwt_fingerprint FROM replicas").fetch_all(&db).await.unwrap();
    assert!(fingerprints.iter().all(|f| !f.contains(jwt) && f.len() == 64), "{fingerprints:?}");

    // Once every replica of the old secrets is gone (a clean stop removes its row; a killed one's
    // process is gone from this machine), the market may start over with new ones.
    let mut first = first;
    assert!(Command::new("kill").args(["-TERM", &first.child.id().to_string()]).status().unwrap().success());
    assert!(first.child.wait().unwrap().success(), "a clean stop");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM replicas").fetch_one(&db).await.unwrap();
    assert_eq!(rows, 1, "the stopped replica removed its row");
    drop(second); // kill -9
    let renewed = start_with(&url, "another-jwt-secret-0123456789", &oracle).await;
    assert!(renewed.is_ok(), "{:?}", renewed.err());
}
