//! The agent against a scripted exchange on 127.0.0.1 ([`super::testing::FakeExchange`]), proving
//! real 2^10 hash-chain proofs with the exchange's keys ([`super::testing::ServedKey`]: the shared
//! development key unless a test serves another) downloaded into a temporary keys directory, and
//! proofs of the registered multiplier circuit ([`super::testing::CircuitFixture`]) downloaded
//! into one.

use std::time::{Duration, Instant};

use ark_bn254::Bn254;
use ark_groth16::VerifyingKey;
use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::testing::{
    dev_key, dev_keys, reply_with_keys, sha256_hex, CircuitFixture, FakeExchange, Reply, Request, ServedKey,
};
use super::*;
use crate::circom::zkey::Zkey;
use crate::circom::CircomCircuit;
use crate::keys::test_support::TempDir;
use crate::keys::KeyOrigin;

const TOKEN: &str = "/v1/auth/token";
const HEARTBEAT: &str = "/v1/agent/heartbeat";
const CLAIM: &str = "/v1/agent/jobs/claim";
const KEY_VIEW: &str = "/v1/circuits/hash-chain-10";
const KEY_PK: &str = "/v1/circuits/hash-chain-10/artifacts/pk";

fn job(job_id: Uuid, size_log2: u8, public_input: &str) -> Value {
    let now = Utc::now();
    json!({"job": {
        "job_id": job_id, "contract_id": Uuid::new_v4(), "slot": 7,
        "proof_class": {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": size_log2, "deadline_secs": 600},
        "public_input": public_input, "role": "primary",
        "opens_at": now, "deadline": now + chrono::Duration::seconds(600),
        "lease_expires_at": now + chrono::Duration::seconds(120),
    }})
}

/// A job of the registered `circuit` with `input` (and no `public_input`, as the exchange sends).
fn circuit_job(job_id: Uuid, circuit: &CircuitFixture, input: Value) -> Value {
    let mut job = job(job_id, 4, "0");
    job["job"]["proof_class"]["circuit"] = json!(circuit.id);
    job["job"]["public_input"] = Value::Null;
    job["job"]["input"] = input;
    job
}

/// A fake exchange that serves the development key of 2^10, hands out `jobs` (one per claim, in
/// order), then none, and answers proofs with `on_proof(n)`.
async fn exchange(jobs: Vec<Value>, on_proof: fn(usize) -> Reply) -> FakeExchange {
    exchange_with(None, jobs, on_proof).await
}

/// [`exchange`], also serving `circuit` on the `/v1/circuits...` routes when given.
async fn exchange_with(
    circuit: Option<CircuitFixture>,
    jobs: Vec<Value>,
    on_proof: fn(usize) -> Reply,
) -> FakeExchange {
    scripted(circuit, vec![ServedKey::development(10)], |_, _| None, jobs, on_proof).await
}

/// The exchange of [`exchange_with`] serving `keys` as its hash-chain keys; `tweak` may replace
/// any answer.
async fn scripted(
    circuit: Option<CircuitFixture>,
    keys: Vec<ServedKey>,
    tweak: impl Fn(&Request, usize) -> Option<Reply> + Send + Sync + 'static,
    jobs: Vec<Value>,
    on_proof: fn(usize) -> Reply,
) -> FakeExchange {
    FakeExchange::start(move |request, count| {
        if let Some(reply) = tweak(request, count).or_else(|| reply_with_keys(&keys, request)) {
            return reply;
        }
        agent_routes(request, count, circuit.as_ref(), &jobs, on_proof)
    })
    .await
}

/// The answers of [`scripted`] other than the keys'.
fn agent_routes(
    request: &Request,
    count: usize,
    circuit: Option<&CircuitFixture>,
    jobs: &[Value],
    on_proof: fn(usize) -> Reply,
) -> Reply {
    match request.path.as_str() {
        _ if circuit.is_some() && request.path.starts_with("/v1/circuits") => {
            circuit.and_then(|circuit| circuit.reply(request)).unwrap_or_else(|| Reply::json(404, json!({})))
        }
        TOKEN => Reply::json(200, json!({"token": "tok", "expires_at": Utc::now()})),
        HEARTBEAT => Reply::json(200, json!({"agent_id": Uuid::nil(), "server_time": Utc::now(), "heartbeat_secs": 1})),
        CLAIM => match jobs.get(count - 1) {
            Some(job) => Reply::json(200, job.clone()),
            None => Reply::json(200, json!({"job": null})).after(Duration::from_millis(200)),
        },
        path if path.ends_with("/proof") => on_proof(count),
        path if path.ends_with("/release") => Reply::json(200, json!({})),
        _ => Reply::json(404, json!({"error": {"code": "not_found", "message": "no route"}})),
    }
}

fn accepted(_: usize) -> Reply {
    Reply::json(200, json!({"job_id": Uuid::nil(), "accepted": true, "slot_state": "proved", "reason": null}))
}

fn args(exchange: &FakeExchange, keys: &TempDir) -> AgentArgs {
    AgentArgs {
        sizes: vec![10],
        claim_wait_secs: 1,
        keys_dir: Some(keys.path().to_path_buf()),
        ..AgentArgs::new(exchange.url(), "pk_test")
    }
}

/// Runs the agent until `done` holds for the requests seen (or 120 s), then shuts it down.
async fn run_until(exchange: &FakeExchange, args: AgentArgs, done: impl Fn(&[Request]) -> bool) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_agent(args, async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while !done(&exchange.requests()) && !agent.is_finished() && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), agent).await.expect("the agent stops within 30 s").expect("no panic")
}

