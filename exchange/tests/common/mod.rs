//! Test harness: the real application on 127.0.0.1:0 with a fresh PostgreSQL database per test.
//!
//! The server is found at `PCX_TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`. Each test creates `pcx_test_<time>_<random>`;
//! databases left by earlier runs more than two hours old are dropped on the way.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

pub mod played;
pub mod receiver;

use pcx_exchange::config::{DbConfig, ServeConfig, Settings};
use pcx_exchange::{app, run, AppState};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tokio::net::TcpListener;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";

pub fn server_url() -> String {
    std::env::var("PCX_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn serve_config() -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        role: pcx_exchange::config::Role::All,
        worker_lease_secs: 15,
        db: DbConfig {
            database_url: None,
            database_read_url: None,
            database_direct_url: None,
            data_dir: None,
            embedded_probe: "127.0.0.1:5432".into(),
            embedded_database: "pcx".into(),
            embedded_port: 54329,
            postgres_bin_dir: None,
            max_connections: 16,
            background_connections: 4,
        },
        admin_api_key: Some(ADMIN_KEY.into()),
        jwt_secret: Some(JWT_SECRET.into()),
        jwt_secret_file: None,
        token_ttl_secs: 3600,
        nonce_ttl_secs: 300,
        public_url: None,
        min_cadence_secs: 10,
        max_circuit_bytes: 1 << 30,
        max_sse_subscribers: 1000,
        max_claim_waiters: 256,
        header_read_timeout_secs: 10,
        request_timeout_secs: 30,
        upload_timeout_secs: 900,
        // Tests make many requests from one address; tests/rate_limits.rs sets real limits.
        rate_auth_per_min: 1_000_000,
        rate_oracle_per_sec: 1_000_000,
        rate_quotes_per_min: 1_000_000,
        market: pcx_exchange::config::MarketConfig {
            slash_multiplier: rust_decimal::Decimal::TWO,
            collateral_window_secs: 86_400,
            escrow_window_secs: 86_400,
            fee_bps: 100,
            quote_ttl_secs: 60,
            max_quote_candidates: 2000,
            quote_budget_ms: 2000,
            max_offers_per_prover: 200,
            discounts: None,
            // Most tests post offers before any agent heartbeats; tests/offer_capacity.rs turns it on.
            offer_capacity_check: pcx_exchange::config::OfferCapacityCheck::Off,
        },
        settlement: pcx_exchange::config::SettlementConfig {
            tick_ms: 200,
            horizon_secs: 172_800,
            ack_timeout_secs: 4,
            lease_secs: 6,
            invalid_slash_factor: rust_decimal::Decimal::TWO,
            handover_margin_ms: 2000,
            outage_after_secs: 10,
            batch: 200,
            collateral_check_secs: 0,
            health_stall_secs: 30,
            keys_dir: Some(common_keys_dir()),
            dev_keys: true,
        },
        oracle: pcx_exchange::config::OracleConfig {
            oracle_tick_ms: 0,
            oracle_heartbeat_secs: 60,
            oracle_deviation_bps: 100,
            oracle_min_sources: 3,
            oracle_key: None,
            oracle_key_file: None,
            oracle_chain_id: 1,
            oracle_providers: None,
            oracle_provider_timeout_ms: 500,
            oracle_provider_refresh_secs: 0,
        },
        webhooks: pcx_exchange::config::WebhookConfig {
            webhook_key: Some("ab".repeat(32)),
            webhook_key_file: None,
            webhook_retry_horizon_secs: 259_200,
            webhook_timeout_secs: 5,
            webhook_concurrency: 4,
            webhook_tick_ms: 100,
            webhook_allow_private_networks: true,
        },
    }
}

/// One keys directory for every test run on this machine: keys are deterministic, so sharing them
/// only saves the setup time.
pub fn common_keys_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("pcx-test-keys")
}

/// A fresh, migrated database on the test server.
pub async fn fresh_database() -> PgPool {
    fresh_database_with_url().await.0
}

/// A fresh, migrated database on the test server, and its URL.
pub async fn fresh_database_with_url() -> (PgPool, String) {
    let server: PgConnectOptions = server_url().parse().expect("test database URL");
    let mut admin = sqlx::PgConnection::connect_with(&server).await.expect("connect to the test PostgreSQL server");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let stale: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'pcx\\_test\\_%'")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    for name in stale {
        let created = name.split('_').nth(2).and_then(|t| t.parse::<u64>().ok()).unwrap_or(now);
        if now.saturating_sub(created) > 7200 {
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await;
        }
    }
    let name = format!("pcx_test_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(24)
        .connect_with(server.clone().database(&name))
        .await
        .unwrap();
    pcx_exchange::db::MIGRATOR.run(&pool).await.unwrap();
    let mut url = reqwest::Url::parse(&server_url()).unwrap();
    url.set_path(&format!("/{name}"));
    (pool, url.to_string())
}

