//! `pcx bench ledger`: durable money movements per second through the HTTP API, against bare
//! single-row INSERT commits through sqlx on the same database server, in the same run.
//!
//! Both sides run in a scratch database created for the run and dropped after it. The API side
//! serves the real application on 127.0.0.1:0 and drives it with N concurrent HTTP clients, each
//! withdrawing 0.000001 from its own funded account (one journal entry, two postings, one commit
//! per request). The reference side runs N concurrent tasks each committing one-row INSERTs.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::{ServeConfig, Settings};
use crate::{app, db, run, AppState};

/// Options of `pcx bench ledger`.
#[derive(Debug, Clone, clap::Args)]
pub struct LedgerBenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each side runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Server settings (database, etc.).
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Figures of one side.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Completed operations.
    pub ops: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub latencies_micros: Vec<u64>,
}

impl Figures {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_micros.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_micros.len() - 1) as f64 * q).round() as usize;
        self.latencies_micros[idx] as f64 / 1000.0
    }
}

/// Runs the benchmark and prints its figures.
pub async fn ledger(args: LedgerBenchArgs) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let duration = Duration::from_secs(args.seconds.max(1));
    let database = db::Database::open(&args.serve.db).await?;
    let scratch = format!("pcx_bench_{}", std::process::id());
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{scratch}\"")).execute(&database.pool).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE \"{scratch}\"")).execute(&database.pool).await?;
    let options = database.pool.connect_options().as_ref().clone().database(&scratch);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(clients).unwrap_or(64).saturating_add(4))
        .connect_with(options)
        .await
        .context("connecting to the scratch database")?;
    db::MIGRATOR.run(&pool).await?;
    println!("pcx bench ledger: {clients} concurrent clients, {}s per side, database {}", duration.as_secs(), database.description);

    let outcome = async {
        let api = api_side(&pool, &args.serve, clients, duration).await?;
        let bare = bare_side(&pool, clients, duration).await?;
        Ok::<_, anyhow::Error>((api, bare))
    }
    .await;
    pool.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{scratch}\"")).execute(&database.pool).await.ok();
    database.close().await;
    let (api, bare) = outcome?;

    println!("{:<44} {:>10} {:>10} {:>10}", "", "ops/s", "p50 ms", "p99 ms");
    for (name, f) in [("withdrawals via HTTP API (durable, 1 entry)", &api), ("bare single-row INSERT commits (sqlx)", &bare)] {
        println!("{name:<44} {:>10.0} {:>10.2} {:>10.2}", f.rate(), f.quantile_ms(0.5), f.quantile_ms(0.99));
    }
    println!("ratio ours/bare: {:.3}", api.rate() / bare.rate());
    Ok(())
}

async fn api_side(pool: &PgPool, config: &ServeConfig, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = config.clone();
    let admin_key = crate::auth::generate_api_key();
    config.admin_api_key = Some(admin_key.clone());
    let state = AppState::new(pool.clone(), &config, Settings::from_config(&config, addr)).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, app(state), async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;

    let admin = token(&http, &base, &admin_key).await?;
    let mut tokens = Vec::with_capacity(clients);
    for i in 0..clients {
        let account: serde_json::Value = http
            .post(format!("{base}/v1/accounts"))
            .json(&json!({"name": format!("bench-{i}"), "role": "buyer"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = account["api_key"].as_str().context("api_key")?.to_owned();
        http.post(format!("{base}/v1/admin/deposits"))
            .bearer_auth(&admin)
            .json(&json!({"account_id": account["account_id"], "amount": "1000000"}))
            .send()
            .await?
            .error_for_status()?;
        tokens.push(token(&http, &base, &key).await?);
    }

    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for bearer in tokens {
        let http = http.clone();
        let url = format!("{base}/v1/withdrawals");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = http.post(&url).bearer_auth(&bearer).json(&json!({"amount": "0.000001"})).send().await?;
                anyhow::ensure!(response.status() == 201, "withdrawal answered {}", response.status());
                latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let figures = collect(tasks, started).await?;
    let _ = stop.send(());
    server.await??;
    Ok(figures)
}

async fn bare_side(pool: &PgPool, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    sqlx::raw_sql("CREATE TABLE bench_bare (id BIGSERIAL PRIMARY KEY, amount NUMERIC(20, 6) NOT NULL)")
        .execute(pool)
        .await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let amount = rust_decimal::Decimal::new(1, 6);
            while Instant::now() < deadline {
                let t = Instant::now();
                sqlx::query("INSERT INTO bench_bare (amount) VALUES ($1)").bind(amount).execute(&pool).await?;
                latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    collect(tasks, started).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>>,
    started: Instant,
) -> anyhow::Result<Figures> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Figures { ops: latencies.len(), elapsed, latencies_micros: latencies })
}

async fn token(http: &reqwest::Client, base: &str, api_key: &str) -> anyhow::Result<String> {
    let reply: serde_json::Value = http
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({"api_key": api_key}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(reply["token"].as_str().context("token")?.to_owned())
}
