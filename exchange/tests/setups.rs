//! The built-in circuit's keys cannot be forged: without `--dev-keys` each size's setup is made
//! once from the OS's randomness, kept in the database (shared by replicas, one setup however
//! many race), published (vk.json, a Solidity verifier) and served to agents; proofs made with
//! the public development setup are refused; a database holding a development setup is not
//! used by an exchange run without the flag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve_config, spawn_on};
use pcx_domain::{ProofClass, ProofSystem};
use pcx_prover_pool::circuit::Verdict;
use pcx_prover_pool::keys::{development_setup, proving_key_from_bytes, KeyStore};
use sha2::Digest;

fn five() -> ark_bn254::Fr {
    ark_bn254::Fr::from(5u64)
}

fn production_config() -> pcx_exchange::config::ServeConfig {
    let mut config = serve_config();
    config.settlement.dev_keys = false;
    config
}

fn class(size_log2: u8) -> ProofClass {
    ProofClass { system: ProofSystem::Groth16Bn254, circuit: "hash-chain".into(), size_log2, deadline_secs: 60 }
}

#[tokio::test]
async fn setups_come_from_os_randomness_are_shared_by_replicas_and_forged_proofs_fail() {
    let db = common::fresh_database().await;
    let (first, second) = (spawn_on(db.clone(), production_config()).await, spawn_on(db.clone(), production_config()).await);
    // Two replicas asked at once make one setup between them.
    let (a, b) = tokio::join!(first.get("/v1/circuits/hash-chain-10", None), second.get("/v1/circuits/hash-chain-10", None));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["artifacts"]["pk"]["sha256"], b.body["artifacts"]["pk"]["sha256"], "one setup for both");
    assert_eq!(a.body["development_keys"], false);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM builtin_setups").fetch_one(&db).await.unwrap();
    assert_eq!(rows, 1);

    // Agents download the proving key; it is a key of that size, and not the public development one.
    let (_, token) = first.account("p", "prover").await;
    let url = first.url("/v1/circuits/hash-chain-10/artifacts/pk");
    let response = first.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sha = response.headers()["x-content-sha256"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(a.body["artifacts"]["pk"]["sha256"], sha.as_str());
    let pk = proving_key_from_bytes(&bytes, 10).unwrap();
    let dev = development_setup(10).unwrap();
    assert_ne!(pk.vk, dev.vk, "the exchange's setup is not the derivable one");
    assert!(proving_key_from_bytes(&bytes, 11).is_err(), "a key for another size is refused");

    // The exchange verifies with its setup: a proof from the downloaded key passes, a proof from
    // the development key (which anyone can recompute) is refused, on both replicas.
    let dir = std::env::temp_dir().join(format!("pcx-setups-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hash-chain-10.pk"), &bytes).unwrap();
    let theirs = KeyStore::with_origin(&dir, pcx_prover_pool::keys::KeyOrigin::Provided);
    let ms = pcx_prover_pool::msm::ArkworksMsm;
    let (proof, _) = pcx_prover_pool::groth16::prove_hash_chain(&theirs, 10, five(), &ms).unwrap();
    let honest = pcx_prover_pool::encoding::encode_proof(&proof);
    let forger = KeyStore::new(common::common_keys_dir());
    let (forged, _) = pcx_prover_pool::groth16::prove_hash_chain(&forger, 10, five(), &ms).unwrap();
    let forged = pcx_prover_pool::encoding::encode_proof(&forged);
    for replica in [&first, &second] {
        let circuit = replica.state.circuit(&class(10)).await.unwrap();
        assert!(matches!(circuit.verify(&replica.state.keys, "5", &honest).unwrap(), Verdict::Valid { .. }));
        assert_eq!(circuit.verify(&replica.state.keys, "5", &forged).unwrap(), Verdict::Invalid);
    }

    // Published like any circuit's key.
    let vk = first.get("/v1/circuits/hash-chain-10/verification_key", None).await;
    assert_eq!(vk.body["nPublic"], 2, "{}", vk.body);
    assert_eq!(vk.body, pcx_prover_pool::snarkjs::verifying_key_to_json(&pk.vk));
    let sol = first.http.get(first.url("/v1/circuits/hash-chain-10/verifier.sol")).send().await.unwrap().text().await.unwrap();
    assert!(sol.contains("function verifyProof("));
    first.get("/v1/circuits/hash-chain-9", None).await.assert_error(404, "not_found");
    let zkey = first.http.get(first.url("/v1/circuits/hash-chain-10/artifacts/zkey")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(zkey.status(), 404);
}

#[tokio::test]
async fn development_keys_need_the_flag_and_an_exchange_without_it_refuses_them() {
    let db = common::fresh_database().await;
    let dev = spawn_on(db.clone(), serve_config()).await;
    let made = dev.get("/v1/circuits/hash-chain-10", None).await;
    assert_eq!(made.body["development_keys"], true, "{}", made.body);
    let circuit = dev.state.circuit(&class(10)).await.unwrap();
    let forger = KeyStore::new(common::common_keys_dir());
    let (proof, _) = pcx_prover_pool::groth16::prove_hash_chain(&forger, 10, five(), &pcx_prover_pool::msm::ArkworksMsm).unwrap();
    let text = pcx_prover_pool::encoding::encode_proof(&proof);
    assert!(matches!(circuit.verify(&dev.state.keys, "5", &text).unwrap(), Verdict::Valid { .. }), "with --dev-keys");

    // The same database under an exchange run without --dev-keys: the forgeable setup is not used.
    let production = spawn_on(db.clone(), production_config()).await;
    production.get("/v1/circuits/hash-chain-10", None).await.assert_error(503, "unavailable");
    assert!(production.state.circuit(&class(10)).await.is_err());
    // Other sizes get real setups.
    let other = production.get("/v1/circuits/hash-chain-11", None).await;
    assert_eq!((other.status.as_u16(), &other.body["development_keys"]), (200, &serde_json::json!(false)));
}
