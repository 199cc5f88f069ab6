//! `pcx demo`: the whole market on this machine in a few minutes, with no configuration.
//!
//! It opens the embedded default database (a scratch database, dropped at the end), serves the
//! exchange with its settlement scheduler on 127.0.0.1, starts three prover agents in-process
//! (`alice` and `bob` honest, `mallory` told to miss as a testing aid), and a buyer that buys a
//! short-cadence forward with one backup per slot and posts every slot's input. It prints live
//! progress (slots delivered, failovers, slashes), then a summary (slots, payments, slashes,
//! balances, whether the ledger balances) and exits 0 when every slot settled and the ledger
//! balances.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;

use pcx_prover_pool::agent::{run_agent, AgentArgs, Fault};

use crate::config::ServeConfig;
use crate::inprocess::{with_scratch_database, Served};

/// Options of `pcx demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Slots in the forward contract.
    #[arg(long, default_value_t = 12)]
    pub slots: u32,
    /// Seconds between slots.
    #[arg(long, default_value_t = 5)]
    pub every_secs: u32,
    /// Circuit size (log2 of the constraint count).
    #[arg(long, default_value_t = 10)]
    pub size_log2: u8,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Exchange settings (database, keys, ...); the demo sets its own timings.
    #[command(flatten)]
    pub serve: ServeConfig,
}

struct Prover {
    name: &'static str,
    price: &'static str,
    fault: Option<Fault>,
}

const PROVERS: [Prover; 3] = [
    Prover { name: "mallory (misses on purpose)", price: "0.008", fault: Some(Fault::Miss) },
    Prover { name: "alice", price: "0.010", fault: None },
    Prover { name: "bob", price: "0.012", fault: None },
];

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut serve = args.serve.clone();
    serve.min_cadence_secs = serve.min_cadence_secs.min(args.every_secs).max(1);
    serve.settlement.tick_ms = 250;
    serve.settlement.ack_timeout_secs = 3;
    serve.settlement.lease_secs = 8;
    // The provers post their offers before their agents have benchmarked and heartbeat.
    serve.market.offer_capacity_check = crate::config::OfferCapacityCheck::Off;
    let db_config = args.serve.clone();
    with_scratch_database(&db_config, "pcx_demo", 16, |pool, description| async move {
        println!("pcx demo: database {description}");
        let served = Served::start(&pool, &serve, 8).await?;
        println!("exchange listening on {} (Swagger UI at {}/docs)", served.base, served.base);
        let outcome = market(&served, &pool, &args).await;
        served.stop().await?;
        outcome
    })
    .await
}

