//! Deliveries settled together (`service::settlement::deliveries`): valid proofs of many slots
//! that arrive together are delivered by one transaction, and each slot is still delivered once,
//! paid once, recorded once and told once, exactly as one by one; what cannot go with the batch (a
//! lost lease, a second submission of a job) is answered as it would be alone. Real HTTP, real
//! Groth16 proofs of 2^10, a clock the test moves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::played::{buy, buyer, post_offer, prove, put_input, Agent};
use common::receiver::Receiver;
use common::{class_with, serve_config, spawn_manual, Client, TestApp};
use futures_util::future::join_all;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use pcx_exchange::auth::Principal;
use pcx_exchange::service::settlement::{deliver_together, Delivery};
use pcx_prover_pool::circuit::{Circuit, Claimed, Verdict};

/// A Monday morning in 2031: far from any real clock.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 3, 7, 0, 0).unwrap()
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

/// The price per slot the prover asks.
const PRICE: &str = "0.01";

/// A market with one prover (1000 bonded, offering hash-chain 2^10 with a 600 s deadline at
/// [`PRICE`]) and one buyer whose contract of `slots` slots every 10 s is all open and claimed by
/// the prover's agent: (app, prover id, prover token, buyer token, contract id, claimed jobs).
async fn claimed(slots: i64) -> (TestApp, String, String, String, String, Vec<Value>) {
    let mut config = serve_config();
    config.market.discounts = Some(r#"{"volume": [], "term": [], "max_total_bps": 0}"#.into());
    config.settlement.ack_timeout_secs = 30;
    config.settlement.lease_secs = 300;
    let app = spawn_manual(config, t0()).await;
    let (prover_id, prover_token) = common::prover(&app, "alice", "1000").await;
    let class = class_with(10, 600);
    post_offer(&app, &prover_token, class.clone(), PRICE, 360, t0() - secs(3600), t0() + Duration::days(2)).await;
    let agent = Agent::start(&app, &prover_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let contract = buy(&app, &buyer_token, class, t0() + secs(60), 10, slots, 0).await;
    let id = contract["contract_id"].as_str().unwrap().to_owned();
    for n in 0..slots {
        put_input(&app, &buyer_token, &id, n, &(500 + n).to_string()).await;
    }
    let mut jobs = Vec::new();
    while jobs.len() < usize::try_from(slots).unwrap() {
        assert!(app.now() < t0() + secs(60 + 10 * slots + 30), "every slot opens and is claimed");
        app.run_until(app.now() + secs(1), secs(1)).await;
        while let Some(job) = agent.claim().await {
            jobs.push(job);
        }
    }
    jobs.sort_by_key(|j| j["slot"].as_i64());
    (app, prover_id, prover_token, buyer_token, id, jobs)
}

/// What the exchange's journal and tables hold for the contract's settlement.
async fn settled(app: &TestApp) -> (i64, i64, i64, i64) {
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE kind = 'slot_payment'").fetch_one(&app.db).await.unwrap();
    let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM slots WHERE state = 'delivered'").fetch_one(&app.db).await.unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(delivered), 0)::bigint FROM prover_reputation").fetch_one(&app.db).await.unwrap();
    let told: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE type = 'slot.delivered'").fetch_one(&app.db).await.unwrap();
    (payments, delivered, recorded, told)
}

async fn submit(app: &Client, token: &str, job: &Value, proof: &str) -> common::Reply {
    let id = job["job_id"].as_str().unwrap();
    app.post_with_key(&format!("/v1/agent/jobs/{id}/proof"), Some(token), Some(id), json!({"proof": proof})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_submitted_together_are_each_delivered_paid_recorded_and_told_once() {
    let (app, prover_id, prover_token, buyer_token, contract, jobs) = claimed(8).await;
    let buyer_hook = Receiver::start().await;
    let prover_hook = Receiver::start().await;
    for (token, hook, events) in [(&buyer_token, &buyer_hook, ["slot.delivered"]), (&prover_token, &prover_hook, ["payment.received"])] {
        let r = app.post("/v1/webhooks", Some(token), json!({"url": hook.url, "events": events})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let before = app.balances(&buyer_token).await;
    let mut proofs = Vec::new();
    for job in &jobs {
        proofs.push(prove(job["public_input"].as_str().unwrap()).await);
    }

    let replies = join_all(jobs.iter().zip(&proofs).map(|(job, proof)| submit(&app, &prover_token, job, proof))).await;
    for (reply, job) in replies.iter().zip(&jobs) {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["job_id"], job["job_id"]);
        assert_eq!((reply.body["accepted"].as_bool(), reply.body["reason"].as_str()), (Some(true), Some("delivered_by_primary")));
    }
    // Every agent retries after a lost answer: the same answers, nothing moves again.
    let again = join_all(jobs.iter().zip(&proofs).map(|(job, proof)| submit(&app, &prover_token, job, proof))).await;
    for (first, second) in replies.iter().zip(&again) {
        assert_eq!((second.status, &second.body), (first.status, &first.body));
    }

    assert_eq!(settled(&app).await, (8, 8, 8, 8), "payments, delivered slots, recorded deliveries, slot.delivered events");
    for (n, (job, proof)) in jobs.iter().zip(&proofs).enumerate() {
        let r = app.get(&format!("/v1/contracts/{contract}/slots/{n}/proof"), Some(&buyer_token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["proof"], proof.as_str(), "slot {n} keeps its own proof");
        let input = job["public_input"].as_str().unwrap();
        assert_eq!(r.body["public_inputs"][0], input, "slot {n}'s signals, in order: {}", r.body);
        assert_eq!(r.body["public_inputs"].as_array().unwrap().len(), 2);
    }
    let by: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT delivered_by FROM slots").fetch_all(&app.db).await.unwrap();
    assert_eq!(by, [prover_id.parse::<Uuid>().unwrap()]);
    // 8 slots at 0.01: the buyer's escrow paid them, the prover got them less the 1% fee.
    let after = app.balances(&buyer_token).await;
    assert_eq!(dec(&before["escrow"]) - dec(&after["escrow"]), Decimal::new(8, 2));
    assert_eq!(dec(&app.balances(&prover_token).await["available"]), Decimal::new(792, 4));
    let held: Decimal = sqlx::query_scalar("SELECT escrow_held FROM contracts").fetch_one(&app.db).await.unwrap();
    assert_eq!(held, dec(&after["escrow"]), "the contract's escrow is what the buyer's escrow balance holds");
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true, "{summary}");
    let reputation = app.get(&format!("/v1/provers/{prover_id}/reputation"), None).await;
    assert_eq!(reputation.body["classes"][0]["delivered"], 8, "{}", reputation.body);

    // Each party is told of each slot once: the buyer of its deliveries, the prover of its pay.
    let within = std::time::Duration::from_secs(20);
    let told = buyer_hook.wait_for(within, "8 deliveries", |r| r.iter().filter(|r| r.accepted).count() >= 8).await;
    let mut slots: Vec<i64> = told.iter().filter(|r| r.accepted).map(|r| r.json()["data"]["slot"].as_i64().unwrap()).collect();
    slots.sort_unstable();
    assert_eq!(slots, (0..8).collect::<Vec<_>>());
    let paid = prover_hook.wait_for(within, "8 payments", |r| r.iter().filter(|r| r.accepted).count() >= 8).await;
    for r in paid.iter().filter(|r| r.accepted) {
        assert_eq!(r.json()["type"], "payment.received");
        assert_eq!(dec(&r.json()["data"]["amount"]), Decimal::new(99, 4));
    }
}

/// A valid proof of `job`, as `submit` hands it on once it verified it (for real).
async fn verified(app: &TestApp, prover: &str, job: &Value) -> Delivery {
    let (proof, input) = (prove(job["public_input"].as_str().unwrap()).await, job["public_input"].as_str().unwrap().to_owned());
    let Claimed::Checkable(claim) = Circuit::HashChain { size_log2: 10 }.claim(&app.state.keys, &input, &proof).unwrap() else {
        panic!("the proof decodes")
    };
    let valid = pcx_prover_pool::groth16::verify(&claim.verifying_key, &claim.public_inputs, &claim.proof);
    let Verdict::Valid { public_signals } = claim.verdict(valid) else { panic!("the proof verifies") };
    let job_id: Uuid = job["job_id"].as_str().unwrap().parse().unwrap();
    let submission = pcx_exchange::routes::agent::ProofSubmission { proof: proof.clone() };
    let account = pcx_domain::AccountId(prover.parse().unwrap());
    Delivery {
        state: app.state.clone(),
        principal: Principal::Account(account),
        key: Some(job_id.to_string()),
        request_hash: pcx_exchange::idempotency::request_hash(&format!("POST /v1/agent/jobs/{job_id}/proof"), &submission),
        prover: account,
        job_id,
        slot: (job["contract_id"].as_str().unwrap().parse().unwrap(), job["slot"].as_u64().unwrap()),
        proof,
        public_signals,
    }
}

#[tokio::test]
async fn a_batch_delivers_what_it_can_in_one_transaction_and_answers_the_rest_as_alone() {
    let (app, prover_id, prover_token, _, _, jobs) = claimed(4).await;
    let mut items = Vec::new();
    for job in &jobs {
        items.push(verified(&app, &prover_id, job).await);
    }
    // Job 3 is given back before its proof is settled: its lease is lost.
    let released = jobs[3]["job_id"].as_str().unwrap();
    let r = app.post(&format!("/v1/agent/jobs/{released}/release"), Some(&prover_token), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Job 0's proof comes twice (an agent that retried at once).
    let batch = vec![items[0].clone(), items[1].clone(), items[0].clone(), items[2].clone(), items[3].clone()];

    // One batch, as the settling stage hands it over (the verified batches it gathered).
    let answers = deliver_together(batch).await;
    for i in [0, 1, 3] {
        let (status, body) = answers[i].as_ref().unwrap();
        assert_eq!((status.as_u16(), body["accepted"].as_bool()), (200, Some(true)), "{body}");
    }
    assert_eq!(answers[2], answers[0], "the second submission of job 0 gets the first one's answer");
    let lost = answers[4].as_ref().unwrap_err();
    assert_eq!(lost.code.as_str(), "lease_lost", "{lost:?}");

    assert_eq!(settled(&app).await, (3, 3, 3, 3), "payments, delivered slots, recorded deliveries, slot.delivered events");
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM slots WHERE state = 'delivered'").fetch_one(&app.db).await.unwrap();
    assert_eq!(transactions, 1, "the three slots were delivered by one transaction");
    for item in &items[..3] {
        let stored: Vec<String> = sqlx::query_scalar("SELECT unnest(public_signals) FROM slots WHERE contract_id = $1 AND n = $2")
            .bind(item.slot.0)
            .bind(i64::try_from(item.slot.1).unwrap())
            .fetch_all(&app.db)
            .await
            .unwrap();
        assert_eq!(stored, item.public_signals);
    }
    let released_state: String = sqlx::query_scalar("SELECT state FROM slots WHERE n = 3").fetch_one(&app.db).await.unwrap();
    assert_eq!(released_state, "proving", "the released slot waits for its next prover");

    // The stored answers are the route's: a retry over HTTP replays them.
    let proof = &items[1].proof;
    let again = submit(&app, &prover_token, &jobs[1], proof).await;
    assert_eq!((again.status.as_u16(), &again.body), (200, &answers[1].as_ref().unwrap().1));
    assert_eq!(app.summary().await["balanced"], true);
}
