//! Circuits users bring, over real HTTP on a fresh database: registration of circom + snarkjs
//! fixtures (checked, content-addressed, streamed into PostgreSQL), broken uploads refused with
//! the file named and nothing kept, and a registered circuit traded end to end: an offer and a
//! contract on its class, inputs checked (an unprovable one refused), a real proof delivered,
//! verified, and readable in snarkjs' shapes (checked with snarkjs itself).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{rfc, serve_config, spawn_app, spawn_app_with, spawn_manual};
use serde_json::{json, Value};
use uuid::Uuid;

use common::circuit_upload::{fixture, fixtures, parts_of, replace, upload, Parts};

async fn count(db: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(db).await.unwrap()
}

#[tokio::test]
async fn registering_a_circuit_checks_it_and_the_same_files_give_the_same_circuit() {
    let app = spawn_app().await;
    let (buyer_id, buyer) = app.account("rollup", "buyer").await;
    let (_, prover) = app.account("prover", "prover").await;
    upload(&app, None, &parts_of("multiplier")).await.assert_error(401, "unauthenticated");

    let first = upload(&app, Some(&buyer), &parts_of("multiplier")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let circuit = &first.body;
    let id = circuit["circuit_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(circuit["status"], "ready");
    assert_eq!(circuit["owner_id"], buyer_id.as_str());
    assert_eq!((circuit["constraints"].as_u64(), circuit["public_signals"].as_u64()), (Some(7), Some(2)));
    assert_eq!(circuit["size_log2"], 4);
    assert_eq!(circuit["proof_class"]["circuit"], id.as_str());
    let r1cs = fixture("multiplier", "multiplier.r1cs");
    use sha2::Digest;
    assert_eq!(circuit["artifacts"]["r1cs"]["sha256"], hex::encode(sha2::Sha256::digest(&r1cs)));
    assert_eq!(circuit["artifacts"]["r1cs"]["bytes"], r1cs.len());

    // The same files again, by someone else and under another name: the same circuit, nothing new.
    let blobs = count(&app.db, "artifact_blobs").await;
    let again = upload(&app, Some(&prover), &replace(parts_of("multiplier"), "name", b"again".to_vec())).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["circuit_id"], id.as_str());
    assert_eq!(again.body["name"], "multiplier");
    assert_eq!(count(&app.db, "artifact_blobs").await, blobs);

    let list = app.get("/v1/circuits", None).await;
    assert_eq!(list.body["circuits"].as_array().unwrap().len(), 1, "{}", list.body);
    assert_eq!(app.get(&format!("/v1/circuits/{id}"), None).await.body["circuit_id"], id.as_str());
    app.get(&format!("/v1/circuits/{}", "0".repeat(64)), None).await.assert_error(404, "not_found");
    app.get("/v1/circuits/not-an-id", None).await.assert_error(404, "not_found");

    // Artifacts stream back byte for byte, with their sha256.
    for (kind, file) in [("r1cs", "multiplier.r1cs"), ("wasm", "multiplier.wasm"), ("zkey", "multiplier.zkey")] {
        let url = app.url(&format!("/v1/circuits/{id}/artifacts/{kind}"));
        assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401, "artifacts need a token");
        let response = app.http.get(&url).bearer_auth(&prover).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let sha = response.headers()["x-content-sha256"].to_str().unwrap().to_owned();
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), fixture("multiplier", file).as_slice(), "{kind}");
        assert_eq!(sha, hex::encode(sha2::Sha256::digest(&bytes)));
    }

    // The verifying key is the one snarkjs exported from the same zkey.
    let vk = app.get(&format!("/v1/circuits/{id}/verification_key"), None).await.body;
    let snarkjs_vk: Value = serde_json::from_slice(&fixture("multiplier", "vk.json")).unwrap();
    for field in ["protocol", "curve", "nPublic", "vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC"] {
        assert_eq!(vk[field], snarkjs_vk[field], "{field}");
    }
    let source = app.http.get(app.url(&format!("/v1/circuits/{id}/verifier.sol"))).send().await.unwrap().text().await.unwrap();
    assert!(source.contains("function verifyProof(") && source.contains("pragma solidity"), "{source}");
}