fn count(requests: &[Request], suffix: &str) -> usize {
    requests.iter().filter(|request| request.path.ends_with(suffix)).count()
}

/// Whether `proof` verifies against the fixture's verifying key and the public signals of `input`.
fn circuit_proof_verifies(circuit: &CircuitFixture, proof: &str, input: &Value) -> bool {
    let loaded = CircomCircuit::load(&circuit.r1cs, &circuit.wasm).unwrap();
    let public = loaded.public_signals(&loaded.witness(input).unwrap());
    let vk = ark_groth16::prepare_verifying_key(&Zkey::parse(&circuit.zkey).unwrap().proving_key.vk);
    let proof = crate::encoding::decode_proof(proof).unwrap();
    ark_groth16::Groth16::<ark_bn254::Bn254>::verify_proof(&vk, &proof, &public).unwrap()
}

/// [`args`] serving the registered `circuit` too, its artifacts cached in `cache`.
fn circuit_args(exchange: &FakeExchange, keys: &TempDir, cache: &TempDir, circuit: &CircuitFixture) -> AgentArgs {
    AgentArgs {
        circuits: vec![circuit.id.clone()],
        circuits_dir: Some(cache.path().to_path_buf()),
        ..args(exchange, keys)
    }
}

/// Whether `proof` is a 2^10 hash-chain proof for `seed` under `vk`.
fn verifies(vk: &VerifyingKey<Bn254>, proof: &str, seed: u64) -> bool {
    let proof = crate::encoding::decode_proof(proof).unwrap();
    let seed = ark_bn254::Fr::from(seed);
    let public = [seed, crate::hash_chain::hash_chain_output(seed, 10)];
    crate::groth16::verify(&ark_groth16::prepare_verifying_key(vk), &public, &proof)
}

/// The verifying key of the development setup of 2^10 (what [`exchange`] serves).
fn dev_vk() -> VerifyingKey<Bn254> {
    ServedKey::development(10).vk
}

/// The proof of the first proof submission.
fn first_proof(exchange: &FakeExchange) -> String {
    let proofs: Vec<Request> = exchange.requests().into_iter().filter(|r| r.path.ends_with("/proof")).collect();
    proofs[0].json()["proof"].as_str().unwrap().to_string()
}

