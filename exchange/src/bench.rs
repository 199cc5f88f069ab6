//! Benchmark programs (`pcx bench ...`). Each runs in a scratch database created for the run and
//! dropped after it, against the real application served on 127.0.0.1:0, and prints its figures.
//!
//! - `pcx bench ledger`: durable money movements per second through the HTTP API against bare
//!   single-row INSERT commits through sqlx on the same database server, in the same run. The API
//!   side drives N concurrent HTTP clients, each withdrawing 0.000001 from its own funded account
//!   (one journal entry, two postings, one commit per request); the reference side runs N concurrent
//!   tasks each committing one-row INSERTs.
//! - `pcx bench contracts`: quote + accept of a one-year hourly contract with one backup across 50
//!   provers with random asks: latency percentiles and rows stored per contract.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DurationRound, Utc};
use rand::Rng;
use serde_json::json;
use sqlx::PgPool;

use crate::config::ServeConfig;
use crate::inprocess::{with_scratch_database, Served};

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

/// Options of `pcx bench contracts`.
#[derive(Debug, Clone, clap::Args)]
pub struct ContractsBenchArgs {
    /// Provers posting random asks.
    #[arg(long, default_value_t = 50)]
    pub provers: usize,
    /// Contracts quoted and bought, one after the other.
    #[arg(long, default_value_t = 100)]
    pub contracts: usize,
    /// Server settings (database, etc.).
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Figures of one measured side.
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
    fn from_latencies(mut latencies: Vec<u64>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Figures { ops: latencies.len(), elapsed, latencies_micros: latencies }
    }

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

fn micros_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `pcx bench ledger` (see the module docs).
pub async fn ledger(args: LedgerBenchArgs) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let duration = Duration::from_secs(args.seconds.max(1));
    let connections = u32::try_from(clients).unwrap_or(64).saturating_add(4);
    let serve = args.serve.clone();
    let (api, bare) = with_scratch_database(&args.serve, "pcx_bench", connections, |pool, description| async move {
        println!("pcx bench ledger: {clients} concurrent clients, {}s per side, database {description}", duration.as_secs());
        let api = api_side(&pool, &serve, clients, duration).await?;
        let bare = bare_side(&pool, clients, duration).await?;
        Ok((api, bare))
    })
    .await?;
    println!("{:<44} {:>10} {:>10} {:>10}", "", "ops/s", "p50 ms", "p99 ms");
    for (name, f) in [("withdrawals via HTTP API (durable, 1 entry)", &api), ("bare single-row INSERT commits (sqlx)", &bare)] {
        println!("{name:<44} {:>10.0} {:>10.2} {:>10.2}", f.rate(), f.quantile_ms(0.5), f.quantile_ms(0.99));
    }
    println!("ratio ours/bare: {:.3}", api.rate() / bare.rate());
    Ok(())
}

async fn api_side(pool: &PgPool, config: &ServeConfig, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    let served = Served::start(pool, config, clients).await?;
    let mut tokens = Vec::with_capacity(clients);
    for i in 0..clients {
        tokens.push(served.account(&format!("bench-{i}"), "buyer", "1000000").await?.1);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for bearer in tokens {
        let http = served.http.clone();
        let url = format!("{}/v1/withdrawals", served.base);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = http.post(&url).bearer_auth(&bearer).json(&json!({"amount": "0.000001"})).send().await?;
                anyhow::ensure!(response.status() == 201, "withdrawal answered {}", response.status());
                latencies.push(micros_since(t));
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let figures = collect(tasks, started).await?;
    served.stop().await?;
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
                latencies.push(micros_since(t));
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
    Ok(Figures::from_latencies(latencies, started.elapsed()))
}

/// `pcx bench contracts` (see the module docs).
pub async fn contracts(args: ContractsBenchArgs) -> anyhow::Result<()> {
    let provers = args.provers.max(2);
    let contracts = args.contracts.max(1);
    let serve = args.serve.clone();
    with_scratch_database(&args.serve, "pcx_bench", 16, |pool, description| async move {
        println!("pcx bench contracts: {provers} provers with random asks, {contracts} one-year hourly contracts with one backup, database {description}");
        let served = Served::start(&pool, &serve, 4).await?;
        let start = Utc::now().duration_trunc(chrono::Duration::hours(1))? + chrono::Duration::hours(1);
        let mut total_capacity = 0u32;
        for i in 0..provers {
            let (price_cents, proofs_per_hour) = {
                let mut rng = rand::thread_rng();
                (rng.gen_range(50..=200), rng.gen_range(2..=10u32))
            };
            total_capacity += proofs_per_hour;
            let (_, bearer) = served.account(&format!("prover-{i}"), "prover", "5000").await?;
            served.post("/v1/provers/stake", Some(&bearer), json!({"amount": "5000"})).await?;
            served
                .post(
                    "/v1/offers",
                    Some(&bearer),
                    json!({
                        "proof_class": {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 16, "deadline_secs": 600},
                        "window_start": start.to_rfc3339(),
                        "window_end": (start + chrono::Duration::days(370)).to_rfc3339(),
                        "proofs_per_hour": proofs_per_hour,
                        "price_per_proof": format!("{}.{:02}", price_cents / 100, price_cents % 100),
                    }),
                )
                .await?;
        }
        println!("book: {provers} offers, {total_capacity} proofs/hour in all");
        let (_, buyer) = served.account("buyer", "buyer", "100000000").await?;
        let request = json!({
            "proof_class": {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 14, "deadline_secs": 900},
            "schedule": {"start": start.to_rfc3339(), "end": (start + chrono::Duration::days(365)).to_rfc3339(), "every_secs": 3600},
            "redundancy": 1,
        });
        let mut quote_latency = Vec::new();
        let mut accept_latency = Vec::new();
        let mut both_latency = Vec::new();
        let mut contract_ids = Vec::new();
        let started = Instant::now();
        for _ in 0..contracts {
            let t = Instant::now();
            let quote = served.post("/v1/quotes", Some(&buyer), request.clone()).await?;
            let quoted = micros_since(t);
            let t2 = Instant::now();
            let contract = served.post("/v1/contracts", Some(&buyer), json!({"quote_id": quote["quote_id"]})).await?;
            accept_latency.push(micros_since(t2));
            quote_latency.push(quoted);
            both_latency.push(micros_since(t));
            contract_ids.push(uuid::Uuid::parse_str(contract["contract_id"].as_str().context("contract_id")?)?);
        }
        let elapsed = started.elapsed();
        let mut rows = Vec::new();
        let mut conn = pool.acquire().await?;
        for id in &contract_ids {
            rows.push(crate::store::contracts::rows_stored(&mut conn, *id).await?);
        }
        drop(conn);
        served.stop().await?;

        println!("{:<28} {:>10} {:>10} {:>10}", "", "p50 ms", "p99 ms", "max ms");
        for (name, latencies) in [("quote", quote_latency), ("accept", accept_latency), ("quote + accept", both_latency)] {
            let f = Figures::from_latencies(latencies, elapsed);
            let max = f.latencies_micros.last().copied().unwrap_or(0) as f64 / 1000.0;
            println!("{name:<28} {:>10.1} {:>10.1} {:>10.1}", f.quantile_ms(0.5), f.quantile_ms(0.99), max);
        }
        let avg = rows.iter().sum::<i64>() as f64 / rows.len() as f64;
        println!(
            "rows stored per contract (contract + blocks + reservations): avg {avg:.2}, max {} (8,760 slots each)",
            rows.iter().max().copied().unwrap_or(0)
        );
        Ok(())
    })
    .await
}