#[tokio::test]
async fn broken_uploads_are_refused_naming_the_file_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let (_, token) = app.account("rollup", "buyer").await;
    let good = || parts_of("multiplier");
    let r1cs = fixture("multiplier", "multiplier.r1cs");
    let cases: Vec<(&str, Parts, &str)> = vec![
        ("a truncated r1cs", replace(good(), "r1cs", r1cs[..r1cs.len() - 9].to_vec()), "r1cs"),
        ("a zkey as the r1cs", replace(good(), "r1cs", fixture("multiplier", "multiplier.zkey")), "r1cs"),
        ("a wasm that is not WebAssembly", replace(good(), "wasm", b"\0asm but not really".to_vec()), "wasm"),
        ("another circuit's wasm", replace(good(), "wasm", fixture("poseidon_chain", "poseidon_chain.wasm")), "wasm"),
        ("another circuit's zkey", replace(good(), "zkey", fixture("poseidon_chain", "poseidon_chain.zkey")), "zkey"),
        ("an unprovable sample input", replace(good(), "sample_input", fixture("multiplier", "unprovable_input.json")), "sample_input"),
        ("a sample input that is not JSON", replace(good(), "sample_input", b"{a: 1".to_vec()), "sample_input"),
        ("an empty zkey", replace(good(), "zkey", Vec::new()), "zkey"),
    ];
    for (what, parts, artifact) in cases {
        let reply = upload(&app, Some(&token), &parts).await;
        let message = reply.assert_error(422, "circuit_invalid");
        assert_eq!(reply.body["error"]["artifact"], artifact, "{what}: {message}");
    }
    // A zkey whose points are all valid but not this circuit's setup (two H points swapped) has
    // the right counts; the sample proof catches it.
    let mut zkey = fixture("multiplier", "multiplier.zkey");
    let h = section(&zkey, 9);
    let (first, second) = zkey[h..h + 128].split_at(64);
    let swapped = [second, first].concat();
    zkey[h..h + 128].copy_from_slice(&swapped);
    let reply = upload(&app, Some(&token), &replace(good(), "zkey", zkey)).await;
    let message = reply.assert_error(422, "circuit_invalid");
    assert_eq!(reply.body["error"]["artifact"], "zkey", "{}", reply.body);
    assert!(message.contains("does not verify"), "{message}");

    let mut missing = good();
    missing.retain(|(name, _, _)| *name != "wasm");
    let message = upload(&app, Some(&token), &missing).await.assert_error(422, "invalid_body");
    assert!(message.contains("wasm"), "{message}");
    let mut extra = good();
    extra.push(("pepper", None, b"1".to_vec()));
    upload(&app, Some(&token), &extra).await.assert_error(422, "invalid_body");
    let mut twice = good();
    twice.push(("r1cs", Some("again.r1cs"), r1cs.clone()));
    upload(&app, Some(&token), &twice).await.assert_error(422, "invalid_body");
    app.post_raw("/v1/circuits", Some(&token), Some("application/json"), "{}").await.assert_error(415, "unsupported_media_type");

    assert_eq!(count(&app.db, "artifact_blobs").await, 0, "nothing of a refused upload is kept");
    assert_eq!(count(&app.db, "artifact_chunks").await, 0);
    assert_eq!(count(&app.db, "circuits").await, 0);
    assert_eq!(upload(&app, Some(&token), &good()).await.status, 201, "the good files still register");
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413_with_the_limit() {
    let mut config = serve_config();
    config.max_circuit_bytes = 100_000;
    let app = spawn_app_with(config).await;
    let (_, token) = app.account("rollup", "buyer").await;
    // poseidon_chain's wasm alone is 1.7 MB.
    let message = upload(&app, Some(&token), &parts_of("poseidon_chain")).await.assert_error(413, "payload_too_large");
    assert!(message.contains("100000"), "{message}");
    assert_eq!(count(&app.db, "artifact_blobs").await, 0);
    assert_eq!(upload(&app, Some(&token), &parts_of("multiplier")).await.status, 201);
}

/// A Monday morning in 2031: far from any real clock.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 3, 7, 0, 0).unwrap()
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

/// Runs snarkjs from the fixtures' node_modules; `.ci/run` installs them.
fn snarkjs(args: &[&str]) -> std::process::Output {
    let cli = fixtures().join("node_modules/snarkjs/build/cli.cjs");
    assert!(cli.exists(), "snarkjs is missing: run `npm ci` in prover-pool/tests/fixtures/circom (.ci/run does)");
    Command::new("node").arg(cli).args(args).output().expect("node runs")
}