/// Names of the files in `dir`, sorted.
fn files(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn delivers_a_valid_proof_keyed_by_the_job_id() {
    let keys = TempDir::new("agent-deliver");
    let job_id = Uuid::new_v4();
    let exchange = exchange(vec![job(job_id, 10, "42")], accepted).await;
    run_until(&exchange, AgentArgs { workers: 2, ..args(&exchange, &keys) }, |seen| count(seen, "/proof") >= 1)
        .await
        .unwrap();

    let requests = exchange.requests();
    assert_eq!(requests[0].path, TOKEN);
    assert_eq!(requests[0].json(), json!({"api_key": "pk_test"}));
    let heartbeat = exchange.requests_to(HEARTBEAT)[0].json();
    assert_eq!(heartbeat["workers"], 2);
    // `auto`: ICICLE on a GPU, else the CPU with the reason (no GPU here in CI).
    let backend = heartbeat["backend"].as_str().unwrap();
    assert!(backend.starts_with("cpu (icicle: ICICLE") || backend.starts_with("icicle-"), "{backend}");
    let capability = &heartbeat["capabilities"][0];
    assert_eq!(
        (&capability["system"], &capability["circuit"], &capability["size_log2"]),
        (&json!("groth16-bn254"), &json!("hash-chain"), &json!(10))
    );
    assert!(capability["prove_ms"].as_u64().unwrap() >= 1);
    let claim = exchange.requests_to(CLAIM)[0].json();
    assert_eq!(claim["sizes"], json!([10]));
    assert_eq!(claim["circuits"], json!([]), "no registered circuit unless asked for");
    assert_eq!(claim["wait_secs"], 1);
    assert_eq!(claim["agent_id"], heartbeat["agent_id"]);

    let proofs = exchange.requests_to(&format!("/v1/agent/jobs/{job_id}/proof"));
    assert_eq!(proofs.len(), 1);
    assert_eq!(proofs[0].header("idempotency-key"), Some(job_id.to_string().as_str()));
    assert_eq!(proofs[0].header("authorization"), Some("Bearer tok"));
    let proof = proofs[0].json()["proof"].as_str().unwrap().to_string();
    assert!(verifies(&dev_vk(), &proof, 42));
    assert_eq!(count(&requests, "/release"), 0);
}

#[tokio::test]
async fn fault_invalid_proves_the_next_input() {
    let keys = TempDir::new("agent-invalid");
    let exchange = exchange(vec![job(Uuid::new_v4(), 10, "42")], |_| {
        Reply::json(
            200,
            json!({"job_id": Uuid::nil(), "accepted": false, "slot_state": "open", "reason": "does not verify"}),
        )
    })
    .await;
    let args = AgentArgs { fault: Some(Fault::Invalid), ..args(&exchange, &keys) };
    run_until(&exchange, args, |seen| count(seen, "/proof") >= 1).await.unwrap();
    let proofs: Vec<Request> = exchange.requests().into_iter().filter(|r| r.path.ends_with("/proof")).collect();
    assert_eq!(proofs.len(), 1);
    let proof = proofs[0].json()["proof"].as_str().unwrap().to_string();
    assert!(!verifies(&dev_vk(), &proof, 42));
    assert!(verifies(&dev_vk(), &proof, 43));
}

#[tokio::test]
async fn a_failed_submission_is_retried_unchanged_and_a_job_handed_out_again_gets_the_same_proof() {
    let keys = TempDir::new("agent-retry");
    let job_id = Uuid::new_v4();
    // The first submission meets a 503; the same job is then handed out a second time.
    let exchange = exchange(vec![job(job_id, 10, "5"), job(job_id, 10, "5")], |n| match n {
        1 => Reply::json(503, json!({"error": {"code": "unavailable", "message": "restarting"}})),
        _ => accepted(n),
    })
    .await;
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, "/proof") >= 3).await.unwrap();
    let proofs = exchange.requests_to(&format!("/v1/agent/jobs/{job_id}/proof"));
    assert_eq!(proofs.len(), 3);
    assert!(proofs.iter().all(|p| p.body == proofs[0].body));
    assert!(proofs.iter().all(|p| p.header("idempotency-key") == Some(job_id.to_string().as_str())));
}

#[tokio::test]
async fn a_lost_lease_drops_the_job() {
    let keys = TempDir::new("agent-lease");
    let exchange = exchange(vec![job(Uuid::new_v4(), 10, "1")], |_| {
        Reply::json(409, json!({"error": {"code": "lease_lost", "message": "the slot was settled"}}))
    })
    .await;
    // Two more claims after the refusal show the worker went on without re-sending.
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, "/proof") >= 1 && count(seen, "/claim") >= 3)
        .await
        .unwrap();
    let requests = exchange.requests();
    assert_eq!(count(&requests, "/proof"), 1);
    assert_eq!(count(&requests, "/release"), 0);
}