async fn market(served: &Served, pool: &PgPool, args: &DemoArgs) -> anyhow::Result<()> {
    let class = json!({"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": args.size_log2, "deadline_secs": 30});
    let units = 3600u32.div_ceil(args.every_secs.max(1));
    let now = Utc::now();
    let mut accounts = Vec::new();
    let (stop_agents, agents_stopped) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    for p in &PROVERS {
        let (id, bearer, key) = served.account_with_key(p.name, "prover", "1000").await?;
        served.post("/v1/provers/stake", Some(&bearer), json!({"amount": "600"})).await?;
        served
            .post(
                "/v1/offers",
                Some(&bearer),
                json!({"proof_class": class, "window_start": (now - chrono::Duration::hours(1)).to_rfc3339(),
                       "window_end": (now + chrono::Duration::days(2)).to_rfc3339(),
                       "proofs_per_hour": units, "price_per_proof": p.price}),
            )
            .await?;
        println!("prover {:<28} staked 600, offers {units} proofs/h at {}", p.name, p.price);
        let mut agent = AgentArgs::new(served.base.clone(), key);
        agent.sizes = vec![args.size_log2];
        agent.fault = p.fault;
        agent.claim_wait_secs = 5;
        // The agents keep the exchange's keys they download apart from the exchange's own folder.
        agent.keys_dir = Some(args.serve.settlement.resolved_keys_dir().join("demo-agents"));
        let mut stopped = agents_stopped.clone();
        agents.push(tokio::spawn(run_agent(agent, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })));
        accounts.push((p.name, id, bearer));
    }

    // The agents download the exchange's keys and benchmark themselves first; start the forward after that.
    let start = Utc::now() + chrono::Duration::seconds(20);
    let end = start + chrono::Duration::seconds(i64::from(args.every_secs) * i64::from(args.slots));
    let (buyer_id, buyer) = served.account("rollup (buyer)", "buyer", "100").await?;
    let quote = served
        .post(
            "/v1/quotes",
            Some(&buyer),
            json!({"proof_class": class, "schedule": {"start": start.to_rfc3339(), "end": end.to_rfc3339(),
                   "every_secs": args.every_secs}, "redundancy": 1}),
        )
        .await?;
    let contract = served.post("/v1/contracts", Some(&buyer), json!({"quote_id": quote["quote_id"]})).await?;
    let contract_id = contract["contract_id"].as_str().context("contract_id")?.to_owned();
    println!(
        "buyer bought {} slots every {} s from {} at {} per proof (escrow {}); primary: mallory, backup: alice",
        contract["slot_count"],
        args.every_secs,
        start.format("%H:%M:%S"),
        contract["price_per_proof"].as_str().unwrap_or("?"),
        contract["escrow_locked"].as_str().unwrap_or("?")
    );
    for n in 0..args.slots {
        let seed: u64 = rand::thread_rng().gen();
        served
            .put(&format!("/v1/contracts/{contract_id}/slots/{n}/input"), Some(&buyer), json!({"public_input": seed.to_string()}))
            .await?;
    }
    println!("buyer posted the input of every slot; watching settlement...\n");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut last = String::new();
    let finished = loop {
        let (settled, delivered, missed, failovers, slashed): (i64, i64, i64, i64, rust_decimal::Decimal) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE settled_at IS NOT NULL), count(*) FILTER (WHERE state = 'delivered'),
                    count(*) FILTER (WHERE state = 'missed'),
                    (SELECT count(*) FROM jobs WHERE contract_id = $1 AND state = 'failed'),
                    (SELECT coalesce(-sum(p.amount), 0) FROM journal_entries e JOIN postings p ON p.entry_id = e.id
                       JOIN ledger_accounts la ON la.id = p.ledger_account_id
                      WHERE e.kind = 'slash' AND la.kind = 'bonded')
               FROM slots WHERE contract_id = $1",
        )
        .bind(uuid::Uuid::parse_str(&contract_id)?)
        .fetch_one(pool)
        .await?;
        let line = format!(
            "[{}] slots settled {settled}/{} | delivered {delivered} | missed {missed} | failovers {failovers} | slashed {}",
            Utc::now().format("%H:%M:%S"),
            args.slots,
            slashed.normalize()
        );
        if line[11..] != last.get(11..).unwrap_or_default()[..] {
            println!("{line}");
            last = line;
        }
        if settled == i64::from(args.slots) {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = stop_agents.send(true);
    for agent in agents {
        if let Ok(Err(err)) = agent.await {
            tracing::warn!(%err, "agent ended with an error");
        }
    }

    let slots = served.get(&format!("/v1/contracts/{contract_id}/slots?limit={}", args.slots), Some(&buyer)).await?;
    let names: Vec<(String, &str)> = accounts.iter().map(|(name, id, _)| (id.clone(), *name)).collect();
    let name_of = |id: &Value| {
        id.as_str().and_then(|id| names.iter().find(|(known, _)| known == id)).map_or("-", |(_, name)| *name)
    };
    println!("\n{:>4}  {:<10} {:<26} {:<28} failed jobs", "slot", "state", "reason", "delivered by");
    for slot in slots["slots"].as_array().into_iter().flatten() {
        println!(
            "{:>4}  {:<10} {:<26} {:<28} {}",
            slot["n"].as_u64().unwrap_or(0),
            slot["state"].as_str().unwrap_or("?"),
            slot["reason"].as_str().unwrap_or("-"),
            name_of(&slot["delivered_by"]),
            slot["failed_attempts"]
        );
    }
    let (payments, slashes): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE kind = 'slot_payment'), count(*) FILTER (WHERE kind = 'slash') FROM journal_entries",
    )
    .fetch_one(pool)
    .await?;
    println!("\npayments: {payments}, slashes: {slashes}\n");
    println!("{:<28} {:>12} {:>12} {:>12}", "account", "available", "escrow", "bonded");
    for (name, _, bearer) in accounts.iter().map(|(n, i, b)| (*n, i, b)).chain(std::iter::once(("rollup (buyer)", &buyer_id, &buyer))) {
        let b = served.get("/v1/accounts/me/balances", Some(bearer)).await?;
        println!(
            "{name:<28} {:>12} {:>12} {:>12}",
            b["available"].as_str().unwrap_or("?"),
            b["escrow"].as_str().unwrap_or("?"),
            b["bonded"].as_str().unwrap_or("?")
        );
    }
    let summary = served.get("/v1/admin/ledger/summary", Some(&served.admin)).await?;
    println!(
        "\nexchange fees {}, insurance {}; ledger balanced: {}",
        summary["totals"]["fees"].as_str().unwrap_or("?"),
        summary["totals"]["insurance"].as_str().unwrap_or("?"),
        summary["balanced"]
    );
    anyhow::ensure!(finished, "not every slot settled within {} s", args.timeout_secs);
    anyhow::ensure!(summary["balanced"] == json!(true), "the ledger does not balance");
    println!("demo finished: every slot settled, ledger balanced");
    Ok(())
}
