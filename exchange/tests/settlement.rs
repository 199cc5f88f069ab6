//! Settlement end to end over HTTP with real prover agents proving real Groth16 proofs (2^10):
//! on-time delivery, a primary that misses, an invalid proof, and a `kill -9` of the exchange in
//! the middle of a contract with agents that come back by themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{class_with, offer_class, prover_with_key, rfc, spawn_app, Client};
use pcx_prover_pool::agent::{run_agent, AgentArgs, Fault};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const EVERY: i64 = 10;

fn class() -> Value {
    class_with(10, 30)
}

/// Runs a prover agent in-process until the returned sender is dropped or fired.
fn agent(base: &str, api_key: &str, fault: Option<Fault>) -> tokio::sync::oneshot::Sender<()> {
    let mut args = AgentArgs::new(base, api_key);
    args.sizes = vec![10];
    args.fault = fault;
    args.claim_wait_secs = 2;
    args.keys_dir = Some(common::common_keys_dir());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run_agent(args, async move {
        let _ = stopped.await;
    }));
    stop
}

/// A prover with stake and an offer of 2^10 proofs with a 30 s deadline; returns (id, api key).
async fn offering_prover(client: &Client, name: &str, price: &str) -> (String, String) {
    let (id, token, key) = prover_with_key(client, name, "1000").await;
    offer_class(client, &token, class(), price, 360, 2).await;
    (id, key)
}