#[tokio::test]
async fn fault_miss_claims_and_never_delivers() {
    let keys = TempDir::new("agent-miss");
    let job_id = Uuid::new_v4();
    let exchange = exchange(vec![job(job_id, 10, "1")], accepted).await;
    let args = AgentArgs { fault: Some(Fault::Miss), ..args(&exchange, &keys) };
    run_until(&exchange, args, |seen| count(seen, "/claim") >= 3).await.unwrap();
    let requests = exchange.requests();
    assert_eq!(count(&requests, "/proof"), 0);
    assert_eq!(count(&requests, "/release"), 0);
    // Claims say which jobs the agent holds: the exchange hands back only one whose answer was lost.
    let claims = exchange.requests_to(CLAIM);
    assert_eq!(claims[0].json()["in_hand"], json!([]));
    assert_eq!(claims.last().unwrap().json()["in_hand"], json!([job_id]));
}

#[tokio::test]
async fn a_job_it_does_not_serve_is_released() {
    let keys = TempDir::new("agent-release");
    let job_id = Uuid::new_v4();
    let exchange = exchange(vec![job(job_id, 12, "1")], accepted).await;
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, "/release") >= 1).await.unwrap();
    assert_eq!(exchange.requests_to(&format!("/v1/agent/jobs/{job_id}/release")).len(), 1);
    assert_eq!(count(&exchange.requests(), "/proof"), 0);
}

#[tokio::test]
async fn a_job_handed_out_as_shutdown_begins_is_released_not_proved() {
    let keys = TempDir::new("agent-shutdown");
    let job_id = Uuid::new_v4();
    let handed_out = job(job_id, 10, "1");
    // The first claim is answered only after the agent was told to stop.
    let key = ServedKey::development(10);
    let exchange = FakeExchange::start(move |request, _| {
        key.reply(request).unwrap_or_else(|| match request.path.as_str() {
            TOKEN => Reply::json(200, json!({"token": "tok"})),
            HEARTBEAT => Reply::json(200, json!({"heartbeat_secs": 10})),
            CLAIM => Reply::json(200, handed_out.clone()).after(Duration::from_millis(800)),
            _ => Reply::json(200, json!({})),
        })
    })
    .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_agent(args(&exchange, &keys), async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while exchange.requests_to(CLAIM).is_empty() && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), agent).await.unwrap().unwrap().unwrap();
    let requests = exchange.requests();
    assert_eq!(count(&requests, "/claim"), 1);
    assert_eq!(exchange.requests_to(&format!("/v1/agent/jobs/{job_id}/release")).len(), 1);
    assert_eq!(count(&requests, "/proof"), 0);
}

