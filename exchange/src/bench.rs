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
//! - `pcx bench deliveries`: verified deliveries per second through the API (claimed jobs, one
//!   pre-made proof submitted by N concurrent clients; each slot the first of an hourly contract
//!   of its own, so that they are all open at once and, as in a year-long contract, delivering one
//!   does not also complete its contract) against raw Groth16 verifications per second
//!   of the same proof on as many threads, in the same run, and batch verification (batches of
//!   16) of the same proofs on as many threads.
//! - `pcx bench oracle`: latest-price reads per second against a bare axum handler serving the same
//!   body, in the same run; aggregation (and signing) time of a round with 1,000 sources; time from
//!   a new round to 1,000 SSE subscribers having it.
//! - `pcx bench scheduler`: the settlement scheduler with N one-year hourly contracts (seeded in SQL:
//!   quotes, contracts, blocks): slots materialised, and time per tick while catching up and
//!   through simulated hours in which every contract's slot opens and is paid.

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

/// Options of `pcx bench deliveries`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveriesBenchArgs {
    /// Slots delivered (each the first of its own hourly contract; at most 2,700). Enough for the
    /// run to measure the steady state, not the warm-up of the first batches.
    #[arg(long, default_value_t = 1000)]
    pub slots: usize,
    /// Concurrent clients submitting proofs, and threads verifying in the reference: the agents
    /// of many provers submitting at once, as an exchange serves them.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Circuit size of the proofs.
    #[arg(long, default_value_t = 10)]
    pub size_log2: u8,
    /// Server settings (database, keys, etc.).
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Options of `pcx bench scheduler`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerBenchArgs {
    /// One-year hourly contracts.
    #[arg(long, default_value_t = 10_000)]
    pub contracts: usize,
    /// Simulated hours after the catch-up.
    #[arg(long, default_value_t = 2)]
    pub hours: u32,
    /// Server settings (database, etc.).
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Options of `pcx bench oracle`.
#[derive(Debug, Clone, clap::Args)]
pub struct OracleBenchArgs {
    /// Concurrent clients reading prices.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each read side runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Sources per aggregation round.
    #[arg(long, default_value_t = 1000)]
    pub sources: usize,
    /// SSE subscribers.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
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

/// Runs `work(i)` on `threads` threads at once; their latencies together, over the wall time.
fn on_threads<W, F>(threads: usize, work: W) -> anyhow::Result<Figures>
where
    W: Fn(usize) -> F,
    F: FnOnce() -> Vec<u64> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..threads).map(|i| std::thread::spawn(work(i))).collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.join().map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?);
    }
    Ok(Figures::from_latencies(latencies, started.elapsed()))
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
    let mut serve = args.serve.clone();
    // The provers only post offers; no agent runs.
    serve.market.offer_capacity_check = crate::config::OfferCapacityCheck::Off;
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