/// Buys `slots` slots every 10 s starting `lead` seconds from now; returns the contract id.
async fn buy(client: &Client, buyer: &str, slots: i64, redundancy: u8, lead: i64) -> String {
    let start = Utc::now() + chrono::Duration::seconds(lead);
    let end = start + chrono::Duration::seconds(EVERY * slots);
    let quote = client
        .post(
            "/v1/quotes",
            Some(buyer),
            json!({"proof_class": class(), "schedule": {"start": rfc(start), "end": rfc(end), "every_secs": EVERY},
                   "redundancy": redundancy}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    let bought = client.post("/v1/contracts", Some(buyer), json!({"quote_id": quote.body["quote_id"]})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    bought.body["contract_id"].as_str().unwrap().to_owned()
}

async fn put_input(client: &Client, buyer: &str, contract: &str, n: i64, seed: &str) {
    let r = client.put(&format!("/v1/contracts/{contract}/slots/{n}/input"), Some(buyer), json!({"public_input": seed})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Waits until every slot of the contract is settled; returns the slots.
async fn settled(client: &Client, buyer: &str, contract: &str, slots: i64, within: Duration) -> Vec<Value> {
    let give_up = Instant::now() + within;
    loop {
        let r = client.get(&format!("/v1/contracts/{contract}/slots?limit={slots}"), Some(buyer)).await;
        if r.status == 200 {
            let list = r.body["slots"].as_array().unwrap().clone();
            if list.iter().all(|s| !matches!(s["state"].as_str(), Some("scheduled" | "proving"))) {
                return list;
            }
            assert!(Instant::now() < give_up, "slots not settled in time: {}", r.body);
        } else {
            assert!(Instant::now() < give_up, "slots unreadable: {} {}", r.status, r.body);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn on_time_proofs_are_verified_paid_and_readable_and_a_slot_without_input_is_unused() {
    let app = spawn_app().await;
    let (prover_id, key) = offering_prover(&app, "alice", "0.01").await;
    let (buyer_id, buyer) = app.account("rollup", "buyer").await;
    app.deposit(&buyer_id, "10").await;
    let _alice = agent(&app.base, &key, None);
    let contract = buy(&app, &buyer, 3, 0, 8).await;
    put_input(&app, &buyer, &contract, 0, "42").await;
    put_input(&app, &buyer, &contract, 1, "21888242871839275222246405745257275088548364400416034343698204186575808495616").await;
    app.put(&format!("/v1/contracts/{contract}/slots/2/input"), Some(&buyer), json!({"public_input": "-1"}))
        .await
        .assert_error(422, "invalid_input");
    app.put(&format!("/v1/contracts/{contract}/slots/9/input"), Some(&buyer), json!({"public_input": "1"}))
        .await
        .assert_error(404, "not_found");

    let slots = settled(&app, &buyer, &contract, 3, Duration::from_secs(120)).await;
    for slot in &slots[..2] {
        assert_eq!(slot["state"], "delivered", "{slot}");
        assert_eq!(slot["reason"], "delivered_by_primary");
        assert_eq!(slot["delivered_by"], prover_id.as_str());
    }
    assert_eq!(slots[2]["state"], "unused");
    assert_eq!(slots[2]["reason"], "no_input");

    // The proof is a real Groth16 proof of the posted input: verify it here with ark-groth16.
    let proof = app.get(&format!("/v1/contracts/{contract}/slots/0/proof"), Some(&buyer)).await;
    assert_eq!(proof.status, 200, "{}", proof.body);
    assert_eq!(proof.body["public_inputs"][0], "42");
    let inputs: Vec<_> = proof.body["public_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| pcx_prover_pool::field::parse_field_element(v.as_str().unwrap()).unwrap())
        .collect();
    let decoded = pcx_prover_pool::encoding::decode_proof(proof.body["proof"].as_str().unwrap()).unwrap();
    let keys = pcx_prover_pool::keys::KeyStore::new(common::common_keys_dir());
    let pvk = keys.verifying_key(10).unwrap();
    assert!(pcx_prover_pool::groth16::verify(&pvk, &inputs, &decoded));
    assert!(!pcx_prover_pool::groth16::verify(&pvk, &[inputs[1], inputs[0]], &decoded));
    assert_eq!(proof.body["points"]["a"].as_array().unwrap().len(), 2);
    app.get(&format!("/v1/contracts/{contract}/slots/2/proof"), Some(&buyer)).await.assert_error(409, "slot_not_delivered");
    app.put(&format!("/v1/contracts/{contract}/slots/0/input"), Some(&buyer), json!({"public_input": "7"}))
        .await
        .assert_error(409, "slot_already_open");

    // Money: three slots paid from escrow (the unused one too), less the 1% fee.
    let prover_balances = app.get("/v1/accounts/me/balances", Some(&app.token(&key).await)).await.body;
    assert_eq!(dec(&prover_balances["available"]), Decimal::new(297, 4));
    let buyer_balances = app.balances(&buyer).await;
    assert_eq!(dec(&buyer_balances["available"]), Decimal::new(997, 2));
    assert_eq!(dec(&buyer_balances["escrow"]), Decimal::ZERO);
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true, "{summary}");
    assert_eq!(dec(&summary["totals"]["fees"]), Decimal::new(3, 4));
    let reputation = app.get(&format!("/v1/provers/{prover_id}/reputation"), None).await;
    assert_eq!(reputation.body["classes"][0]["delivered"], 2, "{}", reputation.body);
}

#[tokio::test]
async fn a_primary_that_misses_is_slashed_the_backup_delivers_and_the_buyer_is_compensated() {
    let app = spawn_app().await;
    let (mallory, mallory_key) = offering_prover(&app, "mallory", "0.008").await;
    let (bob, bob_key) = offering_prover(&app, "bob", "0.01").await;
    let (buyer_id, buyer) = app.account("rollup", "buyer").await;
    app.deposit(&buyer_id, "10").await;
    let _m = agent(&app.base, &mallory_key, Some(Fault::Miss));
    let _b = agent(&app.base, &bob_key, None);
    let contract = buy(&app, &buyer, 2, 1, 8).await;
    for n in 0..2 {
        put_input(&app, &buyer, &contract, n, &(1000 + n).to_string()).await;
    }
    let slots = settled(&app, &buyer, &contract, 2, Duration::from_secs(120)).await;
    for slot in &slots {
        assert_eq!(slot["state"], "delivered", "{slot}");
        assert_eq!(slot["reason"], "delivered_by_backup");
        assert_eq!(slot["delivered_by"], bob.as_str());
        assert_eq!(slot["primary"], mallory.as_str());
        assert_eq!(slot["failed_attempts"], 1);
    }
    // Locked price 0.008 per slot; each miss slashes 2 x 0.008: half to the buyer, a quarter to the
    // backup that stepped in, a quarter to insurance.
    let mallory_balances = app.get("/v1/accounts/me/balances", Some(&app.token(&mallory_key).await)).await.body;
    assert_eq!(dec(&mallory_balances["bonded"]), Decimal::new(999_968, 3));
    let buyer_balances = app.balances(&buyer).await;
    assert_eq!(dec(&buyer_balances["available"]), Decimal::from(10), "paid 0.016, compensated 0.016");
    let bob_balances = app.get("/v1/accounts/me/balances", Some(&app.token(&bob_key).await)).await.body;
    assert_eq!(dec(&bob_balances["available"]), Decimal::new(2384, 5), "2 x (0.008 - 1% fee) + 2 x 0.004 bonus");
    let failures: Vec<String> = sqlx::query_scalar("SELECT failure FROM jobs WHERE state = 'failed' ORDER BY n")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(failures, ["lease_expired", "lease_expired"]);
    let reputation = app.get(&format!("/v1/provers/{mallory}/reputation"), None).await;
    assert_eq!(reputation.body["classes"][0]["missed"], 2);
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn an_invalid_proof_is_rejected_and_slashed_more() {
    let app = spawn_app().await;
    let (_, ivan_key) = offering_prover(&app, "ivan", "0.008").await;
    let (bob, bob_key) = offering_prover(&app, "bob", "0.01").await;
    let (buyer_id, buyer) = app.account("rollup", "buyer").await;
    app.deposit(&buyer_id, "10").await;
    let _i = agent(&app.base, &ivan_key, Some(Fault::Invalid));
    let _b = agent(&app.base, &bob_key, None);
    let contract = buy(&app, &buyer, 1, 1, 8).await;
    put_input(&app, &buyer, &contract, 0, "777").await;
    let slots = settled(&app, &buyer, &contract, 1, Duration::from_secs(120)).await;
    assert_eq!(slots[0]["state"], "delivered", "{}", slots[0]);
    assert_eq!(slots[0]["delivered_by"], bob.as_str());
    let failure: String = sqlx::query_scalar("SELECT failure FROM jobs WHERE state = 'failed'").fetch_one(&app.db).await.unwrap();
    assert_eq!(failure, "invalid_proof");
    let ivan = app.get("/v1/accounts/me/balances", Some(&app.token(&ivan_key).await)).await.body;
    assert_eq!(dec(&ivan["bonded"]), Decimal::new(999_968, 3), "2 x 2 x 0.008 slashed for an invalid proof");
    assert_eq!(app.summary().await["balanced"], true);
}

// ---- crash and restart ------------------------------------------------------------------------

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
    let child = Command::new(env!("CARGO_BIN_EXE_pcx"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("PCX_LISTEN", format!("127.0.0.1:{port}"))
        .env("PCX_ADMIN_API_KEY", common::ADMIN_KEY)
        .env("PCX_JWT_SECRET", common::JWT_SECRET)
        .env("PCX_MIN_CADENCE_SECS", "10")
        .env("PCX_SETTLEMENT_TICK_MS", "200")
        .env("PCX_ACK_TIMEOUT_SECS", "4")
        .env("PCX_LEASE_SECS", "6")
        .env("PCX_KEYS_DIR", common::common_keys_dir())
        .env("PCX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
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

#[tokio::test]
async fn kill_9_mid_contract_pays_no_slot_twice_and_agents_come_back_by_themselves() {
    let (pool, url) = common::fresh_database_with_url().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
    let mut exchange = start_exchange(&url, port);
    wait_up(&client).await;

    let (_, alice_key) = offering_prover(&client, "alice", "0.01").await;
    let (_, bob_key) = offering_prover(&client, "bob", "0.011").await;
    let (buyer_id, buyer) = client.account("rollup", "buyer").await;
    client.deposit(&buyer_id, "10").await;
    let _a = agent(&client.base, &alice_key, None);
    let _b = agent(&client.base, &bob_key, None);
    let slots = 6;
    let contract = buy(&client, &buyer, slots, 1, 8).await;
    for n in 0..slots {
        put_input(&client, &buyer, &contract, n, &(n + 5).to_string()).await;
    }

    // Let two slots settle, then kill the exchange without warning, in the middle of the contract.
    let give_up = Instant::now() + Duration::from_secs(90);
    loop {
        let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM slots WHERE state = 'delivered'").fetch_one(&pool).await.unwrap();
        if delivered >= 2 {
            break;
        }
        assert!(Instant::now() < give_up, "no deliveries before the crash");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exchange.child.kill().unwrap(); // SIGKILL
    exchange.child.wait().unwrap();
    // The agents lose the exchange for a while.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted_at = Utc::now();
    drop(exchange);
    let _exchange = start_exchange(&url, port);
    wait_up(&client).await;

    let list = settled(&client, &buyer, &contract, slots, Duration::from_secs(150)).await;
    let delivered_after_restart = list
        .iter()
        .filter(|s| s["state"] == "delivered")
        .filter(|s| {
            let n = s["n"].as_i64().unwrap();
            let opens = chrono::DateTime::parse_from_rfc3339(s["opens_at"].as_str().unwrap()).unwrap();
            opens > restarted_at || n == slots - 1
        })
        .count();
    assert!(delivered_after_restart >= 1, "the agents came back and delivered after the restart: {list:?}");
    for slot in &list {
        assert!(matches!(slot["state"].as_str(), Some("delivered" | "missed")), "{slot}");
    }

    // Exactly once: no slot paid or refunded twice, and every settled slot paid or refunded once.
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT reference FROM journal_entries WHERE kind IN ('slot_payment', 'refund')
                                GROUP BY reference HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(duplicates, 0);
    let settlements: i64 =
        sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE kind IN ('slot_payment', 'refund')").fetch_one(&pool).await.unwrap();
    assert_eq!(settlements, slots);
    let summary = client.get("/v1/admin/ledger/summary", Some(&client.admin_token().await)).await;
    assert_eq!(summary.body["balanced"], true, "{}", summary.body);
    assert_eq!(dec(&summary.body["totals"]["escrow"]), Decimal::ZERO, "all escrow paid out or refunded");
}