#[tokio::test]
async fn a_refused_api_key_stops_the_agent_before_fetching_keys() {
    let keys = TempDir::new("agent-401");
    let exchange = FakeExchange::start(|_, _| {
        Reply::json(401, json!({"error": {"code": "unauthorized", "message": "unknown API key"}}))
    })
    .await;
    let err = run_agent(args(&exchange, &keys), std::future::pending()).await.unwrap_err().to_string();
    assert!(err.contains("refused the API key") && err.contains("unknown API key"), "{err}");
    assert_eq!(std::fs::read_dir(keys.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_before_any_request() {
    let keys = TempDir::new("agent-insecure-http");
    let exchange = FakeExchange::start(|_, _| {
        Reply::json(401, json!({"error": {"code": "unauthorized", "message": "unknown API key"}}))
    })
    .await;
    // 0.0.0.0 is not loopback, yet on Linux and macOS a connection to it reaches 127.0.0.1, where
    // the fake exchange listens: without the check, the API key would get there.
    let url = exchange.url().replace("127.0.0.1", "0.0.0.0");
    let refused = AgentArgs { exchange: url, backend: BackendChoice::Cpu, ..args(&exchange, &keys) };
    let err = run_agent(refused.clone(), std::future::pending()).await.unwrap_err().to_string();
    assert!(err.starts_with("--exchange / PCX_EXCHANGE_URL") && err.contains("--allow-insecure-http"), "{err}");
    assert!(exchange.requests().is_empty(), "{:?}", exchange.requests());

    // Where 0.0.0.0 does reach this machine, --allow-insecure-http lets the same URL through.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let probe_port = probe.local_addr().unwrap().port();
    if std::net::TcpStream::connect_timeout(&([0, 0, 0, 0], probe_port).into(), Duration::from_secs(1)).is_err() {
        return;
    }
    let allowed = AgentArgs { allow_insecure_http: true, ..refused };
    let err = run_agent(allowed, std::future::pending()).await.unwrap_err().to_string();
    assert!(err.contains("refused the API key"), "{err}");
    assert_eq!(exchange.requests_to(TOKEN).len(), 1);
}

#[tokio::test]
async fn shutdown_is_prompt_while_the_exchange_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let keys = TempDir::new("agent-down");
    let args = AgentArgs {
        keys_dir: Some(keys.path().to_path_buf()),
        ..AgentArgs::new(format!("http://127.0.0.1:{port}"), "pk_test")
    };
    let started = Instant::now();
    run_agent(args, tokio::time::sleep(Duration::from_millis(700))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_cpu_backend_is_named_cpu_in_heartbeats() {
    let keys = TempDir::new("agent-cpu");
    let exchange = exchange(vec![], accepted).await;
    let args = AgentArgs { backend: BackendChoice::Cpu, ..args(&exchange, &keys) };
    run_until(&exchange, args, |seen| count(seen, HEARTBEAT) >= 1).await.unwrap();
    assert_eq!(exchange.requests_to(HEARTBEAT)[0].json()["backend"], "cpu");
}

#[tokio::test]
async fn an_unusable_icicle_backend_is_refused_clearly() {
    match select_backend(BackendChoice::Icicle) {
        Ok(selected) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped: ICICLE is usable here ({}), nothing to refuse", selected.label);
            return;
        }
        Err(err) => {
            let err = err.to_string();
            assert!(err.starts_with("--backend icicle: ICICLE"), "{err}");
            assert!(err.ends_with("use --backend cpu (or auto) to prove on the CPU"), "{err}");
        }
    }
    let args = AgentArgs { backend: BackendChoice::Icicle, ..AgentArgs::new("http://127.0.0.1:1", "k") };
    let err = run_agent(args, std::future::pending()).await.unwrap_err().to_string();
    assert!(err.starts_with("--backend icicle: ICICLE"), "{err}");
}

#[tokio::test]
async fn serves_a_registered_circuit_and_its_proof_verifies() {
    let (keys, cache, circuit) =
        (TempDir::new("agent-circuit"), TempDir::new("agent-cache"), CircuitFixture::multiplier());
    let job_id = Uuid::new_v4();
    let input = circuit.input.clone();
    // The same job is handed out twice: the second time gets the very same proof.
    let jobs = vec![circuit_job(job_id, &circuit, input.clone()), circuit_job(job_id, &circuit, input.clone())];
    let exchange = exchange_with(Some(circuit.clone()), jobs, accepted).await;
    // One worker: with two, the second would find the job busy on the first and leave it there.
    run_until(&exchange, circuit_args(&exchange, &keys, &cache, &circuit), |seen| count(seen, "/proof") >= 2)
        .await
        .unwrap();

    let heartbeat = exchange.requests_to(HEARTBEAT)[0].json();
    let capabilities = heartbeat["capabilities"].as_array().unwrap();
    assert_eq!(capabilities.len(), 2, "{capabilities:?}");
    assert_eq!(capabilities[0]["circuit"], "hash-chain");
    let served = &capabilities[1];
    assert_eq!(
        (&served["system"], &served["circuit"], &served["size_log2"]),
        (&json!("groth16-bn254"), &json!(circuit.id), &json!(4))
    );
    assert!(served["prove_ms"].as_u64().unwrap() >= 1);
    assert!(served["proofs_per_hour"].as_u64().unwrap() >= 1);
    let claim = exchange.requests_to(CLAIM)[0].json();
    assert_eq!((&claim["sizes"], &claim["circuits"]), (&json!([10]), &json!([circuit.id])));
    let artifacts = format!("/v1/circuits/{}/artifacts/", circuit.id);
    assert_eq!(exchange.requests().iter().filter(|r| r.path.starts_with(&artifacts)).count(), 3);
    assert_eq!(exchange.requests_to(KEY_PK).len(), 1, "and the hash-chain key");
    assert!(cache.path().join(&circuit.id).join("zkey").is_file());

    let proofs = exchange.requests_to(&format!("/v1/agent/jobs/{job_id}/proof"));
    assert_eq!(proofs.len(), 2);
    assert_eq!(proofs[0].header("idempotency-key"), Some(job_id.to_string().as_str()));
    assert_eq!(proofs[1].body, proofs[0].body, "one proof per job, the same bytes when sent again");
    let proof = proofs[0].json()["proof"].as_str().unwrap().to_string();
    assert!(circuit_proof_verifies(&circuit, &proof, &input));
    assert!(!circuit_proof_verifies(&circuit, &proof, &json!({"a": "3", "b": "11", "c": "8"})), "bound to its signals");
    assert_eq!(count(&exchange.requests(), "/release"), 0);
}

#[tokio::test]
async fn fault_invalid_makes_registered_circuit_proofs_that_do_not_verify() {
    let (keys, cache, circuit) =
        (TempDir::new("agent-circuit-invalid"), TempDir::new("agent-cache-invalid"), CircuitFixture::multiplier());
    let input = circuit.input.clone();
    let jobs = vec![circuit_job(Uuid::new_v4(), &circuit, input.clone())];
    let exchange = exchange_with(Some(circuit.clone()), jobs, |_| {
        Reply::json(
            200,
            json!({"job_id": Uuid::nil(), "accepted": false, "slot_state": "open", "reason": "does not verify"}),
        )
    })
    .await;
    let args = AgentArgs { fault: Some(Fault::Invalid), ..circuit_args(&exchange, &keys, &cache, &circuit) };
    run_until(&exchange, args, |seen| count(seen, "/proof") >= 1).await.unwrap();
    let proofs: Vec<Request> = exchange.requests().into_iter().filter(|r| r.path.ends_with("/proof")).collect();
    let proof = proofs[0].json()["proof"].as_str().unwrap().to_string();
    assert!(crate::encoding::decode_proof(&proof).is_ok(), "well-formed");
    assert!(!circuit_proof_verifies(&circuit, &proof, &input));
}

#[tokio::test]
async fn registered_circuit_jobs_it_cannot_prove_are_released() {
    let (keys, cache, circuit) =
        (TempDir::new("agent-circuit-release"), TempDir::new("agent-cache-release"), CircuitFixture::multiplier());
    let [no_input, unprovable, not_an_object, unknown] = [(); 4].map(|()| Uuid::new_v4());
    let mut other = circuit_job(unknown, &circuit, circuit.input.clone());
    other["job"]["proof_class"]["circuit"] = json!("f".repeat(64));
    let jobs = vec![
        circuit_job(no_input, &circuit, Value::Null),
        // a = 0 fails the circuit's assert: no witness.
        circuit_job(unprovable, &circuit, json!({"a": "0", "b": "11", "c": "7"})),
        circuit_job(not_an_object, &circuit, json!(["3", "11", "7"])),
        other,
    ];
    let exchange = exchange_with(Some(circuit.clone()), jobs, accepted).await;
    run_until(&exchange, circuit_args(&exchange, &keys, &cache, &circuit), |seen| count(seen, "/release") >= 4)
        .await
        .unwrap();
    for job_id in [no_input, unprovable, not_an_object, unknown] {
        assert_eq!(exchange.requests_to(&format!("/v1/agent/jobs/{job_id}/release")).len(), 1, "{job_id}");
    }
    assert_eq!(count(&exchange.requests(), "/proof"), 0);
}

#[tokio::test]
async fn a_named_circuit_the_exchange_does_not_have_stops_the_agent() {
    let (keys, cache, circuit) =
        (TempDir::new("agent-circuit-missing"), TempDir::new("agent-cache-missing"), CircuitFixture::multiplier());
    let exchange = exchange_with(Some(circuit.clone()), vec![], accepted).await;
    let args = AgentArgs { circuits: vec!["d".repeat(64)], ..circuit_args(&exchange, &keys, &cache, &circuit) };
    let err = run_agent(args, std::future::pending()).await.unwrap_err().to_string();
    assert!(err.contains("has no circuit"), "{err}");
    assert_eq!(count(&exchange.requests(), HEARTBEAT), 0, "nothing advertised");
}

#[tokio::test]
async fn downloads_the_exchanges_key_proves_with_it_and_reuses_it_at_the_next_start() {
    let keys = TempDir::new("agent-download");
    // A setup only the exchange has: a key generated locally would not verify under it.
    let served = ServedKey::random(10);
    let job_id = Uuid::new_v4();
    let exchange = scripted(None, vec![served.clone()], |_, _| None, vec![job(job_id, 10, "42")], accepted).await;
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, "/proof") >= 1).await.unwrap();

    let pk_requests = exchange.requests_to(KEY_PK);
    assert_eq!(pk_requests.len(), 1);
    assert_eq!(pk_requests[0].header("authorization"), Some("Bearer tok"));
    let view = exchange.requests_to(KEY_VIEW);
    assert_eq!(view.len(), 1);
    let requests = exchange.requests();
    let position = |path: &str| requests.iter().position(|request| request.path == path).unwrap();
    assert!(position(KEY_PK) < position(HEARTBEAT), "the key is fetched before anything is advertised");
    let store = KeyStore::with_origin(keys.path(), KeyOrigin::Provided);
    assert_eq!(std::fs::read(store.proving_key_path(10)).unwrap(), *served.bytes);
    assert_eq!(store.verifying_key(10).unwrap().vk, served.vk, "the .vk was rebuilt from the exchange's .pk");
    assert_eq!(files(&keys), ["hash-chain-10.pk", "hash-chain-10.vk"], "no temporary file left");
    let proof = first_proof(&exchange);
    assert!(verifies(&served.vk, &proof, 42));
    assert!(!verifies(&dev_vk(), &proof, 42), "not proved with development keys");

    // A second start finds the key in the keys directory.
    let heartbeats = exchange.requests_to(HEARTBEAT).len();
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, HEARTBEAT) > heartbeats).await.unwrap();
    assert_eq!(exchange.requests_to(KEY_VIEW).len(), 2, "the view is read at every start");
    assert_eq!(exchange.requests_to(KEY_PK).len(), 1, "the cached key matched: not downloaded again");
}

