//! The test plays the parties of settlement over real HTTP: a prover agent (heartbeat, claim,
//! real Groth16 proofs of 2^10), a buyer (quotes, contracts, inputs, slots).

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{rfc, Client};

/// An agent of `token`'s prover, advertising a 2^10 prove time of `prove_ms`. Like the real one,
/// it tells the exchange which jobs it has in hand when it claims.
pub struct Agent<'a> {
    app: &'a Client,
    token: String,
    id: Uuid,
    in_hand: std::sync::Mutex<Vec<Value>>,
}

impl<'a> Agent<'a> {
    pub async fn start(app: &'a Client, token: &str, prove_ms: u64) -> Agent<'a> {
        let agent = Agent { app, token: token.to_owned(), id: Uuid::new_v4(), in_hand: Default::default() };
        let r = app
            .post(
                "/v1/agent/heartbeat",
                Some(token),
                json!({"agent_id": agent.id, "workers": 1, "backend": "cpu",
                       "capabilities": [{"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 10,
                                         "prove_ms": prove_ms, "proofs_per_hour": 3_600_000 / prove_ms}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        agent
    }

    /// One claim without waiting; the job, if any (kept in hand).
    pub async fn claim(&self) -> Option<Value> {
        let job = self.claim_and_lose_the_answer().await?;
        self.in_hand.lock().unwrap().push(job["job_id"].clone());
        Some(job)
    }

    /// One claim whose answer the agent does not keep (it was lost on the way).
    pub async fn claim_and_lose_the_answer(&self) -> Option<Value> {
        let in_hand = self.in_hand.lock().unwrap().clone();
        let r = self
            .app
            .post(
                "/v1/agent/jobs/claim",
                Some(&self.token),
                json!({"agent_id": self.id, "wait_secs": 0, "sizes": [10], "in_hand": in_hand}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        Some(r.body["job"].clone()).filter(|j| !j.is_null())
    }

    /// Proves the job's input for real and submits it.
    pub async fn deliver(&self, job: &Value) -> super::Reply {
        let proof = prove(job["public_input"].as_str().unwrap()).await;
        let id = job["job_id"].as_str().unwrap();
        self.app
            .post_with_key(&format!("/v1/agent/jobs/{id}/proof"), Some(&self.token), Some(id), json!({"proof": proof}))
            .await
    }
}

/// A real Groth16 proof of hash-chain 2^10 for `seed`, encoded for the API.
pub async fn prove(seed: &str) -> String {
    static KEYS: OnceLock<std::sync::Arc<pcx_prover_pool::keys::KeyStore>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| std::sync::Arc::new(pcx_prover_pool::keys::KeyStore::new(super::common_keys_dir()))).clone();
    let seed = pcx_prover_pool::field::parse_field_element(seed).unwrap();
    tokio::task::spawn_blocking(move || {
        let (proof, _) = pcx_prover_pool::groth16::prove_hash_chain(&keys, 10, seed, &pcx_prover_pool::msm::ArkworksMsm).unwrap();
        pcx_prover_pool::encoding::encode_proof(&proof)
    })
    .await
    .unwrap()
}

/// A buyer with `deposit`; (id, token).
pub async fn buyer(app: &Client, name: &str, deposit: &str) -> (String, String) {
    let (id, token) = app.account(name, "buyer").await;
    app.deposit(&id, deposit).await;
    (id, token)
}

/// Quotes and buys `slots` slots of `class` every `every` s from `start`; returns the contract.
pub async fn buy(app: &Client, token: &str, class: Value, start: DateTime<Utc>, every: i64, slots: i64, redundancy: u8) -> Value {
    let end = start + Duration::seconds(every * slots);
    let quote = app
        .post(
            "/v1/quotes",
            Some(token),
            json!({"proof_class": class, "schedule": {"start": rfc(start), "end": rfc(end), "every_secs": every},
                   "redundancy": redundancy}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    let bought = app.post("/v1/contracts", Some(token), json!({"quote_id": quote.body["quote_id"]})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    bought.body
}

pub async fn put_input(app: &Client, token: &str, contract: &str, n: i64, seed: &str) {
    let r = app.put(&format!("/v1/contracts/{contract}/slots/{n}/input"), Some(token), json!({"public_input": seed})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

pub async fn slots(app: &Client, token: &str, contract: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/contracts/{contract}/slots?limit=1000"), Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["slots"].as_array().unwrap().clone()
}

/// Posts an offer of `class` over `[from, to)`; returns the offer id.
pub async fn post_offer(app: &Client, token: &str, class: Value, price: &str, pph: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let r = app
        .post(
            "/v1/offers",
            Some(token),
            json!({"proof_class": class, "window_start": rfc(from), "window_end": rfc(to), "proofs_per_hour": pph,
                   "price_per_proof": price}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["offer_id"].as_i64().unwrap()
}