#[tokio::test]
async fn a_registered_circuit_trades_like_the_built_in_one_and_its_proofs_check_with_snarkjs() {
    let mut config = serve_config();
    config.market.discounts = Some(r#"{"volume": [], "term": [], "max_total_bps": 0}"#.into());
    let app = spawn_manual(config, t0()).await;
    let (_, buyer) = app.account("rollup", "buyer").await;
    let registered = upload(&app, Some(&buyer), &parts_of("multiplier")).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let id = registered.body["circuit_id"].as_str().unwrap().to_owned();

    // An offer for its class: size_log2 follows from the circuit; a wrong one is refused.
    let (prover_id, prover) = common::prover(&app, "alice", "1000").await;
    let offer = |class: Value| {
        json!({"proof_class": class, "window_start": rfc(t0() - secs(3600)), "window_end": rfc(t0() + Duration::days(2)),
               "proofs_per_hour": 360, "price_per_proof": "0.01"})
    };
    let class = json!({"system": "groth16-bn254", "circuit": id, "deadline_secs": 30});
    let wrong = json!({"system": "groth16-bn254", "circuit": id, "size_log2": 12, "deadline_secs": 30});
    let message = app.post("/v1/offers", Some(&prover), offer(wrong)).await.assert_error(422, "invalid_proof_class");
    assert!(message.contains("use 4"), "{message}");
    let unknown = json!({"system": "groth16-bn254", "circuit": "f".repeat(64), "deadline_secs": 30});
    app.post("/v1/offers", Some(&prover), offer(unknown)).await.assert_error(422, "invalid_proof_class");
    let posted = app.post("/v1/offers", Some(&prover), offer(class.clone())).await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(posted.body["proof_class"]["size_log2"], 4);

    // A contract of three slots, 20 s apart.
    let (buyer_id, _) = (registered.body["owner_id"].as_str().unwrap().to_owned(), ());
    app.deposit(&buyer_id, "10").await;
    let start = t0() + secs(60);
    let quote = app
        .post("/v1/quotes", Some(&buyer), json!({"proof_class": class, "schedule": {"start": rfc(start), "end": rfc(start + secs(60)), "every_secs": 20}, "redundancy": 0}))
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    let contract = app.post("/v1/contracts", Some(&buyer), json!({"quote_id": quote.body["quote_id"]})).await;
    assert_eq!(contract.status, 201, "{}", contract.body);
    let contract_id = contract.body["contract_id"].as_str().unwrap().to_owned();
    let input_url = |n: u64| format!("/v1/contracts/{contract_id}/slots/{n}/input");

    // Inputs: checked against every constraint when posted.
    let message = app.put(&input_url(0), Some(&buyer), json!({"input": {"a": "0", "b": "11", "c": "7"}})).await.assert_error(422, "input_unprovable");
    assert!(message.contains("Multiplier") && message.contains("line"), "says which template and line fails: {message}");
    let message = app.put(&input_url(0), Some(&buyer), json!({"input": {"a": "3", "b": "11"}})).await.assert_error(422, "input_unprovable");
    assert!(message.contains("needs 3"), "{message}");
    app.put(&input_url(0), Some(&buyer), json!({"public_input": "5"})).await.assert_error(422, "invalid_input");
    app.put(&input_url(0), Some(&buyer), json!({})).await.assert_error(422, "invalid_body");
    let posted = app.put(&input_url(0), Some(&buyer), json!({"input": {"a": "3", "b": "11", "c": "7"}})).await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.body["public_signals"], json!(["40", "7"]));
    assert_eq!(posted.body["input"]["b"], "11");
    let posted = app.put(&input_url(1), Some(&buyer), json!({"input": {"a": 5, "b": "-1", "c": "0x10"}})).await;
    assert_eq!(posted.status, 200, "{}", posted.body);

    // The prover's agent: advertises the circuit, claims its jobs by id, proves for real.
    let agent = Uuid::new_v4();
    let heartbeat = app
        .post("/v1/agent/heartbeat", Some(&prover), json!({"agent_id": agent, "workers": 1, "backend": "cpu",
            "capabilities": [{"system": "groth16-bn254", "circuit": id, "size_log2": 4, "prove_ms": 50, "proofs_per_hour": 72000}]}))
        .await;
    assert_eq!(heartbeat.status, 200, "{}", heartbeat.body);
    let loaded = pcx_prover_pool::circom::CircomCircuit::load(
        &fixture("multiplier", "multiplier.r1cs"),
        &fixture("multiplier", "multiplier.wasm"),
    )
    .unwrap();
    let zkey = pcx_prover_pool::circom::zkey::Zkey::parse(&fixture("multiplier", "multiplier.zkey")).unwrap();
    let mut delivered = 0;
    while app.now() < start + secs(60) {
        app.run_until(app.now() + secs(1), secs(1)).await;
        let hash_chain_only = app
            .post("/v1/agent/jobs/claim", Some(&prover), json!({"agent_id": agent, "wait_secs": 0, "sizes": [4, 10]}))
            .await;
        assert!(hash_chain_only.body["job"].is_null(), "a job of a circuit the agent did not name: {}", hash_chain_only.body);
        let claim = app
            .post("/v1/agent/jobs/claim", Some(&prover), json!({"agent_id": agent, "wait_secs": 0, "sizes": [], "circuits": [id]}))
            .await;
        assert_eq!(claim.status, 200, "{}", claim.body);
        let job = &claim.body["job"];
        if job.is_null() {
            continue;
        }
        assert!(job.get("public_input").is_none(), "{job}");
        let witness = loaded.witness(&job["input"]).unwrap();
        let proof = pcx_prover_pool::circom::prove(&loaded, &zkey, &witness, &pcx_prover_pool::msm::ArkworksMsm, &mut rand::rngs::OsRng).unwrap();
        let text = pcx_prover_pool::encoding::encode_proof(&proof);
        let job_id = job["job_id"].as_str().unwrap();
        let submitted = app.post(&format!("/v1/agent/jobs/{job_id}/proof"), Some(&prover), json!({"proof": text})).await;
        assert_eq!(submitted.body["accepted"], true, "{}", submitted.body);
        delivered += 1;
    }
    assert_eq!(delivered, 2, "two slots had inputs");
    let slots = app.get(&format!("/v1/contracts/{contract_id}/slots"), Some(&buyer)).await.body;
    assert_eq!(slots["slots"][0]["state"], "delivered", "{slots}");
    assert_eq!(slots["slots"][0]["delivered_by"], prover_id.as_str());
    assert_eq!((slots["slots"][2]["state"].as_str(), slots["slots"][2]["reason"].as_str()), (Some("unused"), Some("no_input")));

    // The proof in snarkjs' shapes: snarkjs itself says OK with the exchange's vk.json.
    let proof = app.get(&format!("/v1/contracts/{contract_id}/slots/1/proof"), Some(&buyer)).await;
    assert_eq!(proof.status, 200, "{}", proof.body);
    let public = &proof.body["snarkjs"]["publicSignals"];
    assert_eq!(public, &proof.body["public_inputs"]);
    assert_eq!(proof.body["calldata"].as_array().map(Vec::len), Some(4), "{}", proof.body["calldata"]);
    let dir = tempdir();
    let vk = app.get(&format!("/v1/circuits/{id}/verification_key"), None).await.body;
    std::fs::write(dir.join("vk.json"), vk.to_string()).unwrap();
    std::fs::write(dir.join("public.json"), public.to_string()).unwrap();
    std::fs::write(dir.join("proof.json"), proof.body["snarkjs"]["proof"].to_string()).unwrap();
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let ok = snarkjs(&["groth16", "verify", &path("vk.json"), &path("public.json"), &path("proof.json")]);
    let said = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success() && said.contains("OK"), "snarkjs: {said} {}", String::from_utf8_lossy(&ok.stderr));
    // A public signal changed: snarkjs refuses it.
    let mut wrong = public.clone();
    wrong[0] = json!("41");
    std::fs::write(dir.join("public.json"), wrong.to_string()).unwrap();
    let refused = snarkjs(&["groth16", "verify", &path("vk.json"), &path("public.json"), &path("proof.json")]);
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("OK!"), "snarkjs accepted a wrong signal");
    // The oracle prices the circuit's class and reputation counts its deliveries.
    let feed = format!("groth16-bn254:{id}:4:60");
    let feeds = app.get("/v1/oracle/feeds", None).await.body;
    assert!(feeds.to_string().contains(&feed), "the registered circuit has feeds: {feeds}");
    pcx_exchange::service::oracle::tick(&app.state, app.now()).await.unwrap();
    let latest = app.get(&format!("/v1/oracle/prices/latest?feed={feed}"), None).await;
    assert_eq!(latest.status, 200, "{}", latest.body);
    assert_eq!(latest.body["feed_id"], feed.as_str(), "{}", latest.body);
    let reputation = app.get(&format!("/v1/provers/{prover_id}/reputation"), None).await.body;
    let ours = reputation["classes"].as_array().unwrap().iter().find(|c| c["circuit"] == id.as_str()).cloned();
    assert_eq!(ours.map(|c| c["delivered"].clone()), Some(json!(2)), "{reputation}");
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true, "{summary}");
}

/// Where the body of binfile section `id` starts.
fn section(file: &[u8], id: u32) -> usize {
    let mut at = 12;
    loop {
        let kind = u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let size = u64::from_le_bytes(file[at + 4..at + 12].try_into().unwrap()) as usize;
        if kind == id {
            return at + 12;
        }
        at += 12 + size;
    }
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pcx-circuits-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