/// An HTTP client of one exchange, with the calls tests make.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

/// The application served in-process on a fresh database, with its settlement scheduler.
pub struct TestApp {
    pub client: Client,
    pub db: PgPool,
    pub state: AppState,
    /// The clock a test moves itself (`spawn_manual`), if any; then no scheduler runs by itself.
    pub clock: Option<std::sync::Arc<pcx_exchange::clock::ManualClock>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stop_scheduler: tokio::sync::watch::Sender<bool>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.stop_scheduler.send(true);
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(serve_config()).await
}

pub async fn spawn_app_with(config: ServeConfig) -> TestApp {
    let db = fresh_database().await;
    spawn_on(db, config).await
}

/// The application on a fresh database, on a clock the test moves (starting at `start`), with no
/// scheduler running by itself: the test calls [`TestApp::tick`].
pub async fn spawn_manual(config: ServeConfig, start: chrono::DateTime<chrono::Utc>) -> TestApp {
    let db = fresh_database().await;
    spawn_on_clock(db, config, Some(std::sync::Arc::new(pcx_exchange::clock::ManualClock::new(start)))).await
}

pub async fn spawn_on(db: PgPool, config: ServeConfig) -> TestApp {
    spawn_on_clock(db, config, None).await
}

pub async fn spawn_on_clock(
    db: PgPool,
    config: ServeConfig,
    clock: Option<std::sync::Arc<pcx_exchange::clock::ManualClock>>,
) -> TestApp {
    // Logs of the server under test go to the test's output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(std::env::var("PCX_LOG").unwrap_or_else(|_| "warn".into())))
        .with_test_writer()
        .try_init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = AppState::new(db.clone(), &config, Settings::from_config(&config, addr).unwrap()).await.unwrap();
    if let Some(clock) = &clock {
        state = state.with_clock(clock.clone());
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(listener, app(state.clone()), async {
        let _ = stopped.await;
    }));
    let (stop_scheduler, scheduler_stopped) = tokio::sync::watch::channel(false);
    // Webhook delivery runs on the real clock in every test app (the market's may be the test's).
    tokio::spawn(pcx_exchange::service::webhooks::run_deliveries(state.clone(), scheduler_stopped.clone()));
    if clock.is_none() {
        tokio::spawn(pcx_exchange::service::settlement::run_scheduler(state.clone(), scheduler_stopped));
    }
    TestApp {
        client: Client { base: format!("http://{addr}"), http: reqwest::Client::new() },
        db,
        state,
        clock,
        stop: Some(stop),
        stop_scheduler,
    }
}

impl TestApp {
    fn manual_clock(&self) -> &pcx_exchange::clock::ManualClock {
        self.clock.as_deref().expect("a clock-driven test app (spawn_manual)")
    }

    /// The test's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use pcx_exchange::clock::Clock;
        self.manual_clock().now()
    }

    /// Sets the clock without running the scheduler (as if the exchange were down meanwhile).
    pub fn jump_to(&self, t: chrono::DateTime<chrono::Utc>) {
        self.manual_clock().set(t);
    }

    /// One scheduler tick at the clock's time.
    pub async fn tick(&self) {
        let now = self.now();
        pcx_exchange::service::settlement::tick(&self.state, now).await.unwrap();
    }

    /// Moves the clock to `t` in steps of `step`, ticking at each step (a healthy exchange).
    pub async fn run_until(&self, t: chrono::DateTime<chrono::Utc>, step: chrono::Duration) {
        while self.now() < t {
            let next = (self.now() + step).min(t);
            self.manual_clock().set(next);
            self.tick().await;
        }
    }
}

/// A response: status and JSON body (Null when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// Asserts the error envelope with this status and code, and returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        let message = self.body["error"]["message"].as_str().expect("error.message is a string");
        assert!(!message.is_empty());
        message.to_owned()
    }
}