/// `pcx bench deliveries` (see the module docs).
pub async fn deliveries(args: DeliveriesBenchArgs) -> anyhow::Result<()> {
    let slots = args.slots.clamp(1, 2700);
    let clients = args.clients.max(1);
    let mut serve = args.serve.clone();
    serve.min_cadence_secs = 10;
    // The benchmark proves with development keys of its own, so the exchange must verify with them.
    serve.settlement.dev_keys = true;
    serve.settlement.tick_ms = 100;
    // The prover posts its offer and the bench submits the proofs itself; no agent heartbeats.
    serve.market.offer_capacity_check = crate::config::OfferCapacityCheck::Off;
    let size = args.size_log2;
    with_scratch_database(&args.serve.clone(), "pcx_bench", 16, |pool, description| async move {
        println!("pcx bench deliveries: {slots} slots of hash-chain 2^{size}, {clients} concurrent clients, database {description}");
        let served = Served::start(&pool, &serve, clients).await?;
        let class = json!({"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": size, "deadline_secs": 600});
        let (_, prover, _) = served.account_with_key("prover", "prover", "1000").await?;
        served.post("/v1/provers/stake", Some(&prover), json!({"amount": "1000"})).await?;
        let now = Utc::now();
        served
            .post(
                "/v1/offers",
                Some(&prover),
                json!({"proof_class": class, "window_start": (now - chrono::Duration::hours(1)).to_rfc3339(),
                       "window_end": (now + chrono::Duration::hours(6)).to_rfc3339(), "proofs_per_hour": 100_000,
                       "price_per_proof": "0.000001"}),
            )
            .await?;
        let (_, buyer) = served.account("buyer", "buyer", "1000").await?;
        // Every slot's input must be in before its slot opens: time enough for this machine to buy
        // them all (the claims below wait for the openings).
        let start = now + chrono::Duration::milliseconds(5_000 + 30 * i64::try_from(slots).unwrap_or(2700));
        let seed = "4242";
        for _ in 0..slots {
            let quote = served
                .post(
                    "/v1/quotes",
                    Some(&buyer),
                    json!({"proof_class": class, "redundancy": 0,
                           "schedule": {"start": start.to_rfc3339(), "end": (start + chrono::Duration::hours(2)).to_rfc3339(), "every_secs": 3600}}),
                )
                .await?;
            let contract = served.post("/v1/contracts", Some(&buyer), json!({"quote_id": quote["quote_id"]})).await?;
            let id = contract["contract_id"].as_str().context("contract_id")?;
            served.put(&format!("/v1/contracts/{id}/slots/0/input"), Some(&buyer), json!({"public_input": seed})).await?;
        }
        // One proof, made once, valid for every slot (they share the input).
        let keys = std::sync::Arc::new(pcx_prover_pool::keys::KeyStore::new(serve.settlement.resolved_keys_dir()));
        let seed_fr = pcx_prover_pool::field::parse_field_element(seed)?;
        let proof_keys = keys.clone();
        let (proof, inputs) = tokio::task::spawn_blocking(move || {
            pcx_prover_pool::groth16::prove_hash_chain(&proof_keys, size, seed_fr, &pcx_prover_pool::msm::ArkworksMsm)
        })
        .await??;
        let encoded = pcx_prover_pool::encoding::encode_proof(&proof);
        // Agents of 256 jobs each (a claim names at most 1,024 jobs in hand).
        let mut agent = uuid::Uuid::new_v4();
        let mut jobs = Vec::new();
        let mut in_hand: Vec<String> = Vec::new();
        while jobs.len() < slots {
            if in_hand.len() == 256 {
                (agent, in_hand) = (uuid::Uuid::new_v4(), Vec::new());
            }
            let claimed = served
                .post(
                    "/v1/agent/jobs/claim",
                    Some(&prover),
                    json!({"agent_id": agent, "wait_secs": 10, "sizes": [size], "in_hand": in_hand}),
                )
                .await?;
            match claimed["job"]["job_id"].as_str() {
                Some(id) => {
                    jobs.push(id.to_owned());
                    in_hand.push(id.to_owned());
                }
                // The slots have not opened yet.
                None if Utc::now() < start + chrono::Duration::seconds(30) => {}
                None => anyhow::bail!("no job to claim"),
            }
        }

        // The tables filled in seconds, faster than autovacuum gathers their statistics; an
        // exchange's database has them (without, the scheduler's scans plan as for empty tables).
        sqlx::query("ANALYZE").execute(&pool).await?;
        let queue = std::sync::Arc::new(tokio::sync::Mutex::new(jobs));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let queue = queue.clone();
            let http = served.http.clone();
            let base = served.base.clone();
            let prover = prover.clone();
            let encoded = encoded.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some(job) = queue.lock().await.pop() else { break };
                    let t = Instant::now();
                    let reply: serde_json::Value = http
                        .post(format!("{base}/v1/agent/jobs/{job}/proof"))
                        .bearer_auth(&prover)
                        .header("Idempotency-Key", &job)
                        .json(&json!({"proof": encoded}))
                        .send()
                        .await?
                        .json()
                        .await?;
                    anyhow::ensure!(reply["accepted"] == json!(true), "delivery refused: {reply}");
                    latencies.push(micros_since(t));
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let api = collect(tasks, started).await?;
        served.stop().await?;

        // Reference: raw verifications of the same proof on as many threads, for the same count.
        let pvk = keys.verifying_key(size)?;
        let per_thread = slots.div_ceil(clients);
        let raw = on_threads(clients, |_| {
            let (pvk, proof) = (pvk.clone(), proof.clone());
            move || {
                let mut latencies = Vec::new();
                for _ in 0..per_thread {
                    let t = Instant::now();
                    assert!(pcx_prover_pool::groth16::verify(&pvk, &inputs, &proof));
                    latencies.push(micros_since(t));
                }
                latencies
            }
        })?;
        // What batch verification alone does: the same proofs on as many threads, in batches of
        // 16 (the exchange batches what arrives together); a latency is a batch's over its size.
        let batched = on_threads(clients, |_| {
            let (pvk, proof) = (pvk.clone(), proof.clone());
            move || {
                let mut latencies = Vec::new();
                let claims = vec![pcx_prover_pool::batch_verify::Claim { public_inputs: &inputs, proof: &proof }; 16];
                let mut rng = rand::thread_rng();
                for _ in 0..per_thread.div_ceil(16) {
                    let t = Instant::now();
                    assert!(pcx_prover_pool::batch_verify::verify_batch(&pvk, &claims, &mut rng).iter().all(|&ok| ok));
                    let per_proof = micros_since(t) / 16;
                    latencies.extend(std::iter::repeat_n(per_proof, 16));
                }
                latencies
            }
        })?;

        println!("{:<48} {:>10} {:>10} {:>10}", "", "ops/s", "p50 ms", "p99 ms");
        for (name, f) in [
            ("verified deliveries via HTTP API (paid, durable)", &api),
            ("raw Groth16 verifications (ark-groth16)", &raw),
            ("Groth16 batch verification, batches of 16", &batched),
        ] {
            println!("{name:<48} {:>10.1} {:>10.2} {:>10.2}", f.rate(), f.quantile_ms(0.5), f.quantile_ms(0.99));
        }
        println!("ratio ours/raw: {:.3}", api.rate() / raw.rate());
        println!("ratio batch verification/raw: {:.3}", batched.rate() / raw.rate());
        Ok(())
    })
    .await
}