#[tokio::test]
async fn a_key_of_another_setup_in_the_keys_dir_is_replaced_and_a_stale_vk_rebuilt() {
    let keys = TempDir::new("agent-replace");
    // The keys directory holds the development key of 2^10 (as `pcx prover bench` leaves it)...
    let dev = dev_keys();
    dev_key(10);
    let store = KeyStore::with_origin(keys.path(), KeyOrigin::Provided);
    std::fs::copy(dev.proving_key_path(10), store.proving_key_path(10)).unwrap();
    std::fs::copy(dev.verifying_key_path(10), store.verifying_key_path(10)).unwrap();
    // ... and the exchange serves another setup.
    let served = ServedKey::random(10);
    let exchange =
        scripted(None, vec![served.clone()], |_, _| None, vec![job(Uuid::new_v4(), 10, "9")], accepted).await;
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, "/proof") >= 1).await.unwrap();
    assert_eq!(exchange.requests_to(KEY_PK).len(), 1);
    assert_eq!(std::fs::read(store.proving_key_path(10)).unwrap(), *served.bytes);
    assert_eq!(store.verifying_key(10).unwrap().vk, served.vk, "the development .vk was deleted and rebuilt");
    let proof = first_proof(&exchange);
    assert!(verifies(&served.vk, &proof, 9));
    assert!(!verifies(&dev_vk(), &proof, 9));

    // A `.vk` of another setup next to the exchange's `.pk`: the `.pk` is reused, the `.vk` rebuilt.
    std::fs::copy(dev.verifying_key_path(10), store.verifying_key_path(10)).unwrap();
    let heartbeats = exchange.requests_to(HEARTBEAT).len();
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, HEARTBEAT) > heartbeats).await.unwrap();
    assert_eq!(exchange.requests_to(KEY_PK).len(), 1, "the .pk matched");
    let reloaded = KeyStore::with_origin(keys.path(), KeyOrigin::Provided);
    assert_eq!(reloaded.verifying_key(10).unwrap().vk, served.vk);
}

