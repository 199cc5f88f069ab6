//! Settlement rules, driven by a clock the test moves: the scheduler ticks when the test says, the
//! test plays the prover agents over real HTTP (heartbeat, claim, real Groth16 proofs of 2^10) and
//! nothing sleeps for a slot to open. Each test is a way an honest party could lose money to the
//! exchange's own faults, or a rule that keeps a backup in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;


use chrono::{DateTime, Duration, TimeZone, Utc};
use common::played::{buy, buyer, post_offer, prove, put_input, slots, Agent};
use common::{class_with, rfc, serve_config, spawn_manual, Client, TestApp};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

const NO_DISCOUNTS: &str = r#"{"volume": [], "term": [], "max_total_bps": 0}"#;

/// A Monday morning in 2031: far from any real clock, so nothing here depends on when tests run.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 3, 7, 0, 0).unwrap()
}

fn config() -> pcx_exchange::config::ServeConfig {
    let mut config = serve_config();
    config.market.discounts = Some(NO_DISCOUNTS.into());
    // The production defaults: a 30 s ack timeout and a 300 s lease.
    config.settlement.ack_timeout_secs = 30;
    config.settlement.lease_secs = 300;
    config
}

fn class() -> Value {
    class_with(10, 30)
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

/// A prover account with `stake` bonded; (id, token).
async fn prover(app: &Client, name: &str, stake: &str) -> (String, String) {
    common::prover(app, name, stake).await
}

/// A prover with 1000 bonded offering 360 proofs/h of [`class`] at `price` around [`t0`]; (id, token).
async fn offering_prover(app: &Client, name: &str, price: &str) -> (String, String) {
    let (id, token) = prover(app, name, "1000").await;
    post_offer(app, &token, class(), price, 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    (id, token)
}

/// Slash entries in the journal, per slashed prover account (via the ledger's postings).
async fn slashes(app: &TestApp) -> Vec<(Uuid, Decimal)> {
    sqlx::query_as(
        "SELECT la.owner_id, -p.amount FROM journal_entries je JOIN postings p ON p.entry_id = je.id
           JOIN ledger_accounts la ON la.id = p.ledger_account_id
          WHERE je.kind = 'slash' AND la.kind = 'bonded' ORDER BY je.id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn balances(app: &Client, token: &str) -> (Decimal, Decimal, Decimal) {
    let b = app.balances(token).await;
    (dec(&b["available"]), dec(&b["escrow"]), dec(&b["bonded"]))
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

// ---- a slot's life ---------------------------------------------------------------------------

#[tokio::test]
async fn on_time_proofs_are_verified_paid_and_readable_and_a_slot_without_input_is_unused() {
    let app = spawn_manual(config(), t0()).await;
    let (prover_id, prover_token) = prover(&app, "alice", "1000").await;
    post_offer(&app, &prover_token, class(), "0.01", 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    let alice = Agent::start(&app, &prover_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class(), t0() + secs(60), 20, 3, 0).await;
    let id = contract["contract_id"].as_str().unwrap();
    put_input(&app, &buyer_token, id, 0, "42").await;
    put_input(&app, &buyer_token, id, 1, "21888242871839275222246405745257275088548364400416034343698204186575808495616").await;
    app.put(&format!("/v1/contracts/{id}/slots/2/input"), Some(&buyer_token), json!({"public_input": "-1"}))
        .await
        .assert_error(422, "invalid_input");
    app.put(&format!("/v1/contracts/{id}/slots/9/input"), Some(&buyer_token), json!({"public_input": "1"}))
        .await
        .assert_error(404, "not_found");

    while app.now() < t0() + secs(60 + 3 * 20) {
        app.run_until(app.now() + secs(1), secs(1)).await;
        if let Some(job) = alice.claim().await {
            let r = alice.deliver(&job).await;
            assert_eq!(r.body["accepted"], true, "{}", r.body);
            assert_eq!(r.body["reason"], "delivered_by_primary");
        }
    }
    let list = slots(&app, &buyer_token, id).await;
    for slot in &list[..2] {
        assert_eq!(slot["state"], "delivered", "{slot}");
        assert_eq!(slot["reason"], "delivered_by_primary");
        assert_eq!(slot["delivered_by"], prover_id.as_str());
    }
    assert_eq!((list[2]["state"].as_str(), list[2]["reason"].as_str()), (Some("unused"), Some("no_input")));

    // The proof is a real Groth16 proof of the posted input: verify it here with ark-groth16.
    let proof = app.get(&format!("/v1/contracts/{id}/slots/0/proof"), Some(&buyer_token)).await;
    assert_eq!(proof.status, 200, "{}", proof.body);
    assert_eq!(proof.body["public_inputs"][0], "42");
    let inputs: Vec<_> = proof.body["public_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| pcx_prover_pool::field::parse_field_element(v.as_str().unwrap()).unwrap())
        .collect();
    let decoded = pcx_prover_pool::encoding::decode_proof(proof.body["proof"].as_str().unwrap()).unwrap();
    let pvk = pcx_prover_pool::keys::KeyStore::new(common::common_keys_dir()).verifying_key(10).unwrap();
    assert!(pcx_prover_pool::groth16::verify(&pvk, &inputs, &decoded));
    assert!(!pcx_prover_pool::groth16::verify(&pvk, &[inputs[1], inputs[0]], &decoded));
    assert_eq!(proof.body["points"]["a"].as_array().unwrap().len(), 2);
    app.get(&format!("/v1/contracts/{id}/slots/2/proof"), Some(&buyer_token)).await.assert_error(409, "slot_not_delivered");
    app.put(&format!("/v1/contracts/{id}/slots/0/input"), Some(&buyer_token), json!({"public_input": "7"}))
        .await
        .assert_error(409, "slot_already_open");

    // Money: three slots paid from escrow (the unused one too), less the 1% fee.
    assert_eq!(balances(&app, &prover_token).await.0, Decimal::new(297, 4));
    assert_eq!(balances(&app, &buyer_token).await, (Decimal::new(997, 2), Decimal::ZERO, Decimal::ZERO));
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true, "{summary}");
    assert_eq!(dec(&summary["totals"]["fees"]), Decimal::new(3, 4));
    let reputation = app.get(&format!("/v1/provers/{prover_id}/reputation"), None).await;
    assert_eq!(reputation.body["classes"][0]["delivered"], 2, "{}", reputation.body);
    app.run_until(app.now() + secs(5), secs(1)).await;
    let done = app.get(&format!("/v1/contracts/{id}"), Some(&buyer_token)).await.body;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn a_primary_that_misses_is_slashed_the_backup_delivers_and_the_buyer_is_compensated() {
    let app = spawn_manual(config(), t0()).await;
    let (mallory, mallory_token) = offering_prover(&app, "mallory", "0.008").await;
    let (bob, bob_token) = offering_prover(&app, "bob", "0.01").await;
    let mallory_agent = Agent::start(&app, &mallory_token, 400).await;
    let bob_agent = Agent::start(&app, &bob_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class(), t0() + secs(60), 20, 2, 1).await;
    let id = contract["contract_id"].as_str().unwrap();
    for n in 0..2 {
        put_input(&app, &buyer_token, id, n, &(1000 + n).to_string()).await;
    }
    while app.now() < t0() + secs(60 + 2 * 20 + 30) {
        app.run_until(app.now() + secs(1), secs(1)).await;
        while mallory_agent.claim().await.is_some() {}
        if let Some(job) = bob_agent.claim().await {
            assert_eq!(bob_agent.deliver(&job).await.body["accepted"], true);
        }
    }
    for slot in slots(&app, &buyer_token, id).await {
        assert_eq!(slot["state"], "delivered", "{slot}");
        assert_eq!(slot["reason"], "delivered_by_backup");
        assert_eq!(slot["delivered_by"], bob.as_str());
        assert_eq!(slot["primary"], mallory.as_str());
        assert_eq!(slot["failed_attempts"], 1);
    }
    // Locked price 0.008 per slot; each miss slashes 2 x 0.008: half to the buyer, a quarter to the
    // backup that stepped in, a quarter to insurance.
    assert_eq!(balances(&app, &mallory_token).await.2, Decimal::new(999_968, 3));
    assert_eq!(balances(&app, &buyer_token).await.0, Decimal::from(10), "paid 0.016, compensated 0.016");
    assert_eq!(balances(&app, &bob_token).await.0, Decimal::new(2384, 5), "2 x (0.008 - 1% fee) + 2 x 0.004 bonus");
    let failures: Vec<String> = sqlx::query_scalar("SELECT failure FROM jobs WHERE state = 'failed' ORDER BY n").fetch_all(&app.db).await.unwrap();
    assert_eq!(failures, ["lease_expired", "lease_expired"]);
    let reputation = app.get(&format!("/v1/provers/{mallory}/reputation"), None).await;
    assert_eq!(reputation.body["classes"][0]["missed"], 2);
    // The public record: both deliveries, failed over, latest first; nobody's contract is named.
    let recent = app.get("/v1/slots/recent?limit=5", None).await;
    let listed = recent.body["slots"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{}", recent.body);
    for slot in listed {
        assert_eq!(slot["state"], "delivered", "{slot}");
        assert_eq!(slot["reason"], "delivered_by_backup");
        assert_eq!(slot["primary"], mallory.as_str());
        assert_eq!(slot["delivered_by"], bob.as_str());
        assert_eq!(slot["proof_class"], class());
        assert!(dec(&slot["latency_secs"]) > Decimal::ZERO, "{slot}");
        assert!(slot.get("contract_id").is_none() && slot.get("buyer_id").is_none(), "{slot}");
    }
    assert!(listed[0]["opens_at"].as_str() > listed[1]["opens_at"].as_str(), "latest first: {}", recent.body);
    app.get("/v1/slots/recent?limit=0", None).await.assert_error(422, "invalid_query");
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn an_invalid_proof_is_rejected_and_slashed_more() {
    let app = spawn_manual(config(), t0()).await;
    let (_, ivan_token) = offering_prover(&app, "ivan", "0.008").await;
    let (bob, bob_token) = offering_prover(&app, "bob", "0.01").await;
    let ivan = Agent::start(&app, &ivan_token, 400).await;
    let bob_agent = Agent::start(&app, &bob_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class(), t0() + secs(60), 20, 1, 1).await;
    let id = contract["contract_id"].as_str().unwrap();
    put_input(&app, &buyer_token, id, 0, "777").await;
    app.run_until(t0() + secs(60), secs(1)).await;

    // Ivan proves another statement (seed + 1): refused, slashed twice a miss, bob gets the job.
    let job = ivan.claim().await.unwrap();
    let proof = prove("778").await;
    let job_id = job["job_id"].as_str().unwrap();
    let r = app.post_with_key(&format!("/v1/agent/jobs/{job_id}/proof"), Some(&ivan_token), Some(job_id), json!({"proof": proof})).await;
    assert_eq!((r.body["accepted"].as_bool(), r.body["reason"].as_str()), (Some(false), Some("invalid_proof")), "{}", r.body);
    let garbage = app.post(&format!("/v1/agent/jobs/{job_id}/proof"), Some(&ivan_token), json!({"proof": "0x00"})).await;
    garbage.assert_error(409, "lease_lost");
    let backup_job = bob_agent.claim().await.expect("bob's job at once");
    assert_eq!(bob_agent.deliver(&backup_job).await.body["accepted"], true);
    let list = slots(&app, &buyer_token, id).await;
    assert_eq!((list[0]["state"].as_str(), list[0]["delivered_by"].as_str()), (Some("delivered"), Some(bob.as_str())));
    let failure: String = sqlx::query_scalar("SELECT failure FROM jobs WHERE state = 'failed'").fetch_one(&app.db).await.unwrap();
    assert_eq!(failure, "invalid_proof");
    assert_eq!(balances(&app, &ivan_token).await.2, Decimal::new(999_968, 3), "2 x 2 x 0.008 slashed for an invalid proof");
    assert_eq!(app.summary().await["balanced"], true);
}

// ---- backups get there in time ----------------------------------------------------------------

#[tokio::test]
async fn a_primary_that_claims_and_sits_loses_the_job_while_the_backup_can_still_make_the_deadline() {
    let app = spawn_manual(config(), t0()).await;
    let (mallory, mallory_token) = offering_prover(&app, "mallory", "0.008").await;
    let (bob, bob_token) = offering_prover(&app, "bob", "0.01").await;
    let mallory_agent = Agent::start(&app, &mallory_token, 400).await;
    let bob_agent = Agent::start(&app, &bob_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class(), t0() + secs(60), 20, 3, 1).await;
    let id = contract["contract_id"].as_str().unwrap();
    for n in 0..3 {
        put_input(&app, &buyer_token, id, n, &(100 + n).to_string()).await;
    }

    // Mallory claims every job at once and never proves; bob claims whatever comes to him and
    // delivers. The scheduler ticks every second, as in production.
    app.run_until(t0() + secs(60), secs(1)).await;
    let mut delivered_by_bob = 0;
    while app.now() < t0() + secs(60 + 3 * 20 + 30) {
        while mallory_agent.claim().await.is_some() {}
        if let Some(job) = bob_agent.claim().await {
            let r = bob_agent.deliver(&job).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["accepted"], true, "{}", r.body);
            delivered_by_bob += 1;
        }
        app.run_until(app.now() + secs(1), secs(1)).await;
    }
    assert_eq!(delivered_by_bob, 3);
    for slot in slots(&app, &buyer_token, id).await {
        assert_eq!(slot["state"], "delivered", "{slot}");
        assert_eq!(slot["reason"], "delivered_by_backup", "{slot}");
        assert_eq!(slot["delivered_by"], bob.as_str());
    }
    let slashed = slashes(&app).await;
    assert_eq!(slashed.len(), 3, "mallory is slashed once per slot she sat on: {slashed:?}");
    assert!(slashed.iter().all(|(who, _)| who.to_string() == mallory));
    assert_eq!(app.summary().await["balanced"], true);
}

// ---- the exchange's own faults ----------------------------------------------------------------

#[tokio::test]
async fn time_the_exchange_was_down_slashes_nobody_and_refunds_the_buyer() {
    let app = spawn_manual(config(), t0()).await;
    let (_, alice_token) = offering_prover(&app, "alice", "0.008").await;
    let (_, bob_token) = offering_prover(&app, "bob", "0.01").await;
    let alice = Agent::start(&app, &alice_token, 400).await;
    let _bob = Agent::start(&app, &bob_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let before = balances(&app, &buyer_token).await;
    let contract = buy(&app, &buyer_token, class(), t0() + secs(60), 20, 3, 1).await;
    let id = contract["contract_id"].as_str().unwrap();
    for n in 0..3 {
        put_input(&app, &buyer_token, id, n, &(7 + n).to_string()).await;
    }

    // Slot 0 opens and alice starts proving it; then the exchange is down for two minutes, past
    // every slot's deadline (slots 1 and 2 should have opened meanwhile).
    app.run_until(t0() + secs(60), secs(1)).await;
    let job = alice.claim().await.expect("alice's job");
    app.jump_to(t0() + secs(60 + 120));
    app.tick().await;
    app.run_until(app.now() + secs(3), secs(1)).await;

    // Alice's proof arrives after the restart: too late for the slot, and no fault of hers.
    let late = alice.deliver(&job).await;
    late.assert_error(409, "lease_lost");
    let list = slots(&app, &buyer_token, id).await;
    assert_eq!(list[0]["state"], "missed", "{}", list[0]);
    assert_eq!(list[0]["reason"], "exchange_down", "{}", list[0]);
    for slot in &list[1..] {
        assert_eq!(slot["state"], "missed", "{slot}");
        assert_eq!(slot["reason"], "exchange_late", "{slot}");
    }
    assert_eq!(slashes(&app).await, vec![], "nobody is slashed for the exchange's downtime");
    let recent = app.get("/v1/slots/recent", None).await;
    let reasons: Vec<&str> = recent.body["slots"].as_array().unwrap().iter().map(|s| s["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "exchange_late").count(), 2, "{}", recent.body);
    assert_eq!(reasons.iter().filter(|r| **r == "exchange_down").count(), 1, "{}", recent.body);
    let after = balances(&app, &buyer_token).await;
    assert_eq!(after, before, "every slot refunded, nothing left in escrow");
    assert_eq!(balances(&app, &alice_token).await.2, Decimal::from(1000));
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn a_lost_claim_answer_costs_nothing_the_retry_gets_the_same_job() {
    let app = spawn_manual(config(), t0()).await;
    let (alice_id, alice_token) = prover(&app, "alice", "1000").await;
    post_offer(&app, &alice_token, class(), "0.01", 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    let alice = Agent::start(&app, &alice_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class(), t0() + secs(60), 20, 1, 0).await;
    let id = contract["contract_id"].as_str().unwrap();
    put_input(&app, &buyer_token, id, 0, "5").await;
    app.run_until(t0() + secs(60), secs(1)).await;

    let first = alice.claim_and_lose_the_answer().await.expect("a job");
    // The answer is lost on the way back; the agent claims again.
    let again = alice.claim().await.expect("the held job again");
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(alice.claim().await, None, "a job in hand is not handed out twice");
    let r = alice.deliver(&again).await;
    assert_eq!(r.body["accepted"], true, "{}", r.body);
    app.run_until(app.now() + secs(2), secs(1)).await;
    assert_eq!(slots(&app, &buyer_token, id).await[0]["delivered_by"], alice_id.as_str());
    assert_eq!(slashes(&app).await, vec![]);
}

// ---- escrow -----------------------------------------------------------------------------------

fn escrow_config() -> pcx_exchange::config::ServeConfig {
    let mut config = config();
    config.market.escrow_window_secs = 600;
    config
}

#[tokio::test]
async fn buyers_who_cannot_fund_their_escrow_never_starve_other_contracts() {
    let app = spawn_manual(escrow_config(), t0()).await;
    let (_, prover_token) = prover(&app, "p", "1000").await;
    let class = class_with(10, 600);
    post_offer(&app, &prover_token, class.clone(), "0.000001", 100_000, t0() - secs(3600), t0() + Duration::days(2)).await;

    // More unfunded contracts than the scheduler takes in one batch, all due before the funded one.
    let (poor_id, poor) = app.account("poor", "buyer").await;
    let mut escrow = Decimal::ZERO;
    let mut quotes = Vec::new();
    for _ in 0..201 {
        let quote = app
            .post(
                "/v1/quotes",
                Some(&poor),
                json!({"proof_class": class, "redundancy": 0,
                       "schedule": {"start": rfc(t0() + secs(60)), "end": rfc(t0() + secs(60 + 20 * 60)), "every_secs": 60}}),
            )
            .await;
        assert_eq!(quote.status, 201, "{}", quote.body);
        escrow += dec(&quote.body["escrow_required"]);
        quotes.push(quote.body["quote_id"].clone());
    }
    app.deposit(&poor_id, &escrow.to_string()).await;
    for quote_id in quotes {
        let r = app.post("/v1/contracts", Some(&poor), json!({"quote_id": quote_id})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let (_, rich) = buyer(&app, "rich", "100").await;
    let contract = buy(&app, &rich, class.clone(), t0() + secs(90), 60, 20, 0).await;
    let price = dec(&contract["allocation"][0]["price_per_proof"]);
    assert_eq!(balances(&app, &rich).await.1, price * Decimal::from(10), "10 slots in the first 600 s");

    app.run_until(t0() + secs(95), secs(5)).await;
    // The rich buyer's slot 0 was paid and slot 10 entered the window: escrow topped up.
    assert_eq!(balances(&app, &rich).await.1, price * Decimal::from(10), "the funded contract was topped up");
    let suspended: i64 =
        sqlx::query_scalar("SELECT count(*) FROM contracts WHERE status = 'suspended' AND status_reason = 'escrow_underfunded'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(suspended, 201);
}

#[tokio::test]
async fn resuming_a_suspended_contract_locks_escrow_only_for_slots_still_to_open() {
    let app = spawn_manual(escrow_config(), t0()).await;
    let (_, prover_token) = prover(&app, "p", "1000").await;
    let class = class_with(10, 600);
    post_offer(&app, &prover_token, class.clone(), "0.01", 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    let (buyer_id, token) = app.account("b", "buyer").await;
    app.deposit(&buyer_id, "0.1").await; // exactly the first 600 s: 10 slots at 0.01
    let contract = buy(&app, &token, class, t0() + secs(60), 60, 20, 0).await;
    let id = contract["contract_id"].as_str().unwrap().to_owned();

    // Slot 10 cannot be funded: suspended; slots 10..=12 open while suspended and are cancelled.
    app.run_until(t0() + secs(60 + 12 * 60 + 30), secs(10)).await;
    let got = app.get(&format!("/v1/contracts/{id}"), Some(&token)).await.body;
    assert_eq!(got["status"], "suspended", "{got}");
    assert_eq!(got["status_reason"], "escrow_underfunded");
    let list = slots(&app, &token, &id).await;
    for slot in &list[10..=12] {
        assert_eq!(slot["state"], "cancelled", "{slot}");
        assert_eq!(slot["reason"], "contract_suspended");
    }

    // The buyer pays in; the contract resumes with escrow for slots 13..20 only.
    app.deposit(&buyer_id, "1").await;
    app.run_until(app.now() + secs(10), secs(10)).await;
    assert_eq!(app.get(&format!("/v1/contracts/{id}"), Some(&token)).await.body["status"], "active");
    let (available, escrow, _) = balances(&app, &token).await;
    assert_eq!(escrow, Decimal::new(7, 2), "7 slots still to open, none of the 3 cancelled ones");
    assert_eq!(available, Decimal::new(93, 2));

    app.run_until(t0() + secs(60 + 20 * 60 + 10), secs(30)).await;
    let (available, escrow, _) = balances(&app, &token).await;
    assert_eq!((available, escrow), (Decimal::new(93, 2), Decimal::ZERO), "17 slots paid, 3 cancelled ones not");
    assert_eq!(app.summary().await["balanced"], true);
}

// ---- collateral -------------------------------------------------------------------------------

#[tokio::test]
async fn unstaking_keeps_what_secures_claimed_jobs_and_backup_slots() {
    // 07:59: the job's slot opens just before the hour turns.
    let start = t0() + secs(59 * 60);
    let app = spawn_manual(config(), start - secs(120)).await;
    let (_, alice_token) = prover(&app, "alice", "10").await;
    let (_, bob_token) = prover(&app, "bob", "10").await;
    let (_, carol_token) = prover(&app, "carol", "10").await;
    let class = class_with(10, 600);
    let window = (start - secs(3600), start + Duration::days(2));
    let alice_offer = post_offer(&app, &alice_token, class.clone(), "0.01", 1, window.0, window.1).await;
    post_offer(&app, &bob_token, class.clone(), "0.02", 1, window.0, window.1).await;
    let carol_offer = post_offer(&app, &carol_token, class.clone(), "0.03", 1, window.0, window.1).await;
    let alice = Agent::start(&app, &alice_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class.clone(), start, 3600, 1, 0).await;
    put_input(&app, &buyer_token, contract["contract_id"].as_str().unwrap(), 0, "3").await;
    // Alice sells nothing more; bob is primary and carol backup of a slot at 09:30.
    assert_eq!(app.delete(&format!("/v1/offers/{alice_offer}"), Some(&alice_token)).await.status, 200);
    let later = buy(&app, &buyer_token, class, start + secs(5460), 3600, 1, 1).await;
    assert_eq!(later["allocation"][0]["backups"][0]["offer_id"], carol_offer);
    assert_eq!(app.delete(&format!("/v1/offers/{carol_offer}"), Some(&carol_token)).await.status, 200);
    app.run_until(start, secs(1)).await;
    let _job = alice.claim().await.expect("alice's job");

    // Past the hour, alice's only reservation is over, but the job she holds is not: she cannot
    // take the stake that would pay its slash (2 x 2 x 0.01 for an invalid proof).
    app.run_until(start + secs(90), secs(1)).await;
    app.post("/v1/provers/unstake", Some(&alice_token), json!({"amount": "9.97"})).await.assert_error(409, "stake_locked");
    let r = app.post("/v1/provers/unstake", Some(&alice_token), json!({"amount": "9.96"})).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Carol offers nothing any more, but she is the backup of the 09:30 slot: 2 x 0.02 stays.
    app.post("/v1/provers/unstake", Some(&carol_token), json!({"amount": "9.97"})).await.assert_error(409, "stake_locked");
    let r = app.post("/v1/provers/unstake", Some(&carol_token), json!({"amount": "9.96"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn a_primary_whose_stake_stops_covering_its_slots_is_replaced_by_its_backup() {
    let app = spawn_manual(config(), t0()).await;
    let class = class_with(10, 600);
    // 2 x 24 h x 1 proof/h x 1.00: exactly what alice's offer and her first 24 slots need.
    let (alice, alice_token) = prover(&app, "alice", "48").await;
    let (bob, bob_token) = prover(&app, "bob", "1000").await;
    post_offer(&app, &alice_token, class.clone(), "1", 1, t0() - secs(3600), t0() + Duration::days(4)).await;
    post_offer(&app, &bob_token, class.clone(), "2", 1, t0() - secs(3600), t0() + Duration::days(4)).await;
    let bob_agent = Agent::start(&app, &bob_token, 400).await;
    let _alice_agent = Agent::start(&app, &alice_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "1000").await;
    let contract = buy(&app, &buyer_token, class.clone(), t0() + secs(60), 3600, 48, 1).await;
    let id = contract["contract_id"].as_str().unwrap();
    put_input(&app, &buyer_token, id, 0, "11").await;

    // Alice never claims slot 0: slashed 2.00, her stake no longer covers her next 24 slots.
    app.run_until(t0() + secs(60), secs(1)).await;
    let mut delivered = false;
    while app.now() < t0() + secs(60 + 600) && !delivered {
        if let Some(job) = bob_agent.claim().await {
            assert_eq!(bob_agent.deliver(&job).await.body["accepted"], true);
            delivered = true;
        }
        app.run_until(app.now() + secs(1), secs(1)).await;
    }
    assert!(delivered);
    assert_eq!(balances(&app, &alice_token).await.2, Decimal::from(46));
    app.run_until(app.now() + secs(5), secs(1)).await;

    // 46 covers 23 of the 24 slots in the window: the last one goes to bob, with a reason.
    let list = slots(&app, &buyer_token, id).await;
    for slot in &list[1..24] {
        assert_eq!(slot["primary"], alice.as_str(), "{slot}");
    }
    assert_eq!(list[24]["primary"], bob.as_str(), "{}", list[24]);
    assert_eq!(list[24]["primary_replaced"]["reason"], "primary_undercollateralised", "{}", list[24]);
    assert_eq!(list[24]["primary_replaced"]["previous_primary"], alice.as_str());

    // And alice's offer no longer sells, though it is the cheapest.
    let (_, other) = buyer(&app, "other", "1000").await;
    let start = app.now() + secs(3 * 86400 - 7200);
    let quote = app
        .post(
            "/v1/quotes",
            Some(&other),
            json!({"proof_class": class, "redundancy": 0,
                   "schedule": {"start": rfc(start), "end": rfc(start + secs(3600)), "every_secs": 3600}}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    assert_eq!(quote.body["allocation"][0]["primary"]["prover_id"], bob.as_str(), "{}", quote.body);
}

// ---- capacity counted where the slots are ------------------------------------------------------

#[tokio::test]
async fn an_offer_posted_a_minute_ago_serves_a_contract_starting_now() {
    let posted = t0() + secs(60); // 07:01
    let app = spawn_manual(config(), posted).await;
    let (_, prover_token) = prover(&app, "p", "1000").await;
    let class = class_with(10, 600);
    post_offer(&app, &prover_token, class.clone(), "0.01", 600, posted, posted + Duration::days(1)).await;
    let (_, buyer_token) = buyer(&app, "rollup", "100").await;
    app.jump_to(posted + secs(50));
    let contract = buy(&app, &buyer_token, class, posted + secs(60), 60, 120, 0).await;
    assert_eq!(contract["slot_count"], 120);
}

#[tokio::test]
async fn a_daily_contract_holds_one_unit_a_day_not_one_every_hour() {
    let app = spawn_manual(config(), t0()).await;
    let (_, prover_token) = prover(&app, "p", "1000").await;
    let class = class_with(10, 600);
    post_offer(&app, &prover_token, class.clone(), "0.01", 1, t0(), t0() + Duration::days(30)).await;
    let (_, buyer_token) = buyer(&app, "rollup", "100").await;
    let ten = t0() + secs(3 * 3600); // 10:00 every day
    buy(&app, &buyer_token, class.clone(), ten, 86_400, 10, 0).await;
    // 15:00 every day: other hours, the one unit an hour is free there.
    buy(&app, &buyer_token, class.clone(), ten + secs(5 * 3600), 86_400, 10, 0).await;
    // 10:30 every day: the 10:00 hour already holds its one proof.
    let quote = app
        .post(
            "/v1/quotes",
            Some(&buyer_token),
            json!({"proof_class": class, "redundancy": 0,
                   "schedule": {"start": rfc(ten + secs(1800)), "end": rfc(ten + secs(1800 + 10 * 86_400)), "every_secs": 86_400}}),
        )
        .await;
    quote.assert_error(409, "insufficient_capacity");
}

// ---- keys -------------------------------------------------------------------------------------

#[tokio::test]
async fn verifying_keys_are_ready_when_the_server_starts_not_at_the_first_proof() {
    let keys_dir = std::env::temp_dir().join(format!("pcx-keys-{}", Uuid::new_v4().simple()));
    let mut config = config();
    config.settlement.keys_dir = Some(keys_dir.clone());
    let app = spawn_manual(config.clone(), t0()).await;
    let (_, prover_token) = prover(&app, "p", "1000").await;
    post_offer(&app, &prover_token, class(), "0.01", 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    buy(&app, &buyer_token, class(), t0() + secs(600), 20, 3, 0).await;

    // The exchange restarts on this database: the key of the traded size is made or loaded at
    // start, before any proof arrives.
    let restarted = common::spawn_on_clock(app.db.clone(), config, app.clock.clone()).await;
    let vk = keys_dir.join("hash-chain-10.vk");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !vk.exists() {
        assert!(std::time::Instant::now() < give_up, "no verifying key at {} after start", vk.display());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(restarted);
    let _ = std::fs::remove_dir_all(&keys_dir);
}

// ---- robustness -------------------------------------------------------------------------------

#[tokio::test]
async fn a_deadlock_in_a_transition_is_retried_not_lost() {
    let app = spawn_manual(config(), t0()).await;
    let (_, prover_token) = prover(&app, "p", "1000").await;
    post_offer(&app, &prover_token, class(), "0.01", 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    let (_, first) = buyer(&app, "first", "10").await;
    let (second_id, second) = buyer(&app, "second", "10").await;
    buy(&app, &first, class(), t0() + secs(60), 20, 1, 0).await;
    let contract = buy(&app, &second, class(), t0() + secs(60), 20, 1, 0).await;
    let contract_id: Uuid = contract["contract_id"].as_str().unwrap().parse().unwrap();
    app.run_until(t0() + secs(59), secs(1)).await;

    // Someone else holds the second buyer's escrow row, and will want the slot the tick locks.
    let mut other = app.db.begin().await.unwrap();
    sqlx::query("SET LOCAL deadlock_timeout = '10s'").execute(&mut *other).await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_accounts WHERE owner_id = $1 AND kind = 'escrow' FOR UPDATE")
        .bind(Uuid::parse_str(&second_id).unwrap())
        .fetch_all(&mut *other)
        .await
        .unwrap();
    app.jump_to(t0() + secs(61));
    let state = app.state.clone();
    let ticking = tokio::spawn(async move { pcx_exchange::service::settlement::tick(&state, t0() + secs(61)).await });
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(std::time::Instant::now() < give_up, "the tick never waited for the escrow row");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The cycle: PostgreSQL aborts the tick's transaction (it waited first), which is retried.
    sqlx::query("SELECT 1 FROM slots WHERE contract_id = $1 FOR UPDATE").bind(contract_id).fetch_all(&mut *other).await.unwrap();
    other.rollback().await.unwrap();
    let report = ticking.await.unwrap().expect("the tick completes");
    assert_eq!(report.opened, 2, "{report:?}");
    for token in [&first, &second] {
        let list = app.get("/v1/contracts", Some(token)).await.body;
        let id = list["contracts"][0]["contract_id"].as_str().unwrap().to_owned();
        assert_eq!(slots(&app, token, &id).await[0]["state"], "unused");
    }
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE kind = 'slot_payment'").fetch_one(&app.db).await.unwrap();
    assert_eq!(payments, 2);
    assert_eq!(app.summary().await["balanced"], true);
}

/// Polls `/health` until it answers `want`; returns the body.
async fn health_becomes(app: &Client, want: u16) -> Value {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = app.http.get(app.url("/health")).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if status == want {
            return body;
        }
        assert!(std::time::Instant::now() < give_up, "/health never answered {want}: {status} {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_degrades_when_the_scheduler_stalls_and_recovers_with_it() {
    let mut config = config();
    config.settlement.health_stall_secs = 2;
    let app = common::spawn_app_with(config).await;
    let ok = health_becomes(&app, 200).await;
    assert_eq!(ok["background"][0]["name"], "settlement_scheduler", "{ok}");

    // The scheduler's clock table is locked: every tick waits, none completes.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE scheduler_clock IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let degraded = health_becomes(&app, 503).await;
    assert_eq!(degraded["error"]["code"], "unavailable");
    assert!(degraded["error"]["message"].as_str().unwrap().contains("settlement_scheduler"), "{degraded}");
    blocker.rollback().await.unwrap();
    health_becomes(&app, 200).await;
}

#[tokio::test]
async fn a_restart_is_an_outage_however_short() {
    let app = spawn_manual(config(), t0()).await;
    app.run_until(t0() + secs(5), secs(1)).await;
    let outages = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM exchange_outages").fetch_one(&app.db).await.unwrap() };
    assert_eq!(outages().await, 0, "a healthy exchange has no outage");
    // The process dies and comes back 3 s later (well under PCX_OUTAGE_AFTER_SECS).
    let restarted = common::spawn_on_clock(app.db.clone(), config(), app.clock.clone()).await;
    app.jump_to(t0() + secs(8));
    restarted.tick().await;
    let recorded: (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT started_at, ended_at FROM exchange_outages").fetch_one(&app.db).await.unwrap();
    assert_eq!(recorded, (t0() + secs(5), t0() + secs(8)));
    restarted.tick().await;
    assert_eq!(outages().await, 1, "later ticks of the same process are not outages");
}