/// `pcx bench scheduler` (see the module docs).
pub async fn scheduler(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let contracts = args.contracts.max(1);
    let hours = args.hours;
    let serve = args.serve.clone();
    with_scratch_database(&args.serve.clone(), "pcx_bench", 16, |pool, description| async move {
        println!("pcx bench scheduler: {contracts} one-year hourly contracts, database {description}");
        let listener_addr: std::net::SocketAddr = "127.0.0.1:0".parse()?;
        let state = crate::AppState::new(pool.clone(), &serve, crate::config::Settings::from_config(&serve, listener_addr)?).await?;
        let t0 = Utc::now().duration_trunc(chrono::Duration::hours(1))? + chrono::Duration::hours(1);
        seed_contracts(&pool, contracts, t0).await?;
        let rows = |pool: PgPool| async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM slots").fetch_one(&pool).await
        };

        // Catch-up: materialise the horizon and fund the first escrow windows, as at start-up.
        let mut ticks = Vec::new();
        let started = Instant::now();
        let mut now = t0 - chrono::Duration::minutes(30);
        loop {
            let t = Instant::now();
            let report = crate::service::settlement::tick(&state, now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            ticks.push(micros_since(t));
            if report == crate::service::settlement::TickReport::default() {
                break;
            }
            now += chrono::Duration::milliseconds(1);
        }
        let caught_up = Figures::from_latencies(ticks, started.elapsed());
        let materialised = rows(pool.clone()).await?;
        println!(
            "catch-up: {} ticks in {:.1} s (p50 {:.1} ms, max {:.1} ms per tick); {materialised} slots materialised ({:.1} per contract, horizon {} h) instead of {} for the whole terms",
            caught_up.ops,
            caught_up.elapsed.as_secs_f64(),
            caught_up.quantile_ms(0.5),
            caught_up.latencies_micros.last().copied().unwrap_or(0) as f64 / 1000.0,
            materialised as f64 / contracts as f64,
            state.settings.settlement.horizon.num_hours(),
            contracts * 8760
        );

        // Simulated hours: every contract's slot opens (no input: unused, paid), the horizon moves.
        for hour in 0..hours {
            let at = t0 + chrono::Duration::hours(i64::from(hour)) + chrono::Duration::seconds(1);
            let mut ticks = Vec::new();
            let mut opened = 0;
            let mut materialised = 0;
            let started = Instant::now();
            loop {
                let t = Instant::now();
                let report = crate::service::settlement::tick(&state, at).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                ticks.push(micros_since(t));
                opened += report.opened;
                materialised += report.materialised;
                if report == crate::service::settlement::TickReport::default() {
                    break;
                }
            }
            let f = Figures::from_latencies(ticks, started.elapsed());
            println!(
                "hour {hour}: {opened} slots opened and paid, {materialised} materialised, in {} ticks, {:.1} s (p50 {:.1} ms per tick)",
                f.ops,
                f.elapsed.as_secs_f64(),
                f.quantile_ms(0.5)
            );
        }
        // The first idle tick runs the periodic collateral check (every PCX_COLLATERAL_CHECK_SECS
        // of the clock) over every primary slot in the window; the next one is a plain idle tick.
        let mut idle = Vec::new();
        for seconds_before in [120, 110] {
            let t = Instant::now();
            let at = t0 + chrono::Duration::hours(i64::from(hours)) - chrono::Duration::seconds(seconds_before);
            crate::service::settlement::tick(&state, at).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            idle.push(micros_since(t) as f64 / 1000.0);
        }
        let in_window: i64 = sqlx::query_scalar("SELECT count(*) FROM slots WHERE state = 'scheduled' AND opens_at < $1")
            .bind(t0 + chrono::Duration::hours(i64::from(hours) + 24))
            .fetch_one(&pool)
            .await?;
        println!(
            "idle tick (nothing due): {:.2} ms; with the collateral check of {in_window} primary slots in the window: {:.2} ms; slots stored now: {}",
            idle[1],
            idle[0],
            rows(pool.clone()).await?
        );
        Ok(())
    })
    .await
}