#[tokio::test]
async fn a_key_download_that_does_not_match_its_sha256_is_refused() {
    let keys = TempDir::new("agent-bad-sha");
    let served = ServedKey::development(10);
    let corrupt = {
        let mut bytes = served.bytes.to_vec();
        bytes[1000] ^= 1;
        bytes
    };
    // The view and the header state the true sha256; the body has one byte flipped.
    let (true_sha, body) = (served.sha256.clone(), corrupt.clone());
    let exchange = scripted(
        None,
        vec![served],
        move |request, _| {
            (request.path == KEY_PK).then(|| Reply::bytes(200, body.clone()).header("x-content-sha256", &true_sha))
        },
        vec![],
        accepted,
    )
    .await;
    let err = format!("{:#}", run_agent(args(&exchange, &keys), std::future::pending()).await.unwrap_err());
    assert!(
        err.contains("hash-chain 2^10") && err.contains("did not match") && err.contains(&sha256_hex(&corrupt)),
        "{err}"
    );
    assert_eq!(exchange.requests_to(KEY_PK).len(), 2, "downloaded once more, then refused");
    assert!(files(&keys).is_empty(), "neither the bad key nor a temporary file is kept: {:?}", files(&keys));
    assert_eq!(count(&exchange.requests(), HEARTBEAT), 0, "nothing advertised");
}