impl std::ops::Deref for TestApp {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status();
        let text = response.text().await.unwrap();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.post_with_key(path, token, None, body).await
    }

    pub async fn post_with_key(&self, path: &str, token: Option<&str>, key: Option<&str>, body: Value) -> Reply {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut req = self.http.put(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, token: Option<&str>, content_type: Option<&str>, body: &str) -> Reply {
        let mut req = self.http.post(self.url(path)).body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    /// Registers an account; returns (account_id, api_key).
    pub async fn register(&self, name: &str, role: &str) -> (String, String) {
        let reply = self.post("/v1/accounts", None, json!({"name": name, "role": role})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        (
            reply.body["account_id"].as_str().unwrap().to_owned(),
            reply.body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn token(&self, api_key: &str) -> String {
        let reply = self.post("/v1/auth/token", None, json!({"api_key": api_key})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_KEY).await
    }

    /// Registers an account and returns (account_id, token).
    pub async fn account(&self, name: &str, role: &str) -> (String, String) {
        let (id, key) = self.register(name, role).await;
        (id, self.token(&key).await)
    }

    pub async fn deposit(&self, account_id: &str, amount: &str) {
        let admin = self.admin_token().await;
        let reply = self
            .post("/v1/admin/deposits", Some(&admin), json!({"account_id": account_id, "amount": amount}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }

    pub async fn balances(&self, token: &str) -> Value {
        let reply = self.get("/v1/accounts/me/balances", Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    pub async fn summary(&self) -> Value {
        let admin = self.admin_token().await;
        let reply = self.get("/v1/admin/ledger/summary", Some(&admin)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }
}

// ---- market helpers ----------------------------------------------------------------------------

/// The hash-chain proof class of a size, with a deadline.
pub fn class_with(size_log2: u8, deadline_secs: u32) -> Value {
    json!({"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": size_log2, "deadline_secs": deadline_secs})
}

/// The hash-chain proof class of a size with a 600 s deadline.
pub fn class(size_log2: u8) -> Value {
    class_with(size_log2, 600)
}

/// The next whole hour, plus `hours`.
pub fn hour(hours: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::DurationRound;
    chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap() + chrono::Duration::hours(1 + hours)
}

pub fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339()
}

/// A prover with `stake` bonded; returns (account_id, token, api_key).
pub async fn prover_with_key(app: &Client, name: &str, stake: &str) -> (String, String, String) {
    let (id, key) = app.register(name, "prover").await;
    let token = app.token(&key).await;
    app.deposit(&id, stake).await;
    let r = app.post("/v1/provers/stake", Some(&token), json!({"amount": stake})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (id, token, key)
}

/// A prover with `stake` bonded; returns (account_id, token).
pub async fn prover(app: &Client, name: &str, stake: &str) -> (String, String) {
    let (id, token, _) = prover_with_key(app, name, stake).await;
    (id, token)
}

/// Posts an offer of `class` from an hour ago for `days` days.
pub async fn offer_class(app: &Client, token: &str, class: Value, price: &str, pph: u32, days: i64) -> Value {
    let r = app
        .post(
            "/v1/offers",
            Some(token),
            json!({"proof_class": class, "window_start": rfc(hour(-2)), "window_end": rfc(hour(days * 24 + 24)),
                   "proofs_per_hour": pph, "price_per_proof": price}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Posts an offer of hash-chain 2^14 (600 s deadline) from an hour ago for `days` days.
pub async fn offer(app: &Client, token: &str, price: &str, pph: u32, days: i64) -> Value {
    offer_class(app, token, class(14), price, pph, days).await
}

// ---- circuit uploads ---------------------------------------------------------------------------

/// `POST /v1/circuits` from the committed circom fixtures, as multipart bodies built by hand (so
/// tests can also send broken ones).
pub mod circuit_upload {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::{Client, Reply};

    /// The parts of a registration, as (name, filename, bytes).
    pub type Parts = Vec<(&'static str, Option<&'static str>, Vec<u8>)>;

    const BOUNDARY: &str = "pcx-test-boundary-7f3a9c";

    /// The fixtures' folder (prover-pool/tests/fixtures/circom).
    pub fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prover-pool/tests/fixtures/circom")
    }

    /// A fixture file of `circuit`.
    pub fn fixture(circuit: &str, file: &str) -> Vec<u8> {
        let path = fixtures().join(circuit).join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The five parts registering fixture `circuit`.
    pub fn parts_of(circuit: &str) -> Parts {
        vec![
            ("name", None, circuit.as_bytes().to_vec()),
            ("r1cs", Some("circuit.r1cs"), fixture(circuit, &format!("{circuit}.r1cs"))),
            ("wasm", Some("circuit.wasm"), fixture(circuit, &format!("{circuit}.wasm"))),
            ("zkey", Some("circuit.zkey"), fixture(circuit, &format!("{circuit}.zkey"))),
            ("sample_input", None, fixture(circuit, "input.json")),
        ]
    }

    /// `parts` with part `name`'s bytes replaced.
    pub fn replace(mut parts: Parts, name: &str, bytes: Vec<u8>) -> Parts {
        parts.iter_mut().find(|(n, _, _)| *n == name).unwrap().2 = bytes;
        parts
    }

    /// A multipart/form-data body of `parts`.
    pub fn multipart(parts: &Parts) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, bytes) in parts {
            body.extend(format!("--{BOUNDARY}\r\n").as_bytes());
            match filename {
                Some(file) => body.extend(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => body.extend(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            body.extend(bytes);
            body.extend(b"\r\n");
        }
        body.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    /// `POST /v1/circuits` with `parts`.
    pub async fn upload(app: &Client, token: Option<&str>, parts: &Parts) -> Reply {
        let mut req = app
            .http
            .post(app.url("/v1/circuits"))
            .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(multipart(parts));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Reply { status, body }
    }
}

/// The real `pcx serve` binary on `port` with what the end-to-end tests share: the test admin
/// key, the shared test keys, offers posted before agents run, rate limits out of the way of one
/// test client on loopback, quiet logs. Each test adds its database and timing settings.
pub fn pcx_serve(port: u16) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pcx"));
    command
        .arg("serve")
        .env("PCX_LISTEN", format!("127.0.0.1:{port}"))
        .env("PCX_ADMIN_API_KEY", ADMIN_KEY)
        .env("PCX_KEYS_DIR", common_keys_dir())
        .env("PCX_OFFER_CAPACITY_CHECK", "off")
        .env("PCX_RATE_AUTH_PER_MIN", "100000")
        .env("PCX_RATE_ORACLE_PER_SEC", "100000")
        .env("PCX_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    command
}

/// A prover agent run in-process against `base` (2^10 proofs, short claims) until the returned
/// sender is dropped or fired; `keys_dir` where it keeps the proving keys it downloads.
pub fn run_test_agent(
    base: &str,
    api_key: &str,
    fault: Option<pcx_prover_pool::agent::Fault>,
    keys_dir: std::path::PathBuf,
) -> tokio::sync::oneshot::Sender<()> {
    let mut args = pcx_prover_pool::agent::AgentArgs::new(base, api_key);
    args.sizes = vec![10];
    args.fault = fault;
    args.claim_wait_secs = 2;
    args.keys_dir = Some(keys_dir);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pcx_prover_pool::agent::run_agent(args, async move {
        let _ = stopped.await;
    }));
    stop
}

/// Buys `slots` slots of `class` every `every` seconds from `start` with `redundancy` backups,
/// and posts each slot's input; returns the contract id.
pub async fn buy_short_contract(
    app: &Client,
    buyer: &str,
    class: &Value,
    start: chrono::DateTime<chrono::Utc>,
    every: i64,
    slots: i64,
    redundancy: u8,
) -> String {
    let end = start + chrono::Duration::seconds(every * slots);
    let quote = app
        .post(
            "/v1/quotes",
            Some(buyer),
            json!({"proof_class": class, "redundancy": redundancy,
                   "schedule": {"start": rfc(start), "end": rfc(end), "every_secs": every}}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    let bought = app.post("/v1/contracts", Some(buyer), json!({"quote_id": quote.body["quote_id"]})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    let contract = bought.body["contract_id"].as_str().unwrap().to_owned();
    for n in 0..slots {
        let r = app.put(&format!("/v1/contracts/{contract}/slots/{n}/input"), Some(buyer), json!({"public_input": (n + 5).to_string()})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    contract
}

/// Asserts that the ledger settled `slots` slots exactly once with nobody slashed: a payment per
/// delivered slot, a refund per other slot, no journal reference twice. `why` says what the
/// exchange went through (for the message).
pub async fn assert_settled_once_without_slashes(pool: &PgPool, slots: i64, delivered: i64, why: &str) {
    let settlements: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM journal_entries WHERE kind IN ('slot_payment', 'refund', 'slash') GROUP BY kind ORDER BY kind",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let count = |kind: &str| settlements.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
    assert_eq!(count("slot_payment"), delivered, "{settlements:?}");
    assert_eq!(count("slot_payment") + count("refund"), slots, "{settlements:?}");
    assert_eq!(count("slash"), 0, "nobody is slashed for the exchange's own faults ({why}): {settlements:?}");
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT reference, kind FROM journal_entries GROUP BY reference, kind HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(duplicates, 0, "a journal reference twice");
}

/// Waits up to `within` for all `slots` slots of `contract` to be in a final state (neither
/// scheduled nor proving), then returns them.
pub async fn wait_all_slots_final(app: &Client, buyer: &str, contract: &str, slots: i64, within: std::time::Duration) -> Vec<Value> {
    let give_up = std::time::Instant::now() + within;
    loop {
        let r = app.get(&format!("/v1/contracts/{contract}/slots?limit={slots}"), Some(buyer)).await;
        let list = r.body["slots"].as_array().cloned().unwrap_or_default();
        let settled = list.iter().all(|s| !matches!(s["state"].as_str(), Some("scheduled" | "proving")));
        if r.status == StatusCode::OK && list.len() == slots as usize && settled {
            return list;
        }
        assert!(std::time::Instant::now() < give_up, "slots not settled in time: {}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