/// Seeds `n` one-year hourly contracts starting at `start` directly in SQL (one buyer, one prover,
/// one offer; quotes, contracts and one block each), funded for their first escrow window.
async fn seed_contracts(pool: &PgPool, n: usize, start: chrono::DateTime<Utc>) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let buyer = uuid::Uuid::new_v4();
    let prover = uuid::Uuid::new_v4();
    let n = i64::try_from(n)?;
    sqlx::query("INSERT INTO accounts (id, name, role) VALUES ($1, 'bench buyer', 'buyer'), ($2, 'bench prover', 'prover')")
        .bind(buyer)
        .bind(prover)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO ledger_accounts (owner_id, kind) SELECT a, k FROM unnest($1::uuid[]) a, unnest(ARRAY['available', 'escrow', 'bonded']) k")
        .bind(vec![buyer, prover])
        .execute(&mut *tx)
        .await?;
    // The buyer funds every escrow window; the prover's stake covers its slots in the collateral
    // window (10,000 contracts x 24 slots x 0.01 x 2), as a purchase would have required.
    let prover_account = pcx_domain::AccountId(prover);
    for entry in [
        pcx_domain::JournalEntry::deposit(pcx_domain::AccountId(buyer), pcx_domain::Money::parse("10000000")?, "bench")?,
        pcx_domain::JournalEntry::deposit(prover_account, pcx_domain::Money::parse("100000")?, "bench")?,
        pcx_domain::JournalEntry::internal(
            pcx_domain::EntryKind::Stake,
            prover_account,
            pcx_domain::AccountKind::Available,
            pcx_domain::AccountKind::Bonded,
            pcx_domain::Money::parse("100000")?,
            "bench stake",
        )?,
    ] {
        crate::store::ledger::post(&mut tx, &entry).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let offer: i64 = sqlx::query_scalar(
        "INSERT INTO offers (prover_id, system, circuit, size_log2, deadline_secs, window_start, window_end, proofs_per_hour, price_per_proof)
         VALUES ($1, 'groth16-bn254', 'hash-chain', 12, 600, $2, $2 + interval '400 days', 100000, 0.01) RETURNING id",
    )
    .bind(prover)
    .bind(start - chrono::Duration::hours(1))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO quotes (id, buyer_id, request, body, allocation, valid_until)
         SELECT md5('q' || g)::uuid, $1, '{}', '{}', '[]', now() FROM generate_series(1, $2) g",
    )
    .bind(buyer)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO contracts (id, buyer_id, quote_id, system, circuit, size_log2, deadline_secs, starts_at, ends_at, every_secs,
                                proofs_per_slot, redundancy, slot_count, price_per_proof, discount_bps, total, fee, escrow_locked,
                                status, created_at, materialise_at, escrow_until, escrow_next_at)
         SELECT md5('c' || g)::uuid, $1, md5('q' || g)::uuid, 'groth16-bn254', 'hash-chain', 12, 600, $2, $2 + interval '365 days',
                3600, 1, 0, 8760, 0.01, 0, 87.6, 0.876, 0, 'active', now(), $2, 0, $2
           FROM generate_series(1, $3) g",
    )
    .bind(buyer)
    .bind(start)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO contract_blocks (contract_id, block_no, first_slot, end_slot, starts_at, ends_at, primary_offer_id,
                                      primary_prover_id, backup_offer_ids, backup_prover_ids, price_per_proof)
         SELECT md5('c' || g)::uuid, 0, 0, 8760, $1, $1 + interval '365 days', $2, $3, '{}', '{}', 0.01
           FROM generate_series(1, $4) g",
    )
    .bind(start)
    .bind(offer)
    .bind(prover)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Drives GETs of `url` from `clients` tasks for `duration`.