#[tokio::test]
async fn a_key_of_another_size_is_refused_and_deleted() {
    let keys = TempDir::new("agent-other-size");
    // The 2^11 key on the 2^10 routes: its sha256 matches, its shape does not.
    let exchange = scripted(None, vec![ServedKey::development(11).served_as(10)], |_, _| None, vec![], accepted).await;
    let err = format!("{:#}", run_agent(args(&exchange, &keys), std::future::pending()).await.unwrap_err());
    assert!(err.contains("not usable") && err.contains("another size"), "{err}");
    assert!(files(&keys).is_empty(), "{:?}", files(&keys));
    assert_eq!(count(&exchange.requests(), HEARTBEAT), 0);
}

#[tokio::test]
async fn waits_while_the_exchange_is_still_making_the_setup() {
    let keys = TempDir::new("agent-setup-wait");
    let exchange = scripted(
        None,
        vec![ServedKey::development(10)],
        |request, count| {
            (request.path == KEY_VIEW && count <= 2).then(|| {
                Reply::json(503, json!({"error": {"code": "unavailable", "message": "making the hash-chain setup"}}))
                    .header("Retry-After", "1")
            })
        },
        vec![job(Uuid::new_v4(), 10, "3")],
        accepted,
    )
    .await;
    let started = Instant::now();
    run_until(&exchange, args(&exchange, &keys), |seen| count(seen, "/proof") >= 1).await.unwrap();
    assert_eq!(exchange.requests_to(KEY_VIEW).len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After was honoured: {:?}", started.elapsed());
    assert!(verifies(&dev_vk(), &first_proof(&exchange), 3));
}

#[tokio::test]
async fn an_exchange_that_serves_no_key_for_a_size_stops_the_agent() {
    let keys = TempDir::new("agent-no-key");
    // Keys for 2^10 only; the agent is asked for 2^11 too.
    let exchange = exchange(vec![], accepted).await;
    let args = AgentArgs { sizes: vec![10, 11], ..args(&exchange, &keys) };
    let err = format!("{:#}", run_agent(args, std::future::pending()).await.unwrap_err());
    assert!(err.contains("serves no hash-chain 2^11 key"), "{err}");
    assert_eq!(count(&exchange.requests(), HEARTBEAT), 0);
    assert_eq!(files(&keys), ["hash-chain-10.pk", "hash-chain-10.vk"]);
}

#[tokio::test]
async fn shutdown_ends_the_wait_for_a_setup() {
    let keys = TempDir::new("agent-setup-shutdown");
    let exchange = scripted(
        None,
        vec![],
        |request, _| {
            (request.path == KEY_VIEW).then(|| {
                Reply::json(503, json!({"error": {"code": "unavailable", "message": "making the setup"}}))
                    .header("Retry-After", "30")
            })
        },
        vec![],
        accepted,
    )
    .await;
    let started = Instant::now();
    run_agent(args(&exchange, &keys), tokio::time::sleep(Duration::from_millis(1500))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(!exchange.requests_to(KEY_VIEW).is_empty());
    assert_eq!(count(&exchange.requests(), HEARTBEAT), 0);
}
