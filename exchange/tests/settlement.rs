//! Settlement end to end: the real `pcx serve` binary, real prover agents proving real Groth16
//! proofs (2^10), a primary that misses on purpose, and the exchange killed with `kill -9` in the
//! middle of the contract and kept down past several slots' deadlines. The agents come back by
//! themselves; every slot ends in one final state with a reason, each payment and slash happens
//! once, nobody is slashed for the time the exchange was down, and the ledger balances. (The rules
//! one by one, on a clock the tests move, are in `settlement_rules.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{class_with, offer_class, prover_with_key, Client};
use pcx_prover_pool::agent::Fault;
use rust_decimal::Decimal;
use serde_json::Value;

const EVERY: i64 = 10;
const DEADLINE: u32 = 12;
const SLOTS: i64 = 7;

/// Runs a prover agent in-process until the returned sender is dropped or fired. The exchange
/// runs with production keys (made from OS randomness): its agents download them into a folder of
/// their own, never into the development keys the other tests share.
fn agent(base: &str, api_key: &str, fault: Option<Fault>) -> tokio::sync::oneshot::Sender<()> {
    common::run_test_agent(base, api_key, fault, agent_keys_dir())
}

fn agent_keys_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::temp_dir().join(format!("pcx-settlement-agents-{}", std::process::id()))).clone()
}

struct Exchange {
    child: Child,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_exchange(database_url: &str, port: u16) -> Exchange {
    let child = common::pcx_serve(port)
        .env("DATABASE_URL", database_url)
        .env("PCX_JWT_SECRET", common::JWT_SECRET)
        .env("PCX_MIN_CADENCE_SECS", "10")
        .env("PCX_SETTLEMENT_TICK_MS", "200")
        .env("PCX_OUTAGE_AFTER_SECS", "5")
        .env("PCX_ORACLE_TICK_MS", "0")
        .spawn()
        .unwrap();
    Exchange { child }
}

async fn wait_up(client: &Client) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < give_up {
        if let Ok(r) = client.http.get(client.url("/health")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the exchange did not come up");
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

fn at(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn kill_9_and_downtime_mid_contract_cost_nobody_money_and_agents_come_back_by_themselves() {
    let (pool, url) = common::fresh_database_with_url().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
    let mut exchange = start_exchange(&url, port);
    wait_up(&client).await;

    // Mallory is the cheaper primary and misses on purpose; bob is her backup.
    let class = class_with(10, DEADLINE);
    let (mallory, _, mallory_key) = prover_with_key(&client, "mallory", "1000").await;
    let (bob, _, bob_key) = prover_with_key(&client, "bob", "1000").await;
    for (key, price) in [(&mallory_key, "0.008"), (&bob_key, "0.01")] {
        offer_class(&client, &client.token(key).await, class.clone(), price, 360, 2).await;
    }
    let (buyer_id, buyer) = client.account("rollup", "buyer").await;
    client.deposit(&buyer_id, "10").await;
    let _m = agent(&client.base, &mallory_key, Some(Fault::Miss));
    let _b = agent(&client.base, &bob_key, None);
    // Let the agents benchmark and register before the contract starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let contract = common::buy_short_contract(&client, &buyer, &class, Utc::now() + chrono::Duration::seconds(6), EVERY, SLOTS, 1).await;

    // Bob delivers slot 0 after mallory sits on it; then the exchange dies without warning and
    // stays down for 25 s, past the deadlines of the slots opening meanwhile.
    let give_up = Instant::now() + Duration::from_secs(90);
    loop {
        let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM slots WHERE state = 'delivered'").fetch_one(&pool).await.unwrap();
        if delivered >= 1 {
            break;
        }
        assert!(Instant::now() < give_up, "no delivery before the crash");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exchange.child.kill().unwrap(); // SIGKILL
    exchange.child.wait().unwrap();
    let down_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(25)).await;
    let up_at = Utc::now();
    drop(exchange);
    let _exchange = start_exchange(&url, port);
    wait_up(&client).await;

    let give_up = Instant::now() + Duration::from_secs(120);
    let list = loop {
        let r = client.get(&format!("/v1/contracts/{contract}/slots?limit={SLOTS}"), Some(&buyer)).await;
        let list = r.body["slots"].as_array().cloned().unwrap_or_default();
        if r.status == 200 && list.iter().all(|s| !matches!(s["state"].as_str(), Some("scheduled" | "proving"))) {
            break list;
        }
        assert!(Instant::now() < give_up, "slots not settled in time: {}", r.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Every slot ends once, with a reason: delivered by bob, or refunded when the outage took it.
    let mut delivered = 0;
    for slot in &list {
        let (state, reason) = (slot["state"].as_str().unwrap(), slot["reason"].as_str().unwrap());
        let (opens, deadline) = (at(&slot["opens_at"]), at(&slot["deadline"]));
        match state {
            "delivered" => {
                assert_eq!((reason, slot["delivered_by"].as_str()), ("delivered_by_backup", Some(bob.as_str())), "{slot}");
                delivered += 1;
            }
            "missed" => {
                assert!(matches!(reason, "exchange_late" | "exchange_down"), "only the outage takes slots: {slot}");
                assert!(deadline > down_at && opens < up_at, "a slot the outage could not touch: {slot}");
            }
            other => panic!("unexpected final state {other}: {slot}"),
        }
    }
    assert!(delivered >= 3, "bob delivered before the crash and after the restart: {list:?}");
    let after_restart = list.iter().filter(|s| s["state"] == "delivered" && at(&s["opens_at"]) > up_at).count();
    assert!(after_restart >= 1, "the agents came back and delivered after the restart: {list:?}");

    // Exactly once: each slot paid or refunded once; bob paid for each slot he delivered.
    let settlements: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM journal_entries WHERE kind IN ('slot_payment', 'refund') GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let count = |kind: &str| settlements.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
    assert_eq!(count("slot_payment"), delivered);
    assert_eq!(count("slot_payment") + count("refund"), SLOTS);
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT reference FROM journal_entries GROUP BY reference, kind HAVING count(*) > 1
                                 AND kind IN ('slot_payment', 'refund', 'slash', 'step_in_bonus')) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(duplicates, 0);

    // Mallory is slashed once for every slot she sat on while the exchange was up, and for nothing
    // else: no job that lived through the outage was charged.
    let slashed: Vec<(i64, uuid::Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT j.n, j.prover_id, j.offered_at, j.finished_at FROM jobs j
           JOIN journal_entries je ON je.reference = 'slash:' || j.id AND je.kind = 'slash'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (n, prover, offered, failed) in &slashed {
        assert_eq!(prover.to_string(), mallory, "slot {n}");
        assert!(*failed <= down_at || *offered >= up_at, "slot {n}: a job that lived through the outage was slashed");
    }
    for slot in &list {
        let n = slot["n"].as_i64().unwrap();
        let charged = slashed.iter().filter(|(m, ..)| *m == n).count();
        match slot["state"].as_str() {
            Some("delivered") => assert_eq!(charged, 1, "bob stepped in for mallory on slot {n}"),
            _ if slot["reason"] == "exchange_late" => assert_eq!(charged, 0, "slot {n} was never offered in time"),
            _ => assert!(charged <= 1, "slot {n}"),
        }
    }
    let summary = client.get("/v1/admin/ledger/summary", Some(&client.admin_token().await)).await;
    assert_eq!(summary.body["balanced"], true, "{}", summary.body);
    assert_eq!(dec(&summary.body["totals"]["escrow"]), Decimal::ZERO, "all escrow paid out or refunded");
}