async fn hammer(http: &reqwest::Client, url: String, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = http.get(&url).send().await?;
                anyhow::ensure!(response.status() == 200, "GET answered {}", response.status());
                response.bytes().await?;
                latencies.push(micros_since(t));
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    collect(tasks, started).await
}

/// `pcx bench oracle` (see the module docs).
pub async fn oracle(args: OracleBenchArgs) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let duration = Duration::from_secs(args.seconds.max(1));
    let mut serve = args.serve.clone();
    serve.oracle.oracle_tick_ms = 0;
    // The provers only post offers; no agent runs.
    serve.market.offer_capacity_check = crate::config::OfferCapacityCheck::Off;
    let sources = args.sources.max(1);
    let subscribers = args.subscribers.max(1);
    with_scratch_database(&args.serve.clone(), "pcx_bench", 16, |pool, description| async move {
        println!("pcx bench oracle: {clients} readers, {sources} sources per round, {subscribers} SSE subscribers, database {description}");
        let served = Served::start(&pool, &serve, clients).await?;
        let feed = "groth16-bn254:hash-chain:12:600";
        let now = Utc::now();
        for i in 0..3 {
            let (_, prover) = served.account(&format!("prover-{i}"), "prover", "1000").await?;
            served.post("/v1/provers/stake", Some(&prover), json!({"amount": "1000"})).await?;
            served
                .post(
                    "/v1/offers",
                    Some(&prover),
                    json!({"proof_class": {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 12, "deadline_secs": 600},
                           "window_start": (now - chrono::Duration::hours(1)).to_rfc3339(),
                           "window_end": (now + chrono::Duration::days(30)).to_rfc3339(),
                           "proofs_per_hour": 10, "price_per_proof": format!("1.0{i}")}),
                )
                .await?;
        }
        let state = served.state.clone();
        crate::service::oracle::tick(&state, Utc::now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let latest_url = format!("{}/v1/oracle/prices/latest?feed={feed}", served.base);
        let body = served.http.get(&latest_url).send().await?.bytes().await?;
        anyhow::ensure!(body.len() > 100, "no round to read");

        // A bare axum handler serving the same bytes, for the reference.
        let bare_body = body.clone();
        let bare = axum::Router::new().route(
            "/v1/oracle/prices/latest",
            axum::routing::get(move || {
                let body = bare_body.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bare_url = format!("http://{}/v1/oracle/prices/latest?feed={feed}", listener.local_addr()?);
        let bare_server = tokio::spawn(async move { axum::serve(listener, bare).await });
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
        let ours = hammer(&http, latest_url, clients, duration).await?;
        let reference = hammer(&http, bare_url, clients, duration).await?;
        bare_server.abort();
        println!("{:<40} {:>10} {:>10} {:>10}", "", "reads/s", "p50 ms", "p99 ms");
        for (name, f) in [("GET /v1/oracle/prices/latest (pcx)", &ours), ("bare axum handler, same body", &reference)] {
            println!("{name:<40} {:>10.0} {:>10.2} {:>10.2}", f.rate(), f.quantile_ms(0.5), f.quantile_ms(0.99));
        }
        println!("ratio pcx/bare: {:.3}", ours.rate() / reference.rate());

        // Aggregation (and signing) of a round with `sources` sources.
        let mut rng = rand::thread_rng();
        let quotes: Vec<pcx_oracle::aggregate::Quote> = (0..sources)
            .map(|i| pcx_oracle::aggregate::Quote {
                source: format!("ask:{i}"),
                owner: format!("prover:{}", i % (sources / 2).max(1)),
                kind: if i % 5 == 0 { pcx_oracle::aggregate::SourceKind::Executed } else { pcx_oracle::aggregate::SourceKind::Ask },
                price: rust_decimal::Decimal::new(rng.gen_range(900_000..1_200_000), 6),
                observed_at: now,
                available_until: None,
                backing: None,
            })
            .collect();
        let params = pcx_oracle::aggregate::Params::default();
        let mut timings = Vec::new();
        let started = Instant::now();
        for round_id in 1..=50u64 {
            let t = Instant::now();
            let e = pcx_oracle::aggregate::estimate(quotes.clone(), pcx_oracle::aggregate::Deliveries::default(), now, &params);
            let values = pcx_oracle::round::RoundValues {
                feed_id: feed.into(),
                round_id,
                price: e.price,
                conf: e.conf,
                quantiles: e.quantiles,
                status: pcx_oracle::round::FeedStatus::Ok,
                published_at: now,
                valid_until: now,
                n_sources: u16::try_from(e.n_sources).unwrap_or(u16::MAX),
                methodology_version: pcx_oracle::METHODOLOGY_VERSION,
            };
            state.oracle.signer.sign(&values)?;
            timings.push(micros_since(t));
        }
        let aggregation = Figures::from_latencies(timings, started.elapsed());
        println!(
            "aggregation + EIP-712 signing of a round with {sources} sources: p50 {:.2} ms, p99 {:.2} ms",
            aggregation.quantile_ms(0.5),
            aggregation.quantile_ms(0.99)
        );

        // SSE fan-out: `subscribers` connections, one new round.
        let sse_client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
        let mut streams = Vec::new();
        for _ in 0..subscribers {
            streams.push(sse_client.get(format!("{}/v1/oracle/stream", served.base)).send().await?);
        }
        let (ready_tx, ready_rx) = tokio::sync::mpsc::channel::<Instant>(subscribers);
        for mut response in streams {
            let ready = ready_tx.clone();
            tokio::spawn(async move {
                let mut seen = String::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                    if seen.contains("event: round") {
                        let _ = ready.send(Instant::now()).await;
                        return;
                    }
                }
            });
        }
        drop(ready_tx);
        tokio::time::sleep(Duration::from_millis(500)).await;
        // An in-process subscriber: its first event marks the moment of publication.
        let mut first = served.state.oracle.subscribe();
        // A status change publishes a new round of the feed at the next tick.
        served.post("/v1/admin/oracle/halt", Some(&served.admin), json!({"feed_id": feed, "halted": true})).await?;
        let ticked = tokio::spawn({
            let state = served.state.clone();
            async move { crate::service::oracle::tick(&state, Utc::now()).await }
        });
        first.recv().await?;
        let published_at = Instant::now();
        let mut ready_rx = ready_rx;
        let mut received = Vec::new();
        while let Ok(Some(at)) = tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            received.push(at);
            if received.len() == subscribers {
                break;
            }
        }
        ticked.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        let last = received.iter().max().copied().unwrap_or(published_at);
        println!(
            "SSE: {} of {subscribers} subscribers had the new round {:.1} ms after it was published",
            received.len(),
            last.saturating_duration_since(published_at).as_secs_f64() * 1000.0
        );
        served.stop().await?;
        Ok(())
    })
    .await
}

/// Options of `pcx bench circom`.
#[derive(Debug, Clone, clap::Args)]
pub struct CircomBenchArgs {
    /// Folder with `<name>.r1cs`, `<name>.wasm`, `<name>.zkey` and `input.json` (as the fixtures
    /// in `prover-pool/tests/fixtures/circom/<name>/`).
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// The files' base name (default: the folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The snarkjs npm package to compare with (default: the fixtures' node_modules/snarkjs).
    #[arg(long)]
    pub snarkjs: Option<std::path::PathBuf>,
    /// Measured runs (medians are printed), after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Server settings (database, etc.) for the registration timing.
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// `pcx bench circom`: our witness and proof for a circom circuit next to snarkjs' prover on the
/// same machine, circuit and input (ratio ours/snarkjs), and how long registration takes
/// (`POST /v1/circuits` on an in-process exchange: upload, checks, sample proof).
pub async fn circom(args: CircomBenchArgs) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args.dir.file_name().and_then(|n| n.to_str()).context("--name: the folder has no name")?.to_owned(),
    };
    let path = |file: &str| args.dir.join(file);
    let read = |file: &str| std::fs::read(path(file)).with_context(|| format!("reading {}", path(file).display()));
    let (r1cs, wasm, zkey) = (read(&format!("{name}.r1cs"))?, read(&format!("{name}.wasm"))?, read(&format!("{name}.zkey"))?);
    let input_bytes = read("input.json")?;
    let input: serde_json::Value = serde_json::from_slice(&input_bytes).context("input.json is not JSON")?;
    let shape = pcx_prover_pool::circom::CircomCircuit::load(&r1cs, &wasm)?.shape();
    let reps = args.reps.max(1);
    println!(
        "pcx bench circom: {name} ({} constraints, {} public signals, 2^{}), {reps} runs after a warm-up, {} threads",
        shape.constraints,
        shape.public_signals,
        shape.size_log2,
        rayon_threads()
    );
    let (r, w, z, i) = (r1cs.clone(), wasm.clone(), zkey.clone(), input.clone());
    let ours = tokio::task::spawn_blocking(move || {
        pcx_prover_pool::circom::bench::measure(&r, &w, &z, &i, &pcx_prover_pool::msm::ArkworksMsm, reps)
    })
    .await??;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("  load      r1cs + wasm {:.1} ms, zkey {:.1} ms", ms(ours.load), ms(ours.load_zkey));
    let snarkjs = args.snarkjs.clone().unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prover-pool/tests/fixtures/circom/node_modules/snarkjs")
    });
    let wasm_path = path(&format!("{name}.wasm"));
    let zkey_path = path(&format!("{name}.zkey"));
    let input_path = path("input.json");
    let reference = tokio::task::spawn_blocking(move || {
        pcx_prover_pool::circom::bench::reference(&snarkjs, &wasm_path, &zkey_path, &input_path, reps)
    })
    .await?;
    match reference {
        Ok(theirs) => {
            let ratio = |ours: f64, theirs: f64| if theirs > 0.0 { ours / theirs } else { f64::NAN };
            println!(
                "  witness   ours {:8.1} ms   snarkjs {:8.1} ms   ratio {:.2}",
                ms(ours.witness),
                theirs.witness_ms,
                ratio(ms(ours.witness), theirs.witness_ms)
            );
            println!(
                "  prove     ours {:8.1} ms   snarkjs {:8.1} ms   ratio {:.2}  (ours / snarkjs groth16 prove; below 1 is faster)",
                ms(ours.prove),
                theirs.prove_ms,
                ratio(ms(ours.prove), theirs.prove_ms)
            );
            let full = ms(ours.witness) + ms(ours.prove);
            println!(
                "  fullprove ours {:8.1} ms   snarkjs {:8.1} ms   ratio {:.2}",
                full,
                theirs.fullprove_ms,
                ratio(full, theirs.fullprove_ms)
            );
        }
        Err(err) => {
            println!("  witness   ours {:8.1} ms", ms(ours.witness));
            println!("  prove     ours {:8.1} ms   (no snarkjs reference: {err})", ms(ours.prove));
        }
    }
    let mut serve = args.serve.clone();
    serve.settlement.tick_ms = 1000;
    with_scratch_database(&args.serve.clone(), "pcx_bench", 4, |pool, _| async move {
        let served = Served::start(&pool, &serve, 2).await?;
        let (_, buyer) = served.account("rollup", "buyer", "1").await?;
        let boundary = "pcx-bench-boundary";
        let mut body = Vec::new();
        for (part, bytes) in [("name", name.as_bytes()), ("r1cs", &r1cs[..]), ("wasm", &wasm[..]), ("zkey", &zkey[..]), ("sample_input", &input_bytes[..])] {
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"{part}\"\r\n\r\n").as_bytes());
            body.extend_from_slice(bytes);
            body.extend(b"\r\n");
        }
        body.extend(format!("--{boundary}--\r\n").as_bytes());
        let started = Instant::now();
        let response = served
            .http
            .post(format!("{}/v1/circuits", served.base))
            .bearer_auth(&buyer)
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await?;
        let took = started.elapsed();
        let status = response.status();
        let view: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.as_u16() == 201, "registration answered {status}: {view}");
        println!(
            "  register  {:8.1} ms   (POST /v1/circuits, {} bytes; the exchange's checks and sample proof: {} ms)",
            ms(took),
            r1cs.len() + wasm.len() + zkey.len(),
            view["check_ms"]
        );
        served.stop().await
    })
    .await
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

